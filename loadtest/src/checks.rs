//! After the crowd: wait for the pipeline to drain, then check the invariants
//! (`docs/architecture.md`) from every angle the run was given: the API always, the order
//! table, the stock ledger and the SMS file when [`Probes`] reach them. The order table and
//! the ledger are read through the services' own store traits, so any backend the services
//! run on can be checked: a separate load test opens them from URLs ([`Probes::open`]), the
//! all-in-one runner hands in the very stores its services use.

use std::collections::{BTreeMap, HashSet};
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
use shared::ids::SaleId;
use shared::stock::StockLedger;

use crate::api::Gateway;
use crate::lifecycle::Fates;

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
            metrics_urls: args.metrics_urls.clone(),
            settle_timeout: Duration::from_secs(args.settle_timeout_secs),
        }))
    }
}

/// What the crowd was told, and about which sale.
pub struct Expected<'a> {
    pub sale_id: &'a SaleId,
    pub stock: u64,
    /// Distinct users who tried to buy.
    pub demand: u64,
    /// (user index, order id) of every order the crowd holds (see `drive::Outcome::holdings`).
    pub accepted: &'a [(usize, String)],
    pub tokens: &'a [String],
    /// With a lifecycle: which orders were paid and which left to expire, and the resale
    /// rounds. `None`: nobody paid, every order should stay `created`.
    pub fates: Option<&'a Fates>,
    /// Messages the SMS worker may send again because the run killed it.
    pub sms_repeats_allowed: u64,
}

impl Expected<'_> {
    /// The status every accepted order must end in.
    fn final_status(&self, order_id: &str) -> &'static str {
        match self.fates {
            None => "created",
            Some(fates) if fates.paid.contains(order_id) => "paid",
            Some(_) => "expired",
        }
    }

    /// (paid, expired) orders the run expects.
    fn paid_and_expired(&self) -> (u64, u64) {
        self.fates.map_or((0, 0), |fates| {
            (fates.paid.len() as u64, fates.unpaid.len() as u64)
        })
    }

    /// SMS the run expects: one per order, and one more per paid or expired order.
    fn sms(&self) -> u64 {
        let (paid, expired) = self.paid_and_expired();
        self.accepted.len() as u64 + paid + expired
    }
}

/// What the system holds once it settled; `None` where the run had no access.
#[derive(Debug, Default, serde::Serialize)]
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
    /// SMS the provider delivered, and the ones it was sent again and did not deliver.
    pub sms: Option<u64>,
    pub sms_repeats: Option<u64>,
    /// Accepted orders whose status, asked by their owners, is not the one they must end in.
    pub wrong_status: u64,
    pub duplicates: u64,
    pub settle_secs: f64,
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
    let target = expected.accepted.len() as u64;
    let (paid, expired) = expected.paid_and_expired();
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
        }
        if let Some(path) = &probes.sms_file {
            let sms = SmsLedger::read(path, expected.sale_id)?;
            observed.sms = Some(sms.delivered.len() as u64);
            observed.sms_repeats = Some(sms.repeats);
            duplicate_sms = sms.delivered_twice();
        }
        let drained = observed.stats_sold >= target
            && observed.stats_paid >= paid
            && observed.stats_expired >= expired
            && observed.orders.is_none_or(|n| n >= target)
            && observed.orders_paid.is_none_or(|n| n >= paid)
            && observed.orders_expired.is_none_or(|n| n >= expired)
            && observed.outbox.is_none_or(|n| n == 0)
            && observed.sms.is_none_or(|n| n >= expected.sms());
        if drained || Instant::now() > deadline {
            break;
        }
        eprintln!(
            "  settling: stats {}/{target} paid {}/{paid} expired {}/{expired}, orders {}, outbox {}, sms {}/{}{}",
            observed.stats_sold,
            observed.stats_paid,
            observed.stats_expired,
            show(observed.orders),
            show(observed.outbox),
            show(observed.sms),
            expected.sms(),
            consumer_lag(gateway, &probes.metrics_urls).await,
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    observed.settle_secs = started.elapsed().as_secs_f64();
    observed.remaining = gateway.sale(sale_id).await?.remaining;
    observed.wrong_status = count_wrong_status(gateway, expected).await;
    observed.duplicates = count_duplicates(expected, duplicate_order_rows + duplicate_sms);
    Ok(observed)
}

