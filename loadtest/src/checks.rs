//! After the crowd: wait for the pipeline to drain, then check the invariants
//! (`docs/architecture.md`) from every angle the run was given: the API always, the order
//! table, the stock ledger and the SMS file when [`Probes`] reach them. The order table and
//! the ledger are read through the services' own store traits, so any backend the services
//! run on can be checked: a separate load test opens them from URLs ([`Probes::open`]), the
//! all-in-one runner hands in the very stores its services use.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use futures::StreamExt;
use order_worker::store::{DatabaseSettings, OrderStore};
use shared::backends::{Backends, MEMORY_SCHEME};
use shared::config::RedisArgs;
use shared::consumer::LAG_MESSAGES;
use shared::ids::{OrderId, SaleId};
use shared::order_status::OrderStatus;
use shared::payment::PaymentRecord;
use shared::stock::StockLedger;

use crate::api::Gateway;
use crate::drive::{Holding, Told};
use crate::lifecycle::{Fate, Fates};
use crate::{money, oversell, prometheus};

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
            payments_file: args.payments_file.clone(),
            metrics_urls: args.metrics_urls.clone(),
            settle_timeout: Duration::from_secs(args.settle_timeout_secs),
        }))
    }
}

/// What the crowd was told, and about which sale.
pub struct Expected<'a> {
    pub sale_id: &'a SaleId,
    pub stock: u64,
    /// The shortest payment window of the run's orders: an expired order held its unit at
    /// least this long.
    pub payment_window: Duration,
    /// Distinct users who tried to buy.
    pub demand: u64,
    /// Every order the crowd holds (see `drive::Outcome::holdings`).
    pub holdings: &'a [Holding],
    /// Users a 503 promised nothing was locked (see `drive::Outcome::promised_nothing_locked`).
    pub promised_nothing_locked: &'a [usize],
    /// When the crowd began: the report gives instants from it.
    pub started: Instant,
    pub tokens: &'a [String],
    /// With a lifecycle: each order's fate, and the resale rounds. `None`: nobody paid, every
    /// order should stay `created`.
    pub fates: Option<&'a Fates>,
    /// Messages the SMS worker may send again because the run killed it.
    pub sms_repeats_allowed: u64,
}

impl Expected<'_> {
    /// Whether `order_id` may end as `status`.
    fn allows(&self, order_id: &OrderId, status: OrderStatus) -> bool {
        match self.fates {
            None => status == OrderStatus::Created,
            Some(fates) => fates
                .of
                .get(order_id)
                .copied()
                .unwrap_or(Fate::Expired)
                .allows(status),
        }
    }

    /// Orders that must end paid, must end expired, and may end either.
    fn fate_counts(&self) -> (u64, u64, u64) {
        self.fates.map_or((0, 0, 0), |fates| {
            (
                fates.count(Fate::Paid),
                fates.count(Fate::Expired),
                fates.count(Fate::PaidOrExpired),
            )
        })
    }

    /// SMS the run expects: one per order, and one more per order paid or expired.
    fn sms(&self) -> u64 {
        let (paid, expired, either) = self.fate_counts();
        self.holdings.len() as u64 + paid + expired + either
    }
}

/// What the system holds once it settled; `None` where the run had no access.
#[derive(Debug, Default)]
pub struct Observed {
    pub remaining: u64,
    pub stats_sold: u64,
    pub stats_revenue_cents: i64,
    pub stats_buyers: u64,
    pub stats_paid: u64,
    pub stats_paid_revenue_cents: i64,
    pub stats_expired: u64,
    pub stats_failed: u64,
    pub orders: Option<u64>,
    pub order_revenue_cents: Option<i64>,
    /// Order rows `paid` and `expired`, and the paid rows' sum.
    pub orders_paid: Option<u64>,
    pub orders_expired: Option<u64>,
    pub order_paid_revenue_cents: Option<i64>,
    pub outbox: Option<u64>,
    /// Payment intents not settled yet (the resolver completes or refunds their charges).
    pub open_payments: Option<u64>,
    /// The payment provider's books, read once settled.
    pub payments: Option<PaymentRecord>,
    /// SMS the provider delivered, and the ones it was sent again and did not deliver.
    pub sms: Option<u64>,
    pub sms_repeats: Option<u64>,
    /// Each held order's status once settled, as its owner was told (missing: not told).
    pub final_statuses: HashMap<OrderId, OrderStatus>,
    pub duplicates: u64,
    pub settle_secs: f64,
}

