//! Argument groups every binary flattens into its own clap `Config`.
//!
//! Each field is a flag and an environment variable (`--redis-url` / `REDIS_URL`); its `///`
//! line is the `--help` text. Units are in the names; a setting that must be at least 1 is a
//! `NonZero*`, so clap itself refuses 0.
//!
//! Code that builds a configuration (the all-in-one runner, tests) starts from [`defaults`]
//! and sets fields by name, so a renamed setting fails to compile instead of failing at run
//! time.

use std::fmt;
use std::num::{NonZeroU16, NonZeroU32, NonZeroU64};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Command, ValueEnum};

/// Where Redis is and how long to wait for it.
#[derive(Args, Clone, Debug)]
pub struct RedisArgs {
    /// Redis URL: one node, e.g. redis://127.0.0.1:6379/0, or a cluster by some of its nodes,
    /// e.g. redis+cluster://10.0.0.1:7000,10.0.0.2:7000 (its value never shows here: it may
    /// carry a password).
    #[arg(
        long,
        env = "REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// Prefix of every Redis key, so several deployments (or parallel tests) can share one Redis.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "seckill")]
    pub redis_key_prefix: String,

    /// Deadline of one Redis round trip; a purchase that misses it answers 503 with nothing locked.
    #[arg(long, env = "REDIS_TIMEOUT_MS", default_value_t = NonZeroU64::new(200).expect("200 > 0"))]
    pub redis_timeout_ms: NonZeroU64,

    /// On Redis Cluster, how long a stock lock (or a payment intent) waits for a replica to
    /// confirm it before it is answered (WAIT 1, shared by concurrent writes); at most half of
    /// REDIS_TIMEOUT_MS, as a write may ride out a WAIT already in flight before its own.
    #[arg(long, env = "REDIS_REPLICA_WAIT_MS", default_value_t = NonZeroU64::new(50).expect("50 > 0"))]
    pub redis_replica_wait_ms: NonZeroU64,
}

impl RedisArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.redis_timeout_ms.get())
    }

    pub fn replica_wait(&self) -> Duration {
        Duration::from_millis(self.redis_replica_wait_ms.get())
    }

    /// Refuses settings that cannot work, naming the variable.
    pub fn validate(&self) -> Result<(), RefusedToStart> {
        if self.redis_key_prefix.contains(['{', '}']) {
            return Err(
                "REDIS_KEY_PREFIX must not contain braces (they would steal the hash tag)".into(),
            );
        }
        if self.redis_replica_wait_ms.get().saturating_mul(2) > self.redis_timeout_ms.get() {
            return Err("REDIS_REPLICA_WAIT_MS must be at most half of REDIS_TIMEOUT_MS (a write may wait out a replica's WAIT already in flight, then its own, within its deadline)".into());
        }
        Ok(())
    }
}

/// Where Kafka is and which topics carry the reservations and the order lifecycle.
#[derive(Args, Clone, Debug)]
pub struct KafkaArgs {
    /// Comma-separated bootstrap brokers, host:port.
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,

    /// Topic of reservation events.
    #[arg(long, env = "KAFKA_TOPIC", default_value = "seckill.reservations")]
    pub kafka_topic: String,

    /// Topic of order transitions (created, paid, expired, failed).
    #[arg(
        long,
        env = "KAFKA_ORDER_EVENTS_TOPIC",
        default_value = "seckill.order-events"
    )]
    pub kafka_order_events_topic: String,

    /// Topic that receives messages no consumer could process (poison messages).
    #[arg(
        long,
        env = "KAFKA_DLQ_TOPIC",
        default_value = "seckill.reservations.dlq"
    )]
    pub kafka_dlq_topic: String,

    /// Partitions of the topics when this service has to create them.
    #[arg(long, env = "KAFKA_TOPIC_PARTITIONS", default_value_t = NonZeroU16::new(12).expect("12 > 0"))]
    pub kafka_topic_partitions: NonZeroU16,

    /// How long the broker keeps the reservation and order-event topics' events, in hours
    /// (`retention.ms`, set when this service creates them; the dead-letter topic keeps its
    /// events four times as long). Every dedupe record and key outlives the events: the
    /// workers refuse a record lifetime under twice this (see `require_outlives_topics`).
    #[arg(long, env = "KAFKA_TOPIC_RETENTION_HOURS", default_value_t = NonZeroU32::new(72).expect("72 > 0"))]
    pub kafka_topic_retention_hours: NonZeroU32,

    /// Events a producer holds at most while the broker has not taken them. Beyond it a
    /// publish fails at once and its event waits in the outbox for the reconciler, so a
    /// producer's memory stays flat whatever the broker does.
    #[arg(long, env = "KAFKA_PRODUCER_QUEUE_MESSAGES", default_value_t = NonZeroU32::new(20_000).expect("20000 > 0"))]
    pub kafka_producer_queue_messages: NonZeroU32,

    /// The same bound in kilobytes of queued events.
    #[arg(long, env = "KAFKA_PRODUCER_QUEUE_KBYTES", default_value_t = NonZeroU32::new(16_384).expect("16384 > 0"))]
    pub kafka_producer_queue_kbytes: NonZeroU32,
}

