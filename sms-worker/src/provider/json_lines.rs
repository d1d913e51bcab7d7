//! The file provider: one JSON line per call, to a file or to stdout. It stands in for a real
//! SMS gateway in the demo, the compose stack and every run that checks "exactly one SMS per
//! order and kind" by reading the file.
//!
//! Like a real gateway, it honours the idempotency key: a message whose key was delivered
//! before is answered with success and not delivered again. That closes the worker's one gap
//! (a crash between the provider's acceptance and the worker's record, see the README). The
//! file is the provider's memory, so this holds across restarts and across every process that
//! appends to the same file: each call takes an exclusive lock on the file, reads the lines
//! appended since its last call, then appends its own line in one write.
//!
//! A repeat still leaves a line, marked `"repeat":true`, so a run can count how often the
//! worker sent a message again. The lines:
//!
//! ```text
//! {"idempotency_key":"<order id>:<kind>","to":"<user id>","text":"…"}
//! {"idempotency_key":"<order id>:<kind>","to":"<user id>","text":"…","repeat":true}
//! ```
//!
//! The keys delivered are kept in memory for the life of the process, as many as the file has
//! lines: fine for a stand-in, where a real gateway keeps them for a day.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{Sms, SmsError, SmsProvider};

/// Appends JSON lines to a file, or to stdout when no path is given, delivering each
/// idempotency key once.
pub struct JsonLinesProvider {
    ledger: Arc<Mutex<Ledger>>,
}

impl JsonLinesProvider {
    pub fn new(path: Option<PathBuf>) -> Self {
        let file = path.map(|path| LedgerFile {
            path,
            handle: None,
            read_to: 0,
        });
        Self {
            ledger: Arc::new(Mutex::new(Ledger {
                file,
                delivered: HashSet::new(),
            })),
        }
    }
}

impl SmsProvider for JsonLinesProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let ledger = Arc::clone(&self.ledger);
        let sms = sms.clone();
        // The file lock blocks, so the whole call runs off the async threads.
        tokio::task::spawn_blocking(move || {
            ledger
                .lock()
                .expect("SMS ledger lock poisoned")
                .append(&sms)
        })
        .await
        .map_err(|e| SmsError::Transient(e.to_string()))?
    }
}

/// What the provider has delivered, and where it writes.
struct Ledger {
    /// `None`: stdout, remembered by this process alone.
    file: Option<LedgerFile>,
    /// Every key delivered, as far as this process has read the file.
    delivered: HashSet<String>,
}

struct LedgerFile {
    path: PathBuf,
    /// Opened at the first call, so a missing directory is a transient failure, not a panic.
    handle: Option<File>,
    /// How far this process has read the file.
    read_to: u64,
}

/// One line of the file.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(flatten)]
    sms: &'a Sms,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    repeat: bool,
}

/// What a line tells a reader catching up: the key it carries.
#[derive(Deserialize)]
struct Seen {
    idempotency_key: String,
}

impl Ledger {
    fn append(&mut self, sms: &Sms) -> Result<(), SmsError> {
        match &mut self.file {
            Some(file) => file.append(sms, &mut self.delivered),
            None => write_line(&mut io::stdout().lock(), sms, &mut self.delivered)
                .map_err(|e| SmsError::Transient(format!("stdout: {e}"))),
        }
    }
}

impl LedgerFile {
    /// Under the file's lock: catches up with every process's lines, then writes its own.
    fn append(&mut self, sms: &Sms, delivered: &mut HashSet<String>) -> Result<(), SmsError> {
        let failed = |e: io::Error| SmsError::Transient(format!("{}: {e}", self.path.display()));
        let handle = match &self.handle {
            Some(handle) => handle,
            None => self.handle.insert(
                OpenOptions::new()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&self.path)
                    .map_err(failed)?,
            ),
        };
        handle.lock().map_err(failed)?;
        let appended = catch_up(handle, &mut self.read_to, delivered)
            .and_then(|()| write_line(&mut &*handle, sms, delivered));
        handle.unlock().map_err(failed)?;
        appended.map_err(failed)
    }
}