impl Observed {
    /// Held orders that ended in `status`.
    pub fn ended(&self, status: OrderStatus) -> u64 {
        self.final_statuses
            .values()
            .filter(|s| **s == status)
            .count() as u64
    }
}

/// Waits until statistics, orders and outbox have caught up with the acceptances (or the
/// timeout passed), reporting progress; then gathers everything the checks need.
pub async fn settle(
    gateway: &Gateway,
    probes: &Probes,
    expected: &Expected<'_>,
) -> anyhow::Result<Observed> {
    let started = Instant::now();
    let sale_id = expected.sale_id.as_str();
    let target = expected.holdings.len() as u64;
    let (paid, expired, either) = expected.fate_counts();
    // Order rows beyond one per buyer, and SMS delivered twice, as last read.
    let mut duplicate_order_rows = 0;
    let mut duplicate_sms = 0;
    let deadline = started + probes.settle_timeout;
    let mut observed = Observed::default();
    loop {
        let stats = gateway.stats(sale_id).await?;
        observed.stats_sold = stats.sold;
        observed.stats_revenue_cents = stats.revenue_cents;
        observed.stats_buyers = stats.buyers;
        observed.stats_paid = stats.paid;
        observed.stats_paid_revenue_cents = stats.paid_revenue_cents;
        observed.stats_expired = stats.expired;
        observed.stats_failed = stats.failed;
        if let Some(orders) = &probes.orders {
            let rows = orders.sale_orders(expected.sale_id).await?;
            observed.orders = Some(rows.rows);
            observed.order_revenue_cents = Some(rows.revenue_cents);
            observed.orders_paid = Some(rows.paid);
            observed.orders_expired = Some(rows.expired);
            observed.order_paid_revenue_cents = Some(rows.paid_revenue_cents);
            duplicate_order_rows = rows.rows - rows.distinct_buyers;
        }
        if let Some(ledger) = &probes.ledger {
            observed.outbox = Some(ledger.outbox_sizes(expected.sale_id).await?.locked);
            observed.open_payments = Some(ledger.open_payments(expected.sale_id).await?);
        }
        if let Some(path) = &probes.sms_file {
            let sms = SmsLedger::read(path, expected.sale_id)?;
            observed.sms = Some(sms.delivered.len() as u64);
            observed.sms_repeats = Some(sms.repeats);
            duplicate_sms = sms.delivered_twice();
        }
        // Each order of unknown payment outcome ends paid or expired: only the sum is known.
        let final_counts = |ended_paid: u64, ended_expired: u64| {
            ended_paid >= paid
                && ended_expired >= expired
                && ended_paid + ended_expired >= paid + expired + either
        };
        let drained = observed.stats_sold >= target
            && final_counts(observed.stats_paid, observed.stats_expired)
            && observed.orders.is_none_or(|n| n >= target)
            && observed
                .orders_paid
                .zip(observed.orders_expired)
                .is_none_or(|(paid, expired)| final_counts(paid, expired))
            && observed.outbox.is_none_or(|n| n == 0)
            && observed.open_payments.is_none_or(|n| n == 0)
            && observed.sms.is_none_or(|n| n >= expected.sms());
        if drained || Instant::now() > deadline {
            break;
        }
        eprintln!(
            "  settling: stats {}/{target} paid {}/{paid} expired {}/{expired} (either {either}), orders {}, outbox {}, payments open {}, sms {}/{}{}",
            observed.stats_sold,
            observed.stats_paid,
            observed.stats_expired,
            show(observed.orders),
            show(observed.outbox),
            show(observed.open_payments),
            show(observed.sms),
            expected.sms(),
            consumer_lag(gateway, &probes.metrics_urls).await,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    observed.settle_secs = started.elapsed().as_secs_f64();
    observed.remaining = gateway.sale(sale_id).await?.remaining;
    observed.final_statuses = final_statuses(gateway, expected).await;
    if let Some(path) = &probes.payments_file {
        observed.payments = Some(PaymentRecord::read(path)?);
    }
    observed.duplicates = count_duplicates(expected, duplicate_order_rows + duplicate_sms);
    Ok(observed)
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
    };
    Ok(Backends::open(&args)?.ledger())
}

/// `; lag group=N …` summed over partitions, from the workers' Prometheus metrics.
async fn consumer_lag(gateway: &Gateway, metrics_urls: &[String]) -> String {
    let mut lag: BTreeMap<String, f64> = BTreeMap::new();
    let mut replicas = Vec::new();
    for url in metrics_urls {
        replicas.extend(every_replica(url).await);
    }
    for url in &replicas {
        let Ok(text) = gateway.text(url).await else {
            continue;
        };
        for sample in prometheus::samples(&text, LAG_MESSAGES) {
            if let Some(group) = sample.label("group") {
                *lag.entry(group.to_owned()).or_default() += sample.value;
            }
        }
    }
    if lag.is_empty() {
        return String::new();
    }
    let groups: Vec<String> = lag
        .iter()
        .map(|(group, n)| format!("{group}={n}"))
        .collect();
    format!("; lag {}", groups.join(" "))
}

/// `url` once per address its host name has: a compose service with replicas answers its
/// name with every replica's address, and each reports the lag of the partitions it owns.
async fn every_replica(url: &str) -> Vec<String> {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return vec![url.to_owned()];
    };
    let (Some(host), Some(port)) = (parsed.host_str(), parsed.port_or_known_default()) else {
        return vec![url.to_owned()];
    };
    let Ok(addresses) = tokio::net::lookup_host((host, port)).await else {
        return vec![url.to_owned()];
    };
    let mut replicas: Vec<String> = addresses
        .map(|address| {
            let mut replica = parsed.clone();
            let _ = replica.set_ip_host(address.ip());
            replica.to_string()
        })
        .collect();
    replicas.sort();
    replicas.dedup();
    replicas
}