impl KafkaArgs {
    /// How long the reservation and order-event topics keep their events.
    pub fn topic_retention(&self) -> Duration {
        Duration::from_hours(u64::from(self.kafka_topic_retention_hours.get()))
    }

    /// Refuses a dedupe record lifetime (`variable`, `lifetime`) shorter than twice the
    /// topics' retention. A redelivery of an event the topic still holds (after a rebalance, a
    /// restart, a group that lost its offsets) must still find its record, or it takes effect
    /// twice; and `retention.ms` is a minimum, not a maximum: the broker deletes whole
    /// segments, so an event stays up to the retention plus one segment (`segment.ms`, half
    /// the retention, see [`crate::kafka::EventBus::ensure_topics`]) plus the broker's
    /// retention check interval. Twice the retention covers all three.
    pub fn require_outlives_topics(
        &self,
        variable: &str,
        lifetime: Duration,
    ) -> Result<(), RefusedToStart> {
        if lifetime >= 2 * self.topic_retention() {
            return Ok(());
        }
        Err(format!(
            "{variable} ({} s) must be at least twice KAFKA_TOPIC_RETENTION_HOURS ({} h): the broker deletes events a whole segment at a time, so an event can stay half as long again as the retention, and a redelivered event must still find its record or it takes effect twice",
            lifetime.as_secs(),
            self.kafka_topic_retention_hours
        ).into())
    }

    /// Refuses wiring that would silently publish nowhere.
    pub fn validate(&self) -> Result<(), RefusedToStart> {
        require_non_empty(&[
            ("KAFKA_BROKERS", &self.kafka_brokers),
            ("KAFKA_TOPIC", &self.kafka_topic),
            ("KAFKA_ORDER_EVENTS_TOPIC", &self.kafka_order_events_topic),
            ("KAFKA_DLQ_TOPIC", &self.kafka_dlq_topic),
        ])?;
        let topics = [
            &self.kafka_topic,
            &self.kafka_order_events_topic,
            &self.kafka_dlq_topic,
        ];
        if topics[0] == topics[1] || topics[0] == topics[2] || topics[1] == topics[2] {
            return Err(
                "KAFKA_TOPIC, KAFKA_ORDER_EVENTS_TOPIC and KAFKA_DLQ_TOPIC must be three different topics"
                    .into(),
            );
        }
        Ok(())
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    Text,
    /// One JSON object per line, for a log pipeline.
    Json,
}

/// How the process reports on itself.
#[derive(Args, Clone, Debug)]
pub struct TelemetryArgs {
    /// Log line format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Which logs to keep, as a tracing EnvFilter directive (RUST_LOG syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,
}

/// The configuration (or argument group) `C` with every setting at the default its `--help`
/// shows, ignoring the environment: a stray `REDIS_URL` in the caller's shell must not leak
/// into a configuration built in code.
pub fn defaults<C: Args>() -> C {
    let command = C::augment_args(Command::new("defaults")).mut_args(|arg| arg.env(None::<&str>));
    let matches = command
        .try_get_matches_from(["defaults"])
        .expect("every setting has a default");
    C::from_arg_matches(&matches).expect("the defaults parse")
}

/// Refuses the first setting of `settings` (variable, value) that is empty or blank, naming it.
pub fn require_non_empty(settings: &[(&str, &str)]) -> Result<(), RefusedToStart> {
    match settings.iter().find(|(_, value)| value.trim().is_empty()) {
        Some((variable, _)) => {
            Err(format!("{variable} is empty; set it to a non-empty value").into())
        }
        None => Ok(()),
    }
}

/// Why a service refuses to start: a sentence that names the setting to change.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("refusing to start: {0}")]
pub struct RefusedToStart(pub String);

impl From<String> for RefusedToStart {
    fn from(reason: String) -> Self {
        Self(reason)
    }
}

impl From<&str> for RefusedToStart {
    fn from(reason: &str) -> Self {
        Self(reason.to_owned())
    }
}

/// A secret from the environment: usable, never printed (`Debug` shows `***`).
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Refuses a missing secret with a sentence naming its variable; in a
    /// [`Mode::Deployment`], a short, published or guessable one too
    /// ([`crate::weak_secrets`]).
    pub fn require(
        &self,
        variable: &str,
        min_len: usize,
        mode: Mode,
    ) -> Result<(), RefusedToStart> {
        if self.0.is_empty() {
            return Err(
                format!("{variable} is not set; the service refuses to start without it").into(),
            );
        }
        match mode {
            Mode::Demo => Ok(()),
            Mode::Deployment => crate::weak_secrets::weakness(variable, &self.0, min_len)
                .map_or(Ok(()), |weakness| Err(weakness.into())),
        }
    }
}

