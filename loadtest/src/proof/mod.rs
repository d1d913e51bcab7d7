//! The proof on the real services: the services started as separate release processes,
//! crowds sent at them, faults struck, and every sale held to the invariants of
//! `docs/architecture.md` by the same checks the load test runs ([`crate::checks`]).
//! `docs/proof.md` says what each proof shows.
//!
//! | module | concern |
//! | --- | --- |
//! | [`stack`] | the processes: started in a namespace, killed, started again, stopped |
//! | [`services`] | Redis, the broker and PostgreSQL crashed and restarted, Redis paused |
//! | [`cluster`] | a Redis Cluster's master killed, paused, or a sale's slot moved |
//! | [`faults`] | the fault table as values: injected, lasting, healed |
//! | [`progress`] | how far a sale has gone: the moment a fault strikes |
//! | [`e2e`] | one crowd, one order worker killed, every graceful stop clean |
//! | [`chaos`] | each fault of the table alone, against its own crowd |
//! | [`nemesis`] | faults drawn from a seed, overlapping, over many sales |
//!
//! A proof runs from the checkout's root (it restarts services through `scripts/services`),
//! with the services' URLs in its environment (`scripts/services env`) and the workspace's
//! release binaries beside its own.

pub mod chaos;
pub mod cluster;
pub mod e2e;
pub mod faults;
pub mod nemesis;
pub mod progress;
pub mod services;
pub mod stack;

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use order_worker::store::DatabaseSettings;

use crate::api::Gateway;
use crate::checks::{CheckArgs, Probes};
use crate::proof::cluster::Cluster;
use crate::proof::progress::Progress;
use crate::proof::stack::{Role, Settings, Stack};
use crate::report::Summary;
use crate::{Crowd, Lifecycle, Pacing, open_sale};

/// Where the real services are (`scripts/services env` exports them).
#[derive(Args, Clone, Debug)]
pub struct ServiceUrls {
    /// The orders database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Redis: the stock ledger the checks read, and the one a fault pauses.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    redis_url: String,

    /// Redis Cluster, the ledger instead of REDIS_URL with --on-cluster.
    #[arg(long, env = "REDIS_CLUSTER_URL", hide_env_values = true)]
    redis_cluster_url: Option<String>,

    /// Run on Redis Cluster (REDIS_CLUSTER_URL) rather than one Redis node.
    #[arg(long)]
    on_cluster: bool,

    /// The Kafka-protocol brokers.
    #[arg(long, env = "KAFKA_BROKERS")]
    pub kafka_brokers: String,
}

impl ServiceUrls {
    /// The Redis the run uses: the cluster with `--on-cluster`, else the one node.
    fn redis(&self) -> anyhow::Result<&str> {
        if self.on_cluster {
            self.redis_cluster_url
                .as_deref()
                .context("--on-cluster needs REDIS_CLUSTER_URL (scripts/services env)")
        } else {
            Ok(&self.redis_url)
        }
    }
}

/// The longest wait for a stack's pipeline to drain once its crowd has played.
const SETTLE_TIMEOUT_SECS: u64 = 180;

/// One run of a proof: its id, its directory of logs and records under `.runs/`, and the
/// secrets its services share.
pub struct Run {
    pub id: String,
    pub dir: PathBuf,
    bin_dir: PathBuf,
    urls: ServiceUrls,
    /// The Redis of this run: one node, or the cluster.
    redis_url: String,
    jwt_secret: String,
    admin_token: String,
}

impl Run {
    /// A fresh run of the proof `kind` (its id: `<kind>-<unix time>-<pid>`).
    pub fn new(kind: &str, urls: ServiceUrls) -> anyhow::Result<Self> {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let id = format!("{kind}-{unix}-{}", std::process::id());
        let dir = Path::new(".runs").join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let exe = std::env::current_exe()?;
        let bin_dir = exe.parent().context("the load test has no directory")?;
        let random = || uuid::Uuid::new_v4().simple().to_string();
        Ok(Self {
            id,
            dir,
            bin_dir: bin_dir.to_owned(),
            redis_url: urls.redis()?.to_owned(),
            urls,
            jwt_secret: format!("{}{}", random(), random()),
            admin_token: format!("{}{}", random(), random()),
        })
    }

    /// The namespace `<run id>-<name>`: a key prefix, topics, payment books and an SMS file of
    /// its own.
    pub fn namespace(&self, label: &str) -> Namespace {
        Namespace {
            name: format!("{}-{label}", self.id),
            sms_file: self.dir.join(format!("{label}-sms.jsonl")),
            payments_file: self.dir.join(format!("{label}-payments.jsonl")),
            logs: self.dir.join(label),
        }
    }