fn show(value: Option<u64>) -> String {
    value.map_or_else(|| "-".into(), |v| v.to_string())
}

/// One sale's lines of the SMS file (the file provider's format, see
/// `sms_worker::provider::json_lines`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SmsLedger {
    /// The message ids (`<order id>:<kind>`) of the messages delivered.
    pub(crate) delivered: Vec<String>,
    /// Messages sent again, which the provider knew by their key and did not deliver.
    repeats: u64,
}

impl SmsLedger {
    pub(crate) fn read(path: &Path, sale_id: &SaleId) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text, sale_id)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deliveries beyond one per message.
    fn delivered_twice(&self) -> u64 {
        let distinct: HashSet<_> = self.delivered.iter().collect();
        (self.delivered.len() - distinct.len()) as u64
    }

    fn parse(text: &str, sale_id: &SaleId) -> Self {
        let prefix = format!("{sale_id}.");
        let mut ledger = Self::default();
        for sms in text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        {
            let Some(message) = sms["idempotency_key"].as_str() else {
                continue;
            };
            if !message.starts_with(&prefix) {
                continue;
            }
            if sms["repeat"] == true {
                ledger.repeats += 1;
            } else {
                ledger.delivered.push(message.to_owned());
            }
        }
        ledger
    }
}

/// Each held order's status, asked by its owner; an order whose status could not be read is
/// left out.
async fn final_statuses(
    gateway: &Gateway,
    expected: &Expected<'_>,
) -> HashMap<OrderId, OrderStatus> {
    futures::stream::iter(expected.holdings)
        .map(|holding| async move {
            let token = &expected.tokens[holding.user];
            let status = gateway.order_status(&holding.order_id, token).await.ok();
            status.map(|status| (holding.order_id.clone(), status))
        })
        .buffer_unordered(64)
        .filter_map(std::future::ready)
        .collect()
        .await
}

/// Anything sold twice: a user accepted twice, an order id answered twice, plus the order rows
/// and SMS deliveries the stores showed repeated.
fn count_duplicates(expected: &Expected<'_>, repeated_in_stores: u64) -> u64 {
    let users: HashSet<_> = expected.holdings.iter().map(|h| h.user).collect();
    let orders: HashSet<_> = expected.holdings.iter().map(|h| &h.order_id).collect();
    let held = expected.holdings.len();
    (held - users.len() + held - orders.len()) as u64 + repeated_in_stores
}

/// The invariants 1–8 of `docs/architecture.md`, checked as far as the run can see: each
/// violation as a sentence, and which checks ran or were skipped and why.
pub fn verdict(expected: &Expected<'_>, observed: &Observed) -> Verdict {
    let mut verdict = Verdict::default();
    supply(expected, observed, &mut verdict);
    order_table(expected, observed, &mut verdict);
    pipeline(expected, observed, &mut verdict);
    promises(expected, &mut verdict);
    payments(expected, observed, &mut verdict);
    verdict
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Verdict {
    /// One sentence per violation.
    pub violations: Vec<String>,
    /// The checks that ran, by name.
    pub ran: Vec<&'static str>,
    /// The checks the run could not make.
    pub skipped: Vec<Skipped>,
}

/// A check the run could not make, and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Skipped {
    pub check: &'static str,
    pub because: &'static str,
}

