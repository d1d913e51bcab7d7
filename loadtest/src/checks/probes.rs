//! Where the checks may look besides the API: the command line's arguments, and the stores
//! and files they name, opened through the services' own types.

use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use order_worker::store::{DatabaseSettings, OrderStore};
use shared::backends::{Backends, MEMORY_SCHEME};
use shared::config::RedisArgs;
use shared::stock::StockLedger;

/// Where the checks may look besides the API.
#[derive(Args, Clone, Debug)]
pub struct CheckArgs {
    /// URL of the orders database (postgres://… or sqlite:…); enables the order-table checks.
    #[arg(long)]
    pub database_url: Option<String>,

    /// URL of the stock ledger (redis://…, or memory: inside the process that runs the
    /// services); enables the outbox and conservation checks.
    #[arg(long)]
    pub redis_url: Option<String>,

    /// Key prefix of the deployment in Redis.
    #[arg(long, default_value = "seckill")]
    pub redis_key_prefix: String,

    /// The SMS worker's JSON-lines file; enables the one-SMS-per-order check.
    #[arg(long)]
    pub sms_file: Option<PathBuf>,

    /// Messages the SMS worker may send again, each answered by the provider as a repeat of
    /// its idempotency key: one per SMS worker killed during the run (none without faults).
    #[arg(long, default_value_t = 0)]
    pub sms_repeats_allowed: u64,

    /// The simulated payment provider's books (the services' PAYMENTS_FILE); enables the
    /// money check (invariant 8).
    #[arg(long)]
    pub payments_file: Option<PathBuf>,

    /// Longest wait for the workers to drain the queue.
    #[arg(long, default_value_t = 120)]
    pub settle_timeout_secs: u64,

    /// A worker's `/metrics` URL to read consumer lag from while settling (repeatable); a host
    /// name with several addresses (a compose service with replicas) is read at each.
    #[arg(long = "metrics-url")]
    pub metrics_urls: Vec<String>,

    /// Measure only: neither wait for the pipeline nor check the invariants (benchmarks of
    /// the gateway alone, with no workers running).
    #[arg(long)]
    pub skip_checks: bool,
}

/// Where the checks look besides the API.
pub struct Probes {
    /// The order table; enables the order-table checks.
    pub orders: Option<Arc<dyn OrderStore>>,
    /// The stock ledger; enables the outbox and conservation checks.
    pub ledger: Option<Arc<dyn StockLedger>>,
    /// The SMS worker's JSON-lines file; enables the one-SMS-per-order check.
    pub sms_file: Option<PathBuf>,
    /// Messages the SMS worker may send again (see [`CheckArgs::sms_repeats_allowed`]).
    pub sms_repeats_allowed: u64,
    /// Faults struck while the crowd bought (the nemesis): a unit left unsold then is no
    /// safety violation, so stranded stock and resale are not checked; everything else is.
    pub faults_while_buying: bool,
    /// The payment provider's books; enables the money check.
    pub payments_file: Option<PathBuf>,
    /// `/metrics` URLs to read consumer lag from while settling (each address of a host name).
    pub metrics_urls: Vec<String>,
    /// Longest wait for the workers to drain the queue.
    pub settle_timeout: Duration,
}

impl Probes {
    /// The probes `args` name; `None` when asked to skip the checks.
    pub fn open(args: &CheckArgs) -> anyhow::Result<Option<Self>> {
        if args.skip_checks {
            return Ok(None);
        }
        let orders = match &args.database_url {
            Some(url) => Some(order_worker::store::open(url, DatabaseSettings::default())?),
            None => None,
        };
        let ledger = match &args.redis_url {
            Some(url) => Some(open_ledger(url, &args.redis_key_prefix)?),
            None => None,
        };
        Ok(Some(Self {
            orders,
            ledger,
            sms_file: args.sms_file.clone(),
            sms_repeats_allowed: args.sms_repeats_allowed,
            faults_while_buying: false,
            payments_file: args.payments_file.clone(),
            metrics_urls: args.metrics_urls.clone(),
            settle_timeout: Duration::from_secs(args.settle_timeout_secs),
        }))
    }
}

/// The stock ledger behind `url`, read with a generous deadline (a loaded Redis is slow).
fn open_ledger(url: &str, key_prefix: &str) -> anyhow::Result<Arc<dyn StockLedger>> {
    if url.starts_with(MEMORY_SCHEME) {
        let url = shared::redact::url(url);
        anyhow::bail!(
            "--redis-url {url} names stores inside the process that runs the services; \
             a separate load test cannot see them (give it the services' redis:// URL)"
        );
    }
    let args = RedisArgs {
        redis_url: url.to_owned(),
        redis_key_prefix: key_prefix.to_owned(),
        redis_timeout_ms: NonZeroU64::new(5_000).expect("5000 > 0"),
        ..shared::config::defaults()
    };
    Ok(Backends::open(&args)?.ledger())
}
