//! SMS providers: where a message goes.
//!
//! | module | provider |
//! | --- | --- |
//! | [`json_lines`] | one JSON line per call, to a file (or stdout): the stand-in gateway of the demo, the compose stack and every run that counts SMS |
//! | [`http`] | a POST to a real gateway, with `Idempotency-Key` |
//!
//! The worker sends at least once (a crash after the provider accepted a message and before
//! the worker recorded it sends it again); a provider that honours the idempotency key turns
//! that into exactly-once delivery (see `docs/guide.md`). The file provider honours it itself.

pub mod http;
pub mod json_lines;

use serde::Serialize;
use shared::error::Cause;

pub use self::http::HttpProvider;
pub use self::json_lines::JsonLinesProvider;

/// One message to one user.
#[derive(Clone, Debug, Serialize)]
pub struct Sms {
    /// Stable per order and kind (`<order id>:<kind>`); providers deduplicate on it.
    pub idempotency_key: String,
    pub to: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// May succeed on a retry (timeout, 5xx, 429, I/O).
    #[error("transient SMS failure: {0}")]
    Transient(#[source] Cause),
    /// Will not succeed (the provider refused the message).
    #[error("permanent SMS failure: {0}")]
    Permanent(String),
}

pub trait SmsProvider: Send + Sync {
    fn send(&self, sms: &Sms) -> impl Future<Output = Result<(), SmsError>> + Send;
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