impl Verdict {
    /// No check at all, `because`.
    pub fn unchecked(because: &'static str) -> Self {
        Self {
            skipped: vec![Skipped {
                check: "every invariant",
                because,
            }],
            ..Self::default()
        }
    }

    /// The check `name` ran; `sentence` is a violation unless it `holds`.
    fn check(&mut self, name: &'static str, holds: bool, sentence: impl FnOnce() -> String) {
        if !self.ran.contains(&name) {
            self.ran.push(name);
        }
        if !holds {
            self.violations.push(sentence());
        }
    }

    fn skip(&mut self, check: &'static str, because: &'static str) {
        self.skipped.push(Skipped { check, because });
    }
}

/// Invariants 1, 2 and 7's resale: never more units held than the stock, nothing stranded
/// while demand remains.
fn supply(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let held = expected.holdings.len() as u64;
    let peak = oversell::peak(expected.holdings, expected.payment_window, |holding| {
        observed.final_statuses.get(&holding.order_id).copied()
    });
    verdict.check(
        "oversell",
        peak.is_none_or(|peak| peak.held <= expected.stock),
        || {
            let peak = peak.expect("a peak above the stock");
            format!(
                "oversell: {} units held at once {:.3} s into the run, for a stock of {}",
                peak.held,
                peak.at
                    .saturating_duration_since(expected.started)
                    .as_secs_f64(),
                expected.stock
            )
        },
    );
    if expected.demand < expected.stock {
        verdict.skip(
            "stranded_stock",
            "demand below the stock: the sale need not sell out",
        );
    }
    match expected.fates {
        None => {
            verdict.skip("resale", "no --pay-ratio: no unit comes back");
            if expected.demand >= expected.stock {
                verdict.check("stranded_stock", observed.remaining == 0, || {
                    format!("stranded stock: {} units remain", observed.remaining)
                });
                verdict.check("stranded_stock", held == expected.stock, || {
                    format!("stranded stock: {held} accepted of {}", expected.stock)
                });
            }
        }
        Some(fates) => {
            if expected.demand >= expected.stock {
                // At least the stock: with a short window, units expire and sell again during
                // the crowd itself.
                let first_crowd = held - fates.resold();
                verdict.check("stranded_stock", first_crowd >= expected.stock, || {
                    format!(
                        "stranded stock: the crowd got {first_crowd} of {}",
                        expected.stock
                    )
                });
            }
            resale(fates, verdict);
        }
    }
}

/// Invariant 7's resale: returned units are sold again while latecomers want them.
///
/// A round may sell more than the units back when it began: an order whose payment's answer was
/// unknown may expire during the round, and its unit sells too.
fn resale(fates: &Fates, verdict: &mut Verdict) {
    for (number, round) in fates.rounds.iter().enumerate() {
        verdict.check(
            "resale",
            round.buyers < round.offered || round.accepted >= round.offered,
            || {
                format!(
                    "returned units not sold again: resale round {} sold {} of {} units to {} latecomers",
                    number + 1,
                    round.accepted,
                    round.offered,
                    round.buyers
                )
            },
        );
    }
}

/// Invariants 4 and 7 in the order table: one row per order, each in its final status.
fn order_table(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let Some(orders) = observed.orders else {
        verdict.skip("order_table", "no order table to read (--database-url)");
        return;
    };
    let held = expected.holdings.len() as u64;
    let (paid, expired) = (
        observed.ended(OrderStatus::Paid),
        observed.ended(OrderStatus::Expired),
    );
    let mut check = |holds, sentence: String| verdict.check("order_table", holds, || sentence);
    check(
        orders == held,
        format!("orders lost or doubled: {orders} orders for {held} acceptances"),
    );
    check(
        (observed.orders_paid, observed.orders_expired) == (Some(paid), Some(expired)),
        format!(
            "order table: {} paid and {} expired rows for {paid} orders that ended paid and {expired} expired",
            show(observed.orders_paid),
            show(observed.orders_expired)
        ),
    );
    if let Some(revenue) = observed.order_revenue_cents {
        check(
            revenue == observed.stats_revenue_cents,
            format!(
                "stats revenue {} differs from the orders' {revenue}",
                observed.stats_revenue_cents
            ),
        );
    }
    if let Some(paid_revenue) = observed.order_paid_revenue_cents {
        check(
            paid_revenue == observed.stats_paid_revenue_cents,
            format!(
                "stats paid revenue {} differs from the paid orders' {paid_revenue}",
                observed.stats_paid_revenue_cents
            ),
        );
    }
}