/// Whether a service runs as a deployment or as a demo. A demo accepts conveniences a
/// deployment refuses (placeholder secrets, sign-in by name) and says so at start-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Deployment,
    Demo,
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn a_replica_wait_longer_than_half_the_redis_deadline_is_refused_by_name() {
        let mut redis: RedisArgs = defaults();
        assert!(redis.validate().is_ok(), "the defaults are valid");
        redis.redis_replica_wait_ms = NonZeroU64::new(101).unwrap();
        let error = redis.validate().unwrap_err().to_string();
        assert!(error.contains("REDIS_REPLICA_WAIT_MS"), "{error}");
        redis.redis_replica_wait_ms = NonZeroU64::new(100).unwrap();
        assert!(redis.validate().is_ok());
    }

    #[test]
    fn a_secret_is_never_printed() {
        let secret: Secret = "hunter2-hunter2".parse().unwrap();
        assert_eq!(format!("{secret:?}"), "***");
    }

    #[test]
    fn a_missing_secret_is_refused_by_name_even_in_a_demo() {
        for mode in [Mode::Deployment, Mode::Demo] {
            let missing = Secret::default()
                .require("JWT_SECRET", 32, mode)
                .unwrap_err()
                .0;
            assert!(missing.starts_with("JWT_SECRET is not set"), "{missing}");
        }
    }

    #[test]
    fn a_demo_accepts_the_weak_secrets_a_deployment_refuses() {
        let placeholder = Secret::new(crate::weak_secrets::PUBLISHED_PLACEHOLDERS[0]);
        let refused = placeholder
            .require("JWT_SECRET", 32, Mode::Deployment)
            .unwrap_err()
            .0;
        assert!(
            refused.starts_with("JWT_SECRET is a placeholder"),
            "{refused}"
        );
        assert_eq!(placeholder.require("JWT_SECRET", 32, Mode::Demo), Ok(()));
        let short = Secret::new("abc");
        assert!(short.require("JWT_SECRET", 32, Mode::Deployment).is_err());
        assert_eq!(short.require("JWT_SECRET", 32, Mode::Demo), Ok(()));
        let random = Secret::new("q3Vh0x9LrT2mWc8kPzA7eNbY4sDfG6uJ");
        assert_eq!(random.require("JWT_SECRET", 32, Mode::Deployment), Ok(()));
    }

    #[derive(Parser, Debug)]
    struct Example {
        #[command(flatten)]
        redis: RedisArgs,

        /// A setting read from a variable every environment has.
        #[arg(long, env = "PATH", default_value = "the default")]
        path_like: String,
    }

    #[test]
    fn defaults_ignore_the_environment() {
        let from_environment = Example::try_parse_from(["example"]).unwrap();
        assert_ne!(from_environment.path_like, "the default", "PATH is set");
        let defaults: Example = defaults();
        assert_eq!(defaults.path_like, "the default");
        assert_eq!(defaults.redis.redis_key_prefix, "seckill");
        assert_eq!(defaults.redis.redis_timeout_ms.get(), 200);
    }

    #[test]
    fn a_zero_where_one_is_the_least_is_refused_by_clap() {
        let error = Example::try_parse_from(["example", "--redis-timeout-ms", "0"]).unwrap_err();
        assert!(error.to_string().contains("--redis-timeout-ms"), "{error}");
    }

    #[test]
    fn empty_kafka_wiring_is_refused_by_name() {
        let args = KafkaArgs {
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_topic: " ".into(),
            kafka_order_events_topic: "events".into(),
            kafka_dlq_topic: "dlq".into(),
            ..defaults()
        };
        assert!(
            args.validate()
                .unwrap_err()
                .0
                .starts_with("KAFKA_TOPIC is empty")
        );
    }

    #[test]
    fn a_record_lifetime_under_twice_the_topics_retention_is_refused_naming_both() {
        let args = KafkaArgs {
            kafka_topic_retention_hours: NonZeroU32::new(72).unwrap(),
            ..defaults()
        };
        let six_days = Duration::from_hours(144);
        let a_second_short = Duration::from_secs(144 * 3600 - 1);
        let refused = args
            .require_outlives_topics("SMS_RECORD_TTL_SECS", a_second_short)
            .unwrap_err()
            .0;
        assert!(
            refused.starts_with(
                "SMS_RECORD_TTL_SECS (518399 s) must be at least twice KAFKA_TOPIC_RETENTION_HOURS (72 h)"
            ),
            "{refused}"
        );
        assert_eq!(
            args.require_outlives_topics("SMS_RECORD_TTL_SECS", six_days),
            Ok(())
        );
    }
}
