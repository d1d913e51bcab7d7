//! A JSON-lines file that several processes append to: the memory of the stand-in providers
//! (the SMS file provider, the simulated payment provider), which honour idempotency keys
//! across restarts and across every process sharing the file, as a real provider does.
//!
//! Each append takes an exclusive lock on the file, replays the lines appended since this
//! process last looked (by any process) into the journal's state, lets the caller choose its
//! line from that state, writes it in one write, and replays it too. The state is a fold over
//! the file's lines and nothing else, so a line that failed to be written never counted. The
//! same fold reads a finished run's file ([`Journal::read`]): the checks that read a provider's
//! record use the very code the provider decided with.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// What a journal's lines add up to.
pub trait Replay: Default {
    /// Takes in one line, written by any process (one that does not parse is skipped).
    fn replay(&mut self, line: &[u8]);
}

/// A journal file and this process's fold over it.
pub struct Journal<S> {
    path: PathBuf,
    /// Opened at the first append, so a missing directory is a failed call, not a panic.
    handle: Option<File>,
    /// How far this process has read the file.
    read_to: u64,
    state: S,
}

impl<S: Replay> Journal<S> {
    /// The journal at `path`; nothing is opened until the first append.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            handle: None,
            read_to: 0,
            state: S::default(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Under the file's lock: catches up with every process's lines, then writes the line
    /// `choose` returns for the state (none: nothing is written) and replays it. Returns what
    /// `choose` returned beside the line.
    pub fn append<T>(&mut self, choose: impl FnOnce(&S) -> (Option<Vec<u8>>, T)) -> io::Result<T> {
        let handle = match &self.handle {
            Some(handle) => handle,
            None => self.handle.insert(
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&self.path)?,
            ),
        };
        handle.lock()?;
        let appended = catch_up(handle, &mut self.read_to, &mut self.state).and_then(|whole| {
            let (line, chosen) = choose(&self.state);
            if let Some(line) = line {
                // A writer killed mid-line left a torn line: end it, so ours stays whole.
                let mut bytes = if whole { Vec::new() } else { vec![b'\n'] };
                bytes.extend_from_slice(&line);
                bytes.push(b'\n');
                (&*handle).write_all(&bytes)?;
                self.read_to += bytes.len() as u64;
                self.state.replay(&line);
            }
            Ok(chosen)
        });
        handle.unlock()?;
        appended
    }

    /// The state a whole file adds up to; a missing file is an empty journal.
    pub fn read(path: &Path) -> io::Result<S> {
        let mut state = S::default();
        match File::open(path) {
            Ok(file) => {
                catch_up(&file, &mut 0, &mut state)?;
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(error),
        }
        Ok(state)
    }
}

/// Replays the lines appended since `read_to` into `state`; returns whether the file ends
/// with a whole line (or is empty). Under the lock every line is whole unless a writer was
/// killed mid-write; a torn line does not parse and is skipped, as is a half-written last line
/// seen by a reader without the lock ([`Journal::read`]).
fn catch_up<S: Replay>(mut handle: &File, read_to: &mut u64, state: &mut S) -> io::Result<bool> {
    handle.seek(SeekFrom::Start(*read_to))?;
    let mut appended = Vec::new();
    handle.read_to_end(&mut appended)?;
    *read_to += appended.len() as u64;
    for line in appended.split(|&byte| byte == b'\n') {
        if !line.is_empty() {
            state.replay(line);
        }
    }
    let whole = match appended.last() {
        Some(&last) => last == b'\n',
        // Nothing new: whole unless this process has never seen the file's end before.
        None if *read_to == 0 => true,
        None => {
            let mut last = [0];
            handle.seek(SeekFrom::Start(*read_to - 1))?;
            handle.read_exact(&mut last)?;
            last[0] == b'\n'
        }
    };
    Ok(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines seen, in order.
    #[derive(Default)]
    struct Lines(Vec<String>);

    impl Replay for Lines {
        fn replay(&mut self, line: &[u8]) {
            self.0.push(String::from_utf8_lossy(line).into_owned());
        }
    }

    fn temp_file() -> PathBuf {
        std::env::temp_dir().join(format!("journal-{}.jsonl", uuid::Uuid::new_v4()))
    }

    #[test]
    fn each_writer_sees_the_lines_of_the_others_before_choosing() {
        let path = temp_file();
        let mut first = Journal::<Lines>::new(path.clone());
        let mut second = Journal::<Lines>::new(path.clone());
        first.append(|_| (Some(b"a".to_vec()), ())).unwrap();
        let seen = second
            .append(|lines| (Some(b"b".to_vec()), lines.0.clone()))
            .unwrap();
        assert_eq!(
            seen,
            ["a"],
            "the second writer chose after reading the first's line"
        );
        let seen = first.append(|lines| (None, lines.0.clone())).unwrap();
        assert_eq!(
            seen,
            ["a", "b"],
            "its own line replayed once, the other's caught up"
        );
        assert_eq!(Journal::<Lines>::read(&path).unwrap().0, ["a", "b"]);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_line_torn_by_a_killed_writer_does_not_swallow_the_next_one() {
        let path = temp_file();
        std::fs::write(&path, "a\n{\"torn").unwrap();
        let mut journal = Journal::<Lines>::new(path.clone());
        journal.append(|_| (Some(b"b".to_vec()), ())).unwrap();
        let lines = Journal::<Lines>::read(&path).unwrap().0;
        assert_eq!(
            lines,
            ["a", "{\"torn", "b"],
            "b stands on a line of its own"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_file_reads_as_an_empty_journal() {
        assert!(Journal::<Lines>::read(&temp_file()).unwrap().0.is_empty());
    }
}