/// Invariants 3 to 5 and 7 everywhere else: statuses, statistics, SMS, conservation.
fn pipeline(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let held = expected.holdings.len() as u64;
    let (paid, expired) = (
        observed.ended(OrderStatus::Paid),
        observed.ended(OrderStatus::Expired),
    );
    verdict.check("one_per_buyer", observed.duplicates == 0, || {
        format!(
            "{} duplicates (buyers, orders or SMS of one kind)",
            observed.duplicates
        )
    });
    verdict.check(
        "statistics",
        (
            observed.stats_sold,
            observed.stats_buyers,
            observed.stats_paid,
            observed.stats_expired,
            observed.stats_failed,
        ) == (held, held, paid, expired, 0),
        || {
            format!(
                "stats count {} sold to {} buyers, {} paid, {} expired and {} failed, for {held} acceptances, {paid} orders that ended paid and {expired} expired",
                observed.stats_sold,
                observed.stats_buyers,
                observed.stats_paid,
                observed.stats_expired,
                observed.stats_failed
            )
        },
    );
    let wrong_status = expected
        .holdings
        .iter()
        .filter(|holding| {
            observed
                .final_statuses
                .get(&holding.order_id)
                .is_none_or(|status| !expected.allows(&holding.order_id, *status))
        })
        .count();
    verdict.check("final_statuses", wrong_status == 0, || {
        format!(
            "{wrong_status} accepted orders did not end as they must (created; or paid when the payment was answered 200, expired when it was refused or never tried, either when its answer could not tell)"
        )
    });
    sms(expected, observed, verdict);
    conservation(expected, observed, verdict);
}

/// Invariant 4's one SMS per order and kind, read from the SMS file.
fn sms(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let (Some(sms), Some(repeats)) = (observed.sms, observed.sms_repeats) else {
        verdict.skip("sms", "no SMS file to read (--sms-file)");
        return;
    };
    verdict.check("sms", sms == expected.sms(), || {
        format!(
            "{sms} SMS for {} orders and {} of them paid or expired (expected {})",
            expected.holdings.len(),
            expected.sms() - expected.holdings.len() as u64,
            expected.sms()
        )
    });
    verdict.check("sms", repeats <= expected.sms_repeats_allowed, || {
        format!(
            "{repeats} SMS sent again (the provider delivered each once), {} allowed by the faults",
            expected.sms_repeats_allowed
        )
    });
}

/// Invariants 5 and 7: stock = remaining + live orders, as the API shows them (always), and as
/// the stores hold them (the outbox and the order table, when the run can read both).
fn conservation(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let live = [
        OrderStatus::Processing,
        OrderStatus::Created,
        OrderStatus::Paid,
    ]
    .map(|status| observed.ended(status))
    .iter()
    .sum::<u64>();
    verdict.check(
        "conservation",
        expected.stock == observed.remaining + live,
        || {
            format!(
                "conservation: stock {} != remaining {} + live orders {live} (processing, created or paid, as their owners were told)",
                expected.stock, observed.remaining
            )
        },
    );
    let (Some(outbox), Some(orders)) = (observed.outbox, observed.orders) else {
        verdict.skip(
            "conservation_in_stores",
            "needs the stock ledger (--redis-url) and the order table (--database-url)",
        );
        return;
    };
    // Live orders hold a unit: processing ones (in the outbox) and stored ones not expired.
    let live = outbox + orders - observed.orders_expired.unwrap_or(0);
    verdict.check(
        "conservation_in_stores",
        expected.stock == observed.remaining + live,
        || {
            format!(
                "conservation in the stores: stock {} != remaining {} + outbox entries {outbox} + order rows not expired {}",
                expected.stock,
                observed.remaining,
                live - outbox
            )
        },
    );
}

/// Invariant 8, from the provider's books: every charge ended paid or refunded.
fn payments(expected: &Expected<'_>, observed: &Observed, verdict: &mut Verdict) {
    let Some(books) = &observed.payments else {
        verdict.skip("money", "no payment books to read (--payments-file)");
        return;
    };
    let (_, violations) = money::check(books, expected.sale_id, &observed.final_statuses);
    verdict.check("money", violations.is_empty(), || {
        let shown: Vec<&str> = violations.iter().take(3).map(String::as_str).collect();
        format!(
            "money: {} violations, e.g. {}",
            violations.len(),
            shown.join("; ")
        )
    });
}

