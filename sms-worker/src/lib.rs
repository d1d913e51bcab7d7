//! The SMS worker: consumer group `sms-worker`.
//!
//! | module | concern |
//! | --- | --- |
//! | [`handler`] | one SMS per order (idempotency record in Redis), throttled by governor |
//! | [`provider`] | where messages go: JSON lines (file or stdout) or an HTTP gateway |
//!
//! Batches hold one event: each message gets its own retry budget, so a message that keeps
//! failing goes to the dead-letter topic alone, never with neighbours that were sent.

pub mod handler;
pub mod provider;

use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use metrics_exporter_prometheus::PrometheusHandle;
use shared::backends::Backends;
use shared::consumer::LoopSettings;
use shared::worker::WorkerArgs;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::handler::SmsHandler;
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
    /// Consumer group; every instance with the same group shares the partitions.
    #[arg(long, env = "CONSUMER_GROUP", default_value = "sms-worker")]
    pub consumer_group: String,

    /// Messages per second the provider allows (per instance).
    #[arg(long, env = "SMS_RATE_PER_SEC", default_value_t = NonZeroU32::new(200).expect("200 > 0"))]
    pub sms_rate_per_sec: NonZeroU32,

    /// Where messages go.
    #[arg(long, env = "SMS_PROVIDER", value_enum, default_value_t = ProviderKind::File)]
    pub sms_provider: ProviderKind,

    /// File the `file` provider appends to; stdout when unset.
    #[arg(long, env = "SMS_FILE")]
    pub sms_file: Option<PathBuf>,

    /// URL the `http` provider POSTs to.
    #[arg(long, env = "SMS_HTTP_URL", default_value = "")]
    pub sms_http_url: String,

    /// Timeout of one HTTP provider call.
    #[arg(long, env = "SMS_HTTP_TIMEOUT_MS", default_value_t = 2000)]
    pub sms_http_timeout_ms: u64,

    /// Attempts per message before it goes to the dead-letter topic.
    #[arg(long, env = "SMS_MAX_ATTEMPTS", default_value_t = 5)]
    pub sms_max_attempts: u32,

    /// Lifetime of the per-order "sent" records that make redelivery harmless.
    #[arg(long, env = "SMS_RECORD_TTL_SECS", default_value_t = 7 * 24 * 3600)]
    pub sms_record_ttl_secs: u64,

    #[command(flatten)]
    pub worker: WorkerArgs,
}

impl Config {
    /// Refuses incomplete wiring with a sentence that names the variable to set.
    pub fn validate(&self) -> Result<(), String> {
        if self.sms_provider == ProviderKind::Http && self.sms_http_url.trim().is_empty() {
            return Err("SMS_HTTP_URL is not set; the http provider needs it".into());
        }
        if self.sms_max_attempts == 0 {
            return Err("SMS_MAX_ATTEMPTS must be at least 1".into());
        }
        self.worker.validate()
    }

    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            group: self.consumer_group.clone(),
            batch_size: 1,
            batch_wait: Duration::ZERO,
            max_attempts: Some(self.sms_max_attempts),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }

    fn provider(&self) -> anyhow::Result<Provider> {
        Ok(match self.sms_provider {
            ProviderKind::File => {
                Provider::JsonLines(JsonLinesProvider::new(self.sms_file.clone()))
            }
            ProviderKind::Http => Provider::Http(HttpProvider::new(
                self.sms_http_url.clone(),
                Duration::from_millis(self.sms_http_timeout_ms),
            )?),
        })
    }
}

/// Runs the SMS worker until `shutdown`; returns after the final commit.
pub async fn run(
    config: Config,
    http: TcpListener,
    prometheus: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config
        .validate()
        .map_err(|problem| anyhow::anyhow!("refusing to start: {problem}"))?;
    let handler = SmsHandler::new(
        config.provider()?,
        config.sms_rate_per_sec,
        Backends::open(&config.worker.redis)?.coordination,
        Duration::from_secs(config.sms_record_ttl_secs),
    );
    shared::worker::run(
        &config.worker.kafka,
        config.loop_settings(),
        handler,
        http,
        prometheus,
        shutdown,
    )
    .await
}