/// Writes the line for `sms`, a repeat if its key was delivered before; once written, the key
/// counts as delivered (a failed write leaves it to the retry).
fn write_line(out: &mut impl Write, sms: &Sms, delivered: &mut HashSet<String>) -> io::Result<()> {
    let repeat = delivered.contains(&sms.idempotency_key);
    let mut line = serde_json::to_vec(&Line { sms, repeat })?;
    line.push(b'\n');
    out.write_all(&line)?;
    delivered.insert(sms.idempotency_key.clone());
    Ok(())
}

/// Reads the lines appended since `read_to` (by any process) into `delivered`.
fn catch_up(
    mut handle: &File,
    read_to: &mut u64,
    delivered: &mut HashSet<String>,
) -> io::Result<()> {
    handle.seek(SeekFrom::Start(*read_to))?;
    let mut appended = Vec::new();
    handle.read_to_end(&mut appended)?;
    *read_to += appended.len() as u64;
    for line in appended.split(|&byte| byte == b'\n') {
        if let Ok(seen) = serde_json::from_slice::<Seen>(line) {
            delivered.insert(seen.idempotency_key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(key: &str) -> Sms {
        Sms {
            idempotency_key: key.into(),
            to: "ann".into(),
            text: "hello".into(),
        }
    }

    fn lines(path: &PathBuf) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    fn temp_file() -> PathBuf {
        std::env::temp_dir().join(format!("sms-ledger-{}.jsonl", uuid::Uuid::new_v4()))
    }

    #[tokio::test]
    async fn a_key_delivered_by_another_process_is_answered_but_not_delivered_again() {
        let path = temp_file();
        let before_the_crash = JsonLinesProvider::new(Some(path.clone()));
        before_the_crash.send(&sms("s.1:reserved")).await.unwrap();
        drop(before_the_crash);

        let restarted = JsonLinesProvider::new(Some(path.clone()));
        restarted.send(&sms("s.1:reserved")).await.unwrap();
        restarted.send(&sms("s.1:paid")).await.unwrap();

        let lines = lines(&path);
        let shape: Vec<_> = lines
            .iter()
            .map(|line| {
                (
                    line["idempotency_key"].as_str().unwrap(),
                    line.get("repeat"),
                )
            })
            .collect();
        let repeat = serde_json::Value::Bool(true);
        assert_eq!(
            shape,
            [
                ("s.1:reserved", None),
                ("s.1:reserved", Some(&repeat)),
                ("s.1:paid", None)
            ]
        );
        assert_eq!(lines[0]["to"], "ann");
        assert_eq!(lines[0]["text"], "hello");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn instances_sending_the_same_keys_at_once_deliver_each_once() {
        let path = temp_file();
        let instances: Vec<_> = (0..4)
            .map(|_| Arc::new(JsonLinesProvider::new(Some(path.clone()))))
            .collect();
        let mut sends = tokio::task::JoinSet::new();
        // Each key is sent by every instance at about the same moment.
        for order in 0..200 {
            for instance in &instances {
                let instance = Arc::clone(instance);
                sends.spawn(async move { instance.send(&sms(&format!("s.{order}:paid"))).await });
            }
        }
        while let Some(sent) = sends.join_next().await {
            sent.unwrap().unwrap();
        }

        let lines = lines(&path);
        assert_eq!(lines.len(), 800, "every call leaves a line");
        let delivered: Vec<_> = lines
            .iter()
            .filter(|line| line.get("repeat").is_none())
            .map(|line| line["idempotency_key"].as_str().unwrap())
            .collect();
        let distinct: HashSet<_> = delivered.iter().collect();
        assert_eq!(delivered.len(), 200, "each key delivered once");
        assert_eq!(distinct.len(), 200, "every key delivered");
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn an_unwritable_file_is_a_transient_failure_and_the_retry_delivers() {
        let directory = std::env::temp_dir().join(format!("sms-{}", uuid::Uuid::new_v4()));
        let path = directory.join("sms.jsonl");
        let provider = JsonLinesProvider::new(Some(path.clone()));
        let failure = provider.send(&sms("s.1:reserved")).await;
        assert!(
            matches!(&failure, Err(SmsError::Transient(reason)) if reason.contains("sms.jsonl")),
            "{failure:?}"
        );

        std::fs::create_dir(&directory).unwrap();
        provider.send(&sms("s.1:reserved")).await.unwrap();
        let lines = lines(&path);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert_eq!(lines[0].get("repeat"), None, "delivered, not a repeat");
        let _ = std::fs::remove_dir_all(directory);
    }
}