/// The orders of buyers told by a 503 that nothing was locked (and whose every other answer
/// was definitive: `promised_nothing_locked`) that no 202 announced: the gateway said it had
/// not locked them.
pub fn told_unavailable_but_holding<'a>(
    holdings: &'a [Holding],
    promised_nothing_locked: &[usize],
) -> Vec<&'a Holding> {
    let promised: HashSet<usize> = promised_nothing_locked.iter().copied().collect();
    holdings
        .iter()
        .filter(|holding| holding.told != Told::Accepted && promised.contains(&holding.user))
        .collect()
}

/// The gateway's word: a buyer told by a 503 that nothing was locked holds nothing from it.
fn promises(expected: &Expected<'_>, verdict: &mut Verdict) {
    let broken = told_unavailable_but_holding(expected.holdings, expected.promised_nothing_locked);
    verdict.check("nothing_locked_means_nothing_held", broken.is_empty(), || {
        let example = broken.first().expect("a broken promise");
        format!(
            "{} buyers told 503 \"nothing was locked\" hold an order no 202 announced (e.g. user {} holds {})",
            broken.len(),
            example.user,
            example.order_id
        )
    });
}

#[cfg(test)]
mod tests {
    use shared::journal::Replay;

    use super::*;
    use crate::lifecycle::Round;

    #[test]
    fn the_sms_ledger_counts_one_sales_deliveries_and_repeats_apart() {
        let sale: SaleId = "s1".parse().unwrap();
        let file = [
            r#"{"idempotency_key":"s1.a:reserved","to":"u1","text":"t"}"#,
            r#"{"idempotency_key":"s2.b:reserved","to":"u2","text":"t"}"#,
            r#"{"idempotency_key":"s1.a:reserved","to":"u1","text":"t","repeat":true}"#,
            r#"{"idempotency_key":"s1.a:paid","to":"u1","text":"t","repeat":false}"#,
            "not json",
        ]
        .join("\n");
        let ledger = SmsLedger::parse(&file, &sale);
        assert_eq!(
            ledger,
            SmsLedger {
                delivered: vec!["s1.a:reserved".into(), "s1.a:paid".into()],
                repeats: 1,
            }
        );
        assert_eq!(ledger.delivered_twice(), 0);
        let doubled = format!(
            "{file}\n{}",
            r#"{"idempotency_key":"s1.a:paid","to":"u1","text":"t"}"#
        );
        assert_eq!(SmsLedger::parse(&doubled, &sale).delivered_twice(), 1);
    }

    /// A sale of `stock` units that `holdings` bought, as a correct run sees it once settled:
    /// statistics, order table, outbox and SMS file agree, each order ended as it must.
    struct Run {
        sale: SaleId,
        stock: u64,
        started: Instant,
        holdings: Vec<Holding>,
        promised_nothing_locked: Vec<usize>,
        tokens: Vec<String>,
        fates: Option<Fates>,
    }

    const WINDOW: Duration = Duration::from_secs(10);

    impl Run {
        /// `stock` units, each bought by one buyer told by a 202 a millisecond after its start.
        fn sold_out(stock: u64) -> Self {
            let sale: SaleId = "s1".parse().unwrap();
            let started = Instant::now();
            let holdings = (0..stock as usize)
                .map(|user| Holding {
                    user,
                    order_id: OrderId::generate(&sale),
                    told: Told::Accepted,
                    locked_after: started,
                    known_at: started + Duration::from_millis(1),
                })
                .collect();
            Self {
                sale,
                stock,
                started,
                holdings,
                promised_nothing_locked: Vec::new(),
                tokens: vec!["token".to_owned(); stock as usize + 10],
                fates: None,
            }
        }

        /// One more buyer, told by a 202 `secs` into the run.
        fn buys_at(&mut self, secs: u64) -> OrderId {
            let order_id = OrderId::generate(&self.sale);
            let sent = self.started + Duration::from_secs(secs);
            self.holdings.push(Holding {
                user: self.holdings.len(),
                order_id: order_id.clone(),
                told: Told::Accepted,
                locked_after: sent,
                known_at: sent + Duration::from_millis(1),
            });
            order_id
        }

        fn expected(&self) -> Expected<'_> {
            Expected {
                sale_id: &self.sale,
                stock: self.stock,
                payment_window: WINDOW,
                demand: self.stock + 5,
                holdings: &self.holdings,
                promised_nothing_locked: &self.promised_nothing_locked,
                started: self.started,
                tokens: &self.tokens,
                fates: self.fates.as_ref(),
                sms_repeats_allowed: 0,
            }
        }

