//! Why a store gave no answer: the one error type of every store trait in this crate.
//!
//! It lives in a module of its own, below the traits and their backends, so the factory that
//! builds the stores ([`crate::backends`]) imports them and nothing imports the factory back.

use std::time::Duration;

/// The failure beneath an error of ours, kept whole (its type and its own causes) as the
/// error's `source`; our messages repeat its sentence, so a log line of ours is complete. A
/// `String` converts into one, for a failure that is only a sentence.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a store gave no answer, or none it can stand by. Callers answer them alike (503, or
/// retry later); the distinction is for logs, and for the purchase, which tells the buyer of an
/// unconfirmed lock that it exists.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the store failed: {0}")]
    Failed(#[source] Cause),
    /// Written on a Redis Cluster master, but no replica confirmed it in time: a failover
    /// could still lose it (docs/architecture.md, "What a 202 survives").
    #[error("the store wrote it, but no replica confirmed it within {0:?}")]
    Unconfirmed(Duration),
}
