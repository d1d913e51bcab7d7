//! The embedded deployment: which backend each service gets, and each service's `Config`,
//! built by parsing flags exactly as its own binary would (so a renamed flag fails here too).
//!
//! | concern | embedded backend | what production uses instead |
//! | --- | --- | --- |
//! | stock ledger, statistics, coordination | `REDIS_URL=memory:` (in-process) | Redis |
//! | event bus | `KAFKA_BROKERS=mock:` (librdkafka's mock cluster, the Kafka protocol in-process) | Kafka |
//! | order table | `DATABASE_URL=sqlite:<data dir>/orders.db` | PostgreSQL |
//! | SMS provider | `<data dir>/sms.jsonl` | an HTTP provider |

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;

/// Backend URLs and secrets shared by the four services of one embedded run.
pub struct Wiring {
    pub redis_url: String,
    pub redis_key_prefix: String,
    pub kafka_brokers: String,
    pub database_url: String,
    pub sms_file: PathBuf,
    pub sms_rate_per_sec: u32,
    pub admin_token: String,
    jwt_secret: String,
}

impl Wiring {
    /// Embedded backends, with the order table and the SMS file under `data_dir`, and fresh
    /// secrets (tokens from an earlier run do not work in this one).
    pub fn embedded(data_dir: &Path, sms_rate_per_sec: u32) -> Self {
        let secret = || {
            format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            )
        };
        Self {
            redis_url: "memory:".into(),
            redis_key_prefix: "seckill".into(),
            kafka_brokers: "mock:".into(),
            database_url: format!("sqlite:{}", data_dir.join("orders.db").display()),
            sms_file: data_dir.join("sms.jsonl"),
            sms_rate_per_sec,
            admin_token: secret(),
            jwt_secret: secret(),
        }
    }

    /// `--redis-url … --kafka-brokers …`: what every service is told.
    fn backend_flags(&self) -> Vec<String> {
        flags(&[
            ("--redis-url", &self.redis_url),
            ("--redis-key-prefix", &self.redis_key_prefix),
            ("--kafka-brokers", &self.kafka_brokers),
        ])
    }

    pub fn gateway(&self, listen: SocketAddr) -> anyhow::Result<gateway::Config> {
        let mut args = flags(&[
            ("--listen-addr", &listen.to_string()),
            ("--jwt-secret", &self.jwt_secret),
            ("--admin-token", &self.admin_token),
        ]);
        args.extend(self.backend_flags());
        parse("gateway", args)
    }

    pub fn order_worker(&self) -> anyhow::Result<order_worker::Config> {
        let mut args = flags(&[
            ("--database-url", &self.database_url),
            ("--consumer-group", "order-worker"),
            // The reconciler's quicker beat suits a demo that settles in seconds.
            ("--reconcile-min-age-ms", "3000"),
        ]);
        args.extend(self.worker_flags());
        parse("order-worker", args)
    }

    pub fn sms_worker(&self) -> anyhow::Result<sms_worker::Config> {
        let mut args = flags(&[
            ("--consumer-group", "sms-worker"),
            ("--sms-provider", "file"),
            ("--sms-file", &self.sms_file.display().to_string()),
            ("--sms-rate-per-sec", &self.sms_rate_per_sec.to_string()),
        ]);
        args.extend(self.worker_flags());
        parse("sms-worker", args)
    }

    pub fn stats_worker(&self) -> anyhow::Result<stats_worker::Config> {
        let mut args = flags(&[("--consumer-group", "stats-worker")]);
        args.extend(self.worker_flags());
        parse("stats-worker", args)
    }

    /// A worker's `/healthz` and `/metrics` listen on a free port: in one process they share
    /// one metrics registry, which the gateway's `/metrics` serves too.
    fn worker_flags(&self) -> Vec<String> {
        let mut args = flags(&[("--http-addr", "127.0.0.1:0")]);
        args.extend(self.backend_flags());
        args
    }
}

fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(flag, value)| [(*flag).to_owned(), (*value).to_owned()])
        .collect()
}

fn parse<C: Parser>(binary: &str, args: Vec<String>) -> anyhow::Result<C> {
    C::try_parse_from(std::iter::once(binary.to_owned()).chain(args))
        .map_err(|error| anyhow::anyhow!("{binary}'s embedded configuration: {error}"))
}
