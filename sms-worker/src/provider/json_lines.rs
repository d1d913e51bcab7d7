//! The file provider: one JSON line per call, to a file or to stdout. It stands in for a real
//! SMS gateway in the demo, the compose stack and every run that checks "exactly one SMS per
//! order and kind" by reading the file.
//!
//! Like a real gateway, it honours the idempotency key: a message whose key was delivered
//! before is answered with success and not delivered again. That closes the worker's one gap
//! (a crash between the provider's acceptance and the worker's record, see `docs/guide.md`). The
//! file is the provider's memory, so this holds across restarts and across every process that
//! appends to the same file: the file is a [`Journal`], whose every append first catches up
//! with the lines other processes wrote.
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
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use shared::journal::{Journal, Replay};

use super::{Sms, SmsError, SmsProvider};

/// Appends JSON lines to a file, or to stdout when no path is given, delivering each
/// idempotency key once.
pub struct JsonLinesProvider {
    out: Arc<Mutex<Out>>,
}

impl JsonLinesProvider {
    pub fn new(path: Option<PathBuf>) -> Self {
        let out = match path {
            Some(path) => Out::File(Journal::new(path)),
            None => Out::Stdout(Delivered::default()),
        };
        Self {
            out: Arc::new(Mutex::new(out)),
        }
    }
}

impl SmsProvider for JsonLinesProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let out = Arc::clone(&self.out);
        let sms = sms.clone();
        // The file lock blocks, so the whole call runs off the async threads.
        tokio::task::spawn_blocking(move || out.lock().expect("SMS file lock poisoned").send(&sms))
            .await
            .map_err(|e| SmsError::Transient(Box::new(e)))?
    }
}

/// Where the lines go, and what was delivered there.
enum Out {
    /// A file every process may share: its lines are the provider's memory.
    File(Journal<Delivered>),
    /// Stdout, remembered by this process alone.
    Stdout(Delivered),
}

/// Every key delivered: a fold over the lines written.
#[derive(Default)]
struct Delivered(HashSet<String>);

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

impl Replay for Delivered {
    fn replay(&mut self, line: &[u8]) {
        if let Ok(seen) = serde_json::from_slice::<Seen>(line) {
            self.0.insert(seen.idempotency_key);
        }
    }
}

impl Delivered {
    /// The line for `sms`: a repeat if its key was delivered before.
    fn line_for(&self, sms: &Sms) -> Vec<u8> {
        let repeat = self.0.contains(&sms.idempotency_key);
        serde_json::to_vec(&Line { sms, repeat }).expect("an SMS always serialises")
    }
}

impl Out {
    /// Writes the line for `sms`; once written, its key counts as delivered (a failed write
    /// leaves it to the retry).
    fn send(&mut self, sms: &Sms) -> Result<(), SmsError> {
        match self {
            Self::File(journal) => journal
                .append(|delivered| (Some(delivered.line_for(sms)), ()))
                .map_err(|e| {
                    SmsError::Transient(format!("{}: {e}", journal.path().display()).into())
                }),
            Self::Stdout(delivered) => {
                let mut line = delivered.line_for(sms);
                line.push(b'\n');
                io::stdout()
                    .lock()
                    .write_all(&line)
                    .map_err(|e| SmsError::Transient(format!("stdout: {e}").into()))?;
                delivered.0.insert(sms.idempotency_key.clone());
                Ok(())
            }
        }
    }
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
            matches!(&failure, Err(SmsError::Transient(reason)) if reason.to_string().contains("sms.jsonl")),
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