/// The stock ledger behind `url`, read with a generous deadline (a loaded Redis is slow).
fn open_ledger(url: &str, key_prefix: &str) -> anyhow::Result<Arc<dyn StockLedger>> {
    if url.starts_with(MEMORY_SCHEME) {
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
        for line in text.lines().filter(|l| l.starts_with(LAG_MESSAGES)) {
            let group = line
                .split("group=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next());
            let value = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(group), Some(value)) = (group, value) {
                *lag.entry(group.to_owned()).or_default() += value;
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
struct SmsLedger {
    /// The message ids (`<order id>:<kind>`) of the messages delivered.
    delivered: Vec<String>,
    /// Messages sent again, which the provider knew by their key and did not deliver.
    repeats: u64,
}

impl SmsLedger {
    fn read(path: &Path, sale_id: &SaleId) -> anyhow::Result<Self> {
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

/// Accepted orders whose status, asked by their owners, is not the one they must end in.
async fn count_wrong_status(gateway: &Gateway, expected: &Expected<'_>) -> u64 {
    futures::stream::iter(expected.accepted)
        .map(|(user, order_id)| async move {
            let status = gateway
                .order_status(order_id, &expected.tokens[*user])
                .await
                .ok();
            status.as_deref() != Some(expected.final_status(order_id))
        })
        .buffer_unordered(64)
        .filter(|wrong| std::future::ready(*wrong))
        .count()
        .await as u64
}

/// Anything sold twice: a user accepted twice, an order id answered twice, plus the order rows
/// and SMS deliveries the stores showed repeated.
fn count_duplicates(expected: &Expected<'_>, repeated_in_stores: u64) -> u64 {
    let users: HashSet<_> = expected.accepted.iter().map(|(user, _)| user).collect();
    let orders: HashSet<_> = expected.accepted.iter().map(|(_, order)| order).collect();
    let accepted = expected.accepted.len();
    (accepted - users.len() + accepted - orders.len()) as u64 + repeated_in_stores
}

/// The invariants 1–7 of `docs/architecture.md` as sentences, one per violation.
pub fn violations(expected: &Expected<'_>, observed: &Observed) -> Vec<String> {
    let mut violations = Violations::default();
    supply(expected, observed, &mut violations);
    order_table(expected, observed, &mut violations);
    pipeline(expected, observed, &mut violations);
    violations.0
}

/// Violations found so far, as sentences.
#[derive(Default)]
struct Violations(Vec<String>);

impl Violations {
    fn check(&mut self, holds: bool, sentence: String) {
        if !holds {
            self.0.push(sentence);
        }
    }
}

/// Invariants 1, 2 and 7's resale: nothing oversold, nothing stranded while demand remains.
fn supply(expected: &Expected<'_>, observed: &Observed, violations: &mut Violations) {
    let accepted = expected.accepted.len() as u64;
    let (paid, expired) = expected.paid_and_expired();
    let mut check = |holds, sentence| violations.check(holds, sentence);
    // A unit sells again only after an order gave it back.
    check(
        accepted <= expected.stock + expired,
        format!(
            "oversell: {accepted} accepted for a stock of {} and {expired} units returned",
            expected.stock
        ),
    );
    check(
        paid <= expected.stock,
        format!("oversell: {paid} paid for a stock of {}", expected.stock),
    );
    match expected.fates {
        None if expected.demand >= expected.stock => {
            check(
                observed.remaining == 0,
                format!("stranded stock: {} units remain", observed.remaining),
            );
            check(
                accepted == expected.stock,
                format!("stranded stock: {accepted} accepted of {}", expected.stock),
            );
        }
        None => {}
        Some(fates) => {
            // At least the stock: with a short window, units expire and sell again during
            // the crowd itself.
            let first_crowd = accepted - fates.resold();
            check(
                expected.demand < expected.stock || first_crowd >= expected.stock,
                format!(
                    "stranded stock: the crowd got {first_crowd} of {}",
                    expected.stock
                ),
            );
            for (number, round) in fates.rounds.iter().enumerate() {
                check(
                    round.buyers < round.offered || round.accepted == round.offered,
                    format!(
                        "returned units not sold again: resale round {} sold {} of {} units to {} latecomers",
                        number + 1,
                        round.accepted,
                        round.offered,
                        round.buyers
                    ),
                );
            }
        }
    }
}

/// Invariants 4 and 7 in the order table: one row per order, each in its final status.
fn order_table(expected: &Expected<'_>, observed: &Observed, violations: &mut Violations) {
    let accepted = expected.accepted.len() as u64;
    let (paid, expired) = expected.paid_and_expired();
    let mut check = |holds, sentence| violations.check(holds, sentence);
    if let Some(orders) = observed.orders {
        check(
            orders == accepted,
            format!("orders lost or doubled: {orders} orders for {accepted} acceptances"),
        );
        check(
            (observed.orders_paid, observed.orders_expired) == (Some(paid), Some(expired)),
            format!(
                "order table: {} paid and {} expired rows for {paid} payments and {expired} orders left unpaid",
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
}

/// Invariants 3 to 5 and 7 everywhere else: statuses, statistics, SMS, conservation.
fn pipeline(expected: &Expected<'_>, observed: &Observed, violations: &mut Violations) {
    let accepted = expected.accepted.len() as u64;
    let (paid, expired) = expected.paid_and_expired();
    let mut check = |holds, sentence| violations.check(holds, sentence);
    check(
        observed.duplicates == 0,
        format!(
            "{} duplicates (buyers, orders or SMS of one kind)",
            observed.duplicates
        ),
    );
    check(
        observed.stats_sold == accepted,
        format!(
            "stats count {} sold for {accepted} acceptances",
            observed.stats_sold
        ),
    );
    check(
        (
            observed.stats_paid,
            observed.stats_expired,
            observed.stats_failed,
        ) == (paid, expired, 0),
        format!(
            "stats count {} paid, {} expired and {} failed for {paid} payments and {expired} orders left unpaid",
            observed.stats_paid, observed.stats_expired, observed.stats_failed
        ),
    );
    check(
        observed.stats_buyers == accepted,
        format!(
            "stats count {} buyers for {accepted} acceptances",
            observed.stats_buyers
        ),
    );
    check(
        observed.wrong_status == 0,
        format!(
            "{} accepted orders did not end as they must (created; or paid when paid for, else expired)",
            observed.wrong_status
        ),
    );
    if let Some(sms) = observed.sms {
        check(
            sms == expected.sms(),
            format!(
                "{sms} SMS for {accepted} orders, {paid} paid and {expired} expired (expected {})",
                expected.sms()
            ),
        );
    }
    if let Some(repeats) = observed.sms_repeats {
        check(
            repeats <= expected.sms_repeats_allowed,
            format!(
                "{repeats} SMS sent again (the provider delivered each once), {} allowed by the faults",
                expected.sms_repeats_allowed
            ),
        );
    }
    if let (Some(outbox), Some(orders)) = (observed.outbox, observed.orders) {
        // Live orders hold a unit: processing ones (in the outbox) and stored ones not expired.
        let live = outbox + orders - observed.orders_expired.unwrap_or(0);
        check(
            expected.stock == observed.remaining + live,
            format!(
                "conservation: stock {} != remaining {} + live orders {live}",
                expected.stock, observed.remaining
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sms_repeats_are_a_violation_beyond_what_the_faults_allow() {
        let sale: SaleId = "s1".parse().unwrap();
        let accepted = [(0, "s1.a".to_owned())];
        let tokens = ["token".to_owned()];
        let observed = Observed {
            stats_sold: 1,
            stats_buyers: 1,
            sms: Some(1),
            sms_repeats: Some(1),
            ..Observed::default()
        };
        let repeat_violations = |allowed| {
            let expected = Expected {
                sale_id: &sale,
                stock: 1,
                demand: 1,
                accepted: &accepted,
                tokens: &tokens,
                fates: None,
                sms_repeats_allowed: allowed,
            };
            violations(&expected, &observed)
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
