//! The SMS worker: consumer group `sms-worker`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`handler`] | one SMS per order (idempotency record in Redis), throttled by governor |
//! | [`provider`] | where messages go: JSON lines (file or stdout) or an HTTP gateway |
//! | this file | the settings, and the worker they make (`shared::worker` runs it) |
//!
//! Batches hold one event: each message gets its own retry budget, so a message that keeps
//! failing goes to the dead-letter topic alone, never with neighbours that were sent.

pub mod handler;
pub mod provider;

use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use shared::backends::Backends;
use shared::config::RefusedToStart;
use shared::consumer::{LoopSettings, RetryPolicy};
use shared::worker::{WorkerArgs, WorkerConfig};

use crate::handler::{RecordLifetimes, SmsHandler};
use crate::provider::{HttpProvider, JsonLinesProvider, Provider};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// One JSON line per message, to SMS_FILE (stdout when unset).
    File,
    /// POST JSON to SMS_HTTP_URL.
    Http,
}

/// Consumer group `sms-worker`: one confirmation SMS per order, at the provider's rate.
#[derive(Parser, Clone, Debug)]
#[command(name = "sms-worker", version)]
pub struct Config {
    /// Messages per second the provider allows (per instance).
    #[arg(long, env = "SMS_RATE_PER_SEC", default_value_t = NonZeroU32::new(200).expect("200 > 0"))]
    pub sms_rate_per_sec: NonZeroU32,

    /// Where messages go.
    #[arg(long, env = "SMS_PROVIDER", value_enum, default_value_t = ProviderKind::File)]
    pub sms_provider: ProviderKind,

    /// File the `file` provider appends to; stdout when unset.
    #[arg(long, env = "SMS_FILE")]
    pub sms_file: Option<PathBuf>,

    /// URL the `http` provider POSTs to (its value never shows here: it may carry a
    /// credential).
    #[arg(long, env = "SMS_HTTP_URL", hide_env_values = true, default_value = "")]
    pub sms_http_url: String,

    /// Timeout of one HTTP provider call.
    #[arg(long, env = "SMS_HTTP_TIMEOUT_MS", default_value_t = NonZeroU64::new(2000).expect("2000 > 0"))]
    pub sms_http_timeout_ms: NonZeroU64,

    /// Attempts per message before it goes to the dead-letter topic.
    #[arg(long, env = "SMS_MAX_ATTEMPTS", default_value_t = NonZeroU32::new(5).expect("5 > 0"))]
    pub sms_max_attempts: NonZeroU32,

    /// How long a sender's claim on an order's SMS lasts; must be longer than one provider
    /// call, so a live sender never loses it, and is how long a dead sender's order waits.
    #[arg(long, env = "SMS_CLAIM_TTL_MS", default_value_t = NonZeroU64::new(30_000).expect("30 s > 0"))]
    pub sms_claim_ttl_ms: NonZeroU64,

    /// Lifetime of the per-order "sent" records that make redelivery harmless: at least twice
    /// KAFKA_TOPIC_RETENTION_HOURS, so every event the topic can still deliver finds its record.
    #[arg(long, env = "SMS_RECORD_TTL_SECS", default_value_t = NonZeroU64::new(7 * 24 * 3600).expect("a week > 0"))]
    pub sms_record_ttl_secs: NonZeroU64,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl WorkerConfig for Config {
    type Handler = SmsHandler<Provider>;

    fn worker_args(&self) -> &WorkerArgs {
        &self.worker
    }

    fn loop_settings(&self, group: &str) -> LoopSettings {
        LoopSettings {
            group: group.to_owned(),
            batch_size: NonZeroUsize::MIN,
            batch_wait: Duration::ZERO,
            retry: RetryPolicy {
                max_attempts: Some(self.sms_max_attempts),
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
            },
        }
    }

    fn handler(&self, backends: &Backends) -> anyhow::Result<Self::Handler> {
        let provider = match self.sms_provider {
            ProviderKind::File => {
                Provider::JsonLines(JsonLinesProvider::new(self.sms_file.clone()))
            }
            ProviderKind::Http => Provider::Http(HttpProvider::new(
                self.sms_http_url.clone(),
                Duration::from_millis(self.sms_http_timeout_ms.get()),
            )?),
        };
        let lifetimes = RecordLifetimes {
            claim: Duration::from_millis(self.sms_claim_ttl_ms.get()),
            sent: Duration::from_secs(self.sms_record_ttl_secs.get()),
        };
        Ok(SmsHandler::new(
            provider,
            self.sms_rate_per_sec,
            backends.sms_records(),
            lifetimes,
        ))
    }

    fn validate(&self) -> Result<(), RefusedToStart> {
        if self.sms_provider == ProviderKind::Http && self.sms_http_url.trim().is_empty() {
            return Err("SMS_HTTP_URL is not set; the http provider needs it".into());
        }
        if self.sms_claim_ttl_ms <= self.sms_http_timeout_ms {
            return Err("SMS_CLAIM_TTL_MS must be longer than SMS_HTTP_TIMEOUT_MS, or a slow send would lose its claim to another instance".into());
        }
        self.worker.kafka.require_outlives_topics(
            "SMS_RECORD_TTL_SECS",
            Duration::from_secs(self.sms_record_ttl_secs.get()),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::num::{NonZeroU32, NonZeroU64};

    use shared::worker::WorkerConfig;

    use super::Config;

    #[test]
    fn sent_records_that_expire_before_the_topics_events_are_refused_by_name() {
        let mut config: Config = shared::config::defaults();
        assert_eq!(config.validate(), Ok(()), "the defaults agree");
        config.worker.kafka.kafka_topic_retention_hours = NonZeroU32::new(7 * 24).unwrap();
        config.sms_record_ttl_secs = NonZeroU64::new(13 * 24 * 3600).unwrap();
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("SMS_RECORD_TTL_SECS (1123200 s) must be at least twice KAFKA_TOPIC_RETENTION_HOURS (168 h)"),
            "{refused}"
        );
    }
}