    /// A stack in `namespace`; `settings` come after the run's own, so they win.
    pub fn stack(&self, namespace: &Namespace, settings: &[(&str, &str)]) -> Stack {
        let mut common: Settings = [
            ("REDIS_URL", self.redis_url.clone()),
            ("DATABASE_URL", self.urls.database_url.clone()),
            ("KAFKA_BROKERS", self.urls.kafka_brokers.clone()),
            ("REDIS_KEY_PREFIX", namespace.name.clone()),
            ("KAFKA_TOPIC", namespace.name.clone()),
            ("KAFKA_DLQ_TOPIC", format!("{}.dlq", namespace.name)),
            (
                "KAFKA_ORDER_EVENTS_TOPIC",
                format!("{}.order-events", namespace.name),
            ),
            ("KAFKA_TOPIC_PARTITIONS", "6".into()),
            ("LOG_FORMAT", "json".into()),
            ("RUST_LOG", "info".into()),
            // The simulated provider's books, shared by the gateways that charge and the order
            // workers that settle what they left: the record the money check reads.
            (
                "PAYMENTS_FILE",
                namespace.payments_file.display().to_string(),
            ),
            ("JWT_SECRET", self.jwt_secret.clone()),
            ("ADMIN_TOKEN", self.admin_token.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();
        common.extend(
            settings
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned())),
        );
        Stack::new(&self.bin_dir, &namespace.logs, common)
    }

    /// The stack's gateways, as a crowd's target.
    pub fn gateways(&self) -> anyhow::Result<Vec<Gateway>> {
        [Role::Gateway(1), Role::Gateway(2)]
            .iter()
            .map(|role| Gateway::new(&role.url(), &self.admin_token))
            .collect()
    }

    /// Where the checks look in `namespace`: the order table, the stock ledger, the SMS file,
    /// the payment books and the workers' consumer lag.
    pub fn probes(
        &self,
        namespace: &Namespace,
        sms_repeats_allowed: u64,
    ) -> anyhow::Result<Probes> {
        let args = CheckArgs {
            database_url: Some(self.urls.database_url.clone()),
            redis_url: Some(self.redis_url.clone()),
            redis_key_prefix: namespace.name.clone(),
            sms_file: Some(namespace.sms_file.clone()),
            sms_repeats_allowed,
            payments_file: Some(namespace.payments_file.clone()),
            settle_timeout_secs: SETTLE_TIMEOUT_SECS,
            metrics_urls: Role::WORKERS
                .iter()
                .map(|role| role.metrics_url())
                .collect(),
            skip_checks: false,
        };
        Probes::open(&args)?.context("probes skipped")
    }

    /// Where a fault's moment is read for the sale `sale` of `namespace`.
    pub fn progress(
        &self,
        namespace: &Namespace,
        sale: &shared::sale::Sale,
    ) -> anyhow::Result<Progress> {
        Ok(Progress {
            gateway: Gateway::new(&Role::Gateway(2).url(), &self.admin_token)?,
            orders: order_worker::store::open(
                &self.urls.database_url,
                DatabaseSettings::default(),
            )?,
            sms_file: namespace.sms_file.clone(),
            payments_file: namespace.payments_file.clone(),
            sale_id: sale.id.clone(),
            stock: u64::from(sale.stock),
        })
    }

    /// The path of the workspace binary `name` (built beside the load test).
    pub fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Every write fsynced before the run's Redis answers (each node of a cluster), as the
    /// compose stack runs it.
    pub async fn make_redis_durable(&self) -> anyhow::Result<()> {
        match Cluster::of(&self.redis_url) {
            None => services::make_redis_durable(&self.redis_url).await,
            Some(cluster) => {
                for node in cluster.node_urls().await? {
                    services::make_redis_durable(&node).await?;
                }
                Ok(())
            }
        }
    }

    /// Whether the run's Redis is a cluster.
    pub fn on_cluster(&self) -> bool {
        Cluster::of(&self.redis_url).is_some()
    }

    /// The run's Redis (a fault pauses it).
    pub fn redis_url(&self) -> &str {
        &self.redis_url
    }
}

/// A namespace of a run: where its stack keeps its state.
pub struct Namespace {
    /// The Redis key prefix and the topics' name (`<run id>-<label>`); the base of its sales'
    /// ids.
    pub name: String,
    /// Its processes' logs: `<logs>-<role>.log`.
    logs: PathBuf,
    /// The SMS worker's file (the file provider's), or the flaky provider's.
    pub sms_file: PathBuf,
    pub payments_file: PathBuf,
}

