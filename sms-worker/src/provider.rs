//! SMS providers: where a confirmation message goes.
//!
//! The default provider appends one JSON line per message to a file (or stdout), which makes
//! "exactly one SMS per order" checkable by counting lines. The HTTP provider POSTs the same
//! JSON to a gateway URL and sends the order id as `Idempotency-Key`: a provider that honours
//! it turns our at-least-once sending into exactly-once delivery (see the README).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

/// One message to one user.
#[derive(Clone, Debug, Serialize)]
pub struct Sms {
    /// Stable per order; providers deduplicate on it.
    pub idempotency_key: String,
    pub to: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// May succeed on a retry (timeout, 5xx, 429, I/O).
    #[error("transient SMS failure: {0}")]
    Transient(String),
    /// Will not succeed (the provider refused the message).
    #[error("permanent SMS failure: {0}")]
    Permanent(String),
}

pub trait SmsProvider: Send + Sync {
    fn send(&self, sms: &Sms) -> impl Future<Output = Result<(), SmsError>> + Send;
}

/// Appends JSON lines to a file, or to stdout when no path is given.
pub struct JsonLinesProvider {
    path: Option<PathBuf>,
    lock: Mutex<()>,
}

impl JsonLinesProvider {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            lock: Mutex::new(()),
        }
    }
}

impl SmsProvider for JsonLinesProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let mut line = serde_json::to_vec(sms).map_err(|e| SmsError::Permanent(e.to_string()))?;
        line.push(b'\n');
        let _serialised = self.lock.lock().await;
        let written = if let Some(path) = &self.path {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(|e| SmsError::Transient(format!("{}: {e}", path.display())))?;
            file.write_all(&line).await.and(file.flush().await)
        } else {
            let mut stdout = tokio::io::stdout();
            stdout.write_all(&line).await.and(stdout.flush().await)
        };
        written.map_err(|e| SmsError::Transient(e.to_string()))
    }
}

/// POSTs each message as JSON to an SMS gateway.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
}

impl HttpProvider {
    pub fn new(url: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, url })
    }
}

impl SmsProvider for HttpProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &sms.idempotency_key)
            .json(sms)
            .send()
            .await
            .map_err(|e| SmsError::Transient(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SmsError::Transient(format!("provider answered {status}")))
        } else {
            Err(SmsError::Permanent(format!("provider answered {status}")))
        }
    }
}

/// The provider chosen by configuration.
pub enum Provider {
    JsonLines(JsonLinesProvider),
    Http(HttpProvider),
}

impl SmsProvider for Provider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        match self {
            Self::JsonLines(provider) => provider.send(sms).await,
            Self::Http(provider) => provider.send(sms).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_provider_is_reached_over_tls() {
        // A closed port: the attempt fails at the connection, which means the client speaks
        // TLS at all (without it, it would refuse the scheme before connecting).
        let provider =
            HttpProvider::new("https://127.0.0.1:1/sms".into(), Duration::from_secs(2)).unwrap();
        let sms = Sms {
            idempotency_key: "s.0".into(),
            to: "u".into(),
            text: "t".into(),
        };
        match provider.send(&sms).await {
            Err(SmsError::Transient(reason)) => {
                assert!(!reason.contains("scheme"), "{reason}");
                assert!(
                    reason.contains("connect") || reason.contains("sending"),
                    "{reason}"
                );
            }
            other => panic!("expected a connection failure, got {other:?}"),
        }
    }
}