        /// What a correct system shows: each order ended as `ended` says (created without one).
        fn observed(&self, ended: impl Fn(&OrderId) -> OrderStatus) -> Observed {
            let final_statuses: HashMap<OrderId, OrderStatus> = self
                .holdings
                .iter()
                .map(|holding| (holding.order_id.clone(), ended(&holding.order_id)))
                .collect();
            let count = |status| final_statuses.values().filter(|s| **s == status).count() as u64;
            let (held, paid, expired) = (
                self.holdings.len() as u64,
                count(OrderStatus::Paid),
                count(OrderStatus::Expired),
            );
            Observed {
                remaining: self.stock + expired - held,
                stats_sold: held,
                stats_buyers: held,
                stats_paid: paid,
                stats_expired: expired,
                orders: Some(held),
                orders_paid: Some(paid),
                orders_expired: Some(expired),
                outbox: Some(0),
                sms: Some(held + paid + expired),
                sms_repeats: Some(0),
                payments: Some(books_charging(&final_statuses)),
                final_statuses,
                ..Observed::default()
            }
        }
    }

    /// The provider's books of a correct run: one charge per paid order, nothing else.
    fn books_charging(final_statuses: &HashMap<OrderId, OrderStatus>) -> PaymentRecord {
        let mut books = PaymentRecord::default();
        for (order_id, _) in final_statuses
            .iter()
            .filter(|(_, status)| **status == OrderStatus::Paid)
        {
            let line = serde_json::json!({"order_id": order_id, "op": "charge", "amount_cents": 1});
            books.replay(line.to_string().as_bytes());
        }
        books
    }

    #[test]
    fn a_round_that_sold_fewer_units_than_came_back_to_enough_latecomers_is_a_violation() {
        let round = |offered, accepted| Round {
            offered,
            buyers: offered * 3,
            accepted,
        };
        let verdict_of = |rounds: Vec<Round>| {
            let fates = Fates {
                rounds,
                ..Fates::default()
            };
            let mut verdict = Verdict::default();
            resale(&fates, &mut verdict);
            verdict.violations
        };
        assert_eq!(verdict_of(vec![round(10, 9)]).len(), 1);
        assert!(
            verdict_of(vec![round(10, 10), round(4, 7)]).is_empty(),
            "units of unknown payments that came back during a round sell too"
        );
    }

    #[test]
    fn a_correct_run_holds_every_invariant_and_runs_every_check() {
        let run = Run::sold_out(3);
        let verdict = verdict(&run.expected(), &run.observed(|_| OrderStatus::Created));
        assert_eq!(verdict.violations, Vec::<String>::new());
        for check in [
            "oversell",
            "stranded_stock",
            "order_table",
            "statistics",
            "final_statuses",
            "sms",
            "conservation",
            "conservation_in_stores",
            "nothing_locked_means_nothing_held",
            "money",
        ] {
            assert!(verdict.ran.contains(&check), "{check} did not run");
        }
        assert_eq!(
            verdict.skipped,
            [Skipped {
                check: "resale",
                because: "no --pay-ratio: no unit comes back"
            }]
        );
    }

    #[test]
    fn without_the_stores_the_checks_that_need_them_say_why_they_were_skipped() {
        let run = Run::sold_out(3);
        let observed = Observed {
            orders: None,
            orders_paid: None,
            orders_expired: None,
            outbox: None,
            sms: None,
            sms_repeats: None,
            payments: None,
            ..run.observed(|_| OrderStatus::Created)
        };
        let verdict = verdict(&run.expected(), &observed);
        assert_eq!(verdict.violations, Vec::<String>::new());
        let skipped: Vec<_> = verdict.skipped.iter().map(|skip| skip.check).collect();
        assert_eq!(
            skipped,
            [
                "resale",
                "order_table",
                "sms",
                "conservation_in_stores",
                "money"
            ]
        );
        assert!(
            verdict.ran.contains(&"conservation"),
            "the API always shows conservation"
        );
    }

    #[test]
    fn a_unit_off_in_conservation_is_a_violation_in_the_api_and_in_the_stores() {
        let run = Run::sold_out(3);
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.outbox = Some(1);
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            [
                "conservation in the stores: stock 3 != remaining 0 + outbox entries 1 + order rows not expired 3"
            ]
        );
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.remaining = 1;
        let violations = verdict(&run.expected(), &observed).violations;
        assert!(
            violations.contains(
                &"conservation: stock 3 != remaining 1 + live orders 3 (processing, created or paid, as their owners were told)".to_owned()
            ),
            "{violations:?}"
        );
    }

    #[test]
    fn units_held_beyond_the_stock_at_one_instant_are_an_oversell_though_the_totals_agree() {
        // Stock 2: the first buyer pays, the second lets the window pass; a third buys at
        // 5 s, inside that window. 3 accepted <= stock 2 + 1 expired, yet 3 units were held.
        let mut run = Run::sold_out(2);
        let early = run.buys_at(5);
        let (paid, unpaid) = (
            run.holdings[0].order_id.clone(),
            run.holdings[1].order_id.clone(),
        );
        let fates = |late: &OrderId| Fates {
            of: HashMap::from([
                (paid.clone(), Fate::Paid),
                (unpaid.clone(), Fate::Expired),
                (late.clone(), Fate::Paid),
            ]),
            rounds: Vec::new(),
        };
        run.fates = Some(fates(&early));
        let ended = |order: &OrderId| {
            if *order == unpaid {
                OrderStatus::Expired
            } else {
                OrderStatus::Paid
            }
        };
        let violations = verdict(&run.expected(), &run.observed(ended)).violations;
        assert_eq!(
            violations,
            ["oversell: 3 units held at once 5.001 s into the run, for a stock of 2"]
        );

        // Bought after the window passed: the unit came back first.
        run.holdings.pop();
        let late = run.buys_at(11);
        run.fates = Some(fates(&late));
        let verdict = verdict(&run.expected(), &run.observed(ended));
        assert_eq!(verdict.violations, Vec::<String>::new());
    }

    #[test]
    fn a_buyer_told_nothing_was_locked_who_holds_an_order_no_202_announced_is_a_violation() {
        let mut run = Run::sold_out(2);
        run.holdings[1].told = Told::AlreadyPurchased;
        let observed = run.observed(|_| OrderStatus::Created);
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            Vec::<String>::new()
        );
        run.promised_nothing_locked = vec![0, 1];
        let held = run.holdings[1].order_id.clone();
        assert_eq!(
            verdict(&run.expected(), &observed).violations,
            [format!(
                "1 buyers told 503 \"nothing was locked\" hold an order no 202 announced (e.g. user 1 holds {held})"
            )]
        );
        assert_eq!(
            told_unavailable_but_holding(&run.holdings, &run.promised_nothing_locked).len(),
            1,
            "user 0's order was announced by a 202"
        );
    }

    #[test]
    fn a_payment_that_could_not_tell_may_end_paid_or_expired_and_a_refused_one_only_expired() {
        let mut run = Run::sold_out(2);
        let (first, second) = (
            run.holdings[0].order_id.clone(),
            run.holdings[1].order_id.clone(),
        );
        let fates = |second_fate| Fates {
            of: HashMap::from([
                (first.clone(), Fate::PaidOrExpired),
                (second.clone(), second_fate),
            ]),
            rounds: Vec::new(),
        };
        run.fates = Some(fates(Fate::Expired));
        for ended in [OrderStatus::Paid, OrderStatus::Expired] {
            let observed = run.observed(|order| {
                if *order == first {
                    ended
                } else {
                    OrderStatus::Expired
                }
            });
            let verdict = verdict(&run.expected(), &observed);
            assert_eq!(verdict.violations, Vec::<String>::new(), "{ended:?}");
        }
        let observed = run.observed(|_| OrderStatus::Paid);
        let violations = verdict(&run.expected(), &observed).violations;
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].starts_with("1 accepted orders did not end as they must"));
    }

    #[test]
    fn sms_repeats_are_a_violation_beyond_what_the_faults_allow() {
        let run = Run::sold_out(1);
        let mut observed = run.observed(|_| OrderStatus::Created);
        observed.sms_repeats = Some(1);
        let repeat_violations = |allowed| {
            let expected = Expected {
                sms_repeats_allowed: allowed,
                ..run.expected()
            };
            verdict(&expected, &observed).violations
        };
        assert_eq!(
            repeat_violations(0),
            ["1 SMS sent again (the provider delivered each once), 0 allowed by the faults"]
        );
        assert!(
            repeat_violations(1).is_empty(),
            "{:?}",
            repeat_violations(1)
        );
    }

    #[tokio::test]
    async fn a_metrics_url_is_read_at_every_address_of_its_host() {
        let replicas = every_replica("http://localhost:9100/metrics").await;
        assert!(!replicas.is_empty());
        for replica in &replicas {
            assert!(replica.ends_with(":9100/metrics"), "{replica}");
            assert!(
                !replica.contains("localhost"),
                "resolved to an address: {replica}"
            );
        }
        assert_eq!(
            every_replica("http://127.0.0.1:9100/metrics").await,
            ["http://127.0.0.1:9100/metrics"]
        );
    }
}