/// The metrics text of `url`, empty when it cannot be read within a second.
pub async fn metrics(url: &str) -> String {
    let read = async {
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(1))
            .build()?;
        http.get(url).send().await?.error_for_status()?.text().await
    };
    read.await.unwrap_or_default()
}

/// The settings of every stack a fault strikes (chaos, the nemesis).
pub(crate) const FAULTED_STACK: &[(&str, &str)] = &[
    ("RECONCILE_INTERVAL_MS", "500"),
    ("SMS_RATE_PER_SEC", "400"),
    ("RUST_LOG", "warn"),
    // A provider as slow as a real one: a fault can strike between a charge and its sale.
    ("PAYMENTS_SIMULATED_LATENCY_MS", "100"),
];

/// A crowd of `users` for `stock` units of the sale `sale_id`, two attempts each at 200 a
/// second; 70% of the winners pay within `window_secs`, and one round of latecomers buys the
/// units that come back. `proof` names the run in its summary.
pub(crate) fn faulted_crowd(
    proof: &'static str,
    sale_id: &str,
    stock: u32,
    users: usize,
    window_secs: u32,
) -> anyhow::Result<Crowd> {
    let mut sale = open_sale(Some(sale_id.parse()?), stock, 1999);
    sale.payment_window_secs = window_secs;
    Ok(Crowd {
        scenario: proof,
        users,
        attempts_per_user: 2,
        sale,
        pacing: Pacing::new(Some(200), 256),
        lifecycle: Some(Lifecycle {
            pay_ratio: 0.7,
            resale_rounds: 1,
        }),
        watched: Vec::new(),
    })
}

/// What a proof found, sale by sale: printed as a table, and as one JSON object.
#[derive(Debug, serde::Serialize)]
pub struct Record {
    pub proof: &'static str,
    /// The run's id; its logs and records are in `.runs/<run>/`.
    pub run: String,
    /// The seed the nemesis drew its faults from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Every fault the nemesis struck, when, and whether it struck and healed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<nemesis::Struck>,
    pub lines: Vec<Line>,
    /// Every line's violations, each prefixed with the line's name.
    pub violations: Vec<String>,
}

/// One scenario's or one sale's result.
#[derive(Debug, serde::Serialize)]
pub struct Line {
    pub name: String,
    /// The crowd's summary; `None` when the crowd could not run.
    pub summary: Option<Summary>,
    pub violations: Vec<String>,
}

impl Record {
    pub fn new(proof: &'static str, run: &Run) -> Self {
        Self {
            proof,
            run: run.id.clone(),
            seed: None,
            faults: Vec::new(),
            lines: Vec::new(),
            violations: Vec::new(),
        }
    }

    /// Adds a line; its violations count for the whole proof.
    pub fn add(&mut self, name: String, summary: Option<Summary>, violations: Vec<String>) {
        self.violations.extend(
            violations
                .iter()
                .map(|violation| format!("{name}: {violation}")),
        );
        self.lines.push(Line {
            name,
            summary,
            violations,
        });
    }

    /// Writes the record as `record.json` in the run's directory.
    pub fn save(&self, run: &Run) -> anyhow::Result<()> {
        let path = run.dir.join("record.json");
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub fn print(&self) {
        println!(
            "{} run {} (logs in .runs/{})",
            self.proof, self.run, self.run
        );
        if let Some(seed) = self.seed {
            println!("seed {seed}: the same faults at the same moments with --seed {seed}");
        }
        for struck in &self.faults {
            println!("  {struck}");
        }
        println!(
            "{:<28} {:>6} {:>6} {:>6} {:>7} {:>6} {:>9} {:>10}",
            "", "held", "orders", "paid", "expired", "sms", "settle s", "violations"
        );
        let show = |value: Option<u64>| value.map_or_else(|| "-".to_owned(), |v| v.to_string());
        for line in &self.lines {
            let Some(summary) = &line.summary else {
                println!("{:<28} {:>56}", line.name, line.violations.len());
                continue;
            };
            println!(
                "{:<28} {:>6} {:>6} {:>6} {:>7} {:>6} {:>9.1} {:>10}",
                line.name,
                summary.holders,
                show(summary.orders),
                show(summary.paid),
                show(summary.expired),
                show(summary.sms),
                summary.settle_secs,
                line.violations.len()
            );
        }
        for violation in &self.violations {
            println!("violation: {violation}");
        }
    }
}
