//! Waiting for the pipeline to drain (statistics, orders, outbox, payments and SMS caught up
//! with what the crowd was told), reporting progress and consumer lag meanwhile; then reading
//! what every store holds.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt;
use shared::consumer::LAG_MESSAGES;
use shared::ids::OrderId;
use shared::order_status::OrderStatus;
use shared::payment::PaymentRecord;
use shared::poll;

use super::sms_ledger::SmsLedger;
use super::{Expected, Observed, Probes};
use crate::api::Gateway;
use crate::prometheus;

/// Waits until statistics, orders and outbox have caught up with the acceptances (or the
/// timeout passed), reporting progress; then gathers everything the checks need.
pub async fn settle(
    gateway: &Gateway,
    probes: &Probes,
    expected: &Expected<'_>,
) -> anyhow::Result<Observed> {
    let started = Instant::now();
    let mut observed = Observed::default();
    // Order rows beyond one per buyer, and SMS delivered twice, as last read.
    let mut duplicates = 0;
    let settled = poll::until(
        probes.settle_timeout,
        Duration::from_millis(500),
        async || match read_progress(gateway, probes, expected, &mut observed).await {
            Err(error) => Some(Err(error)),
            Ok(read_duplicates) => {
                duplicates = read_duplicates;
                if caught_up(&observed, expected) {
                    return Some(Ok(()));
                }
                report_progress(gateway, probes, expected, &observed).await;
                None
            }
        },
    )
    .await;
    if let Some(Err(error)) = settled {
        return Err(error);
    }
    observed.settle_secs = started.elapsed().as_secs_f64();
    observed.remaining = gateway.sale(expected.sale_id.as_str()).await?.remaining;
    observed.final_statuses = final_statuses(gateway, expected).await;
    if let Some(path) = &probes.payments_file {
        observed.payments = Some(PaymentRecord::read(path)?);
    }
    observed.duplicates = count_duplicates(expected, duplicates);
    Ok(observed)
}

/// Reads what settling is waited on into `observed`: the statistics, and what the probes can
/// see (order rows, the outbox, open payments, SMS). Returns the order rows beyond one per
/// buyer plus the SMS delivered twice.
async fn read_progress(
    gateway: &Gateway,
    probes: &Probes,
    expected: &Expected<'_>,
    observed: &mut Observed,
) -> anyhow::Result<u64> {
    let mut duplicates = 0;
    observed.stats = gateway.stats(expected.sale_id.as_str()).await?;
    if let Some(orders) = &probes.orders {
        let rows = orders.sale_orders(expected.sale_id).await?;
        duplicates += rows.rows - rows.distinct_buyers;
        observed.orders = Some(rows);
    }
    if let Some(ledger) = &probes.ledger {
        observed.outbox = Some(ledger.outbox_sizes(expected.sale_id).await?.locked);
        observed.open_payments = Some(ledger.open_payments(expected.sale_id).await?);
    }
    if let Some(path) = &probes.sms_file {
        let sms = SmsLedger::read(path, expected.sale_id)?;
        observed.sms = Some(sms.delivered.len() as u64);
        observed.sms_repeats = Some(sms.repeats);
        duplicates += sms.delivered_twice();
    }
    Ok(duplicates)
}

/// Whether every effect of the holdings has arrived: statistics and order rows for each, each
/// one's final status, the outbox empty, no payment open, every SMS delivered.
fn caught_up(observed: &Observed, expected: &Expected<'_>) -> bool {
    let target = expected.holdings.len() as u64;
    let (paid, expired, either) = expected.fate_counts();
    // Each order of unknown payment outcome ends paid or expired: only the sum is known.
    let final_counts = |ended_paid: u64, ended_expired: u64| {
        ended_paid >= paid
            && ended_expired >= expired
            && ended_paid + ended_expired >= paid + expired + either
    };
    observed.stats.sold >= target
        && final_counts(observed.stats.paid, observed.stats.expired)
        && observed
            .orders
            .is_none_or(|rows| rows.rows >= target && final_counts(rows.paid, rows.expired))
        && observed.outbox.is_none_or(|n| n == 0)
        && observed.open_payments.is_none_or(|n| n == 0)
        && observed.sms.is_none_or(|n| n >= expected.sms())
}

/// One line of how far settling has come, with the consumers' lag.
async fn report_progress(
    gateway: &Gateway,
    probes: &Probes,
    expected: &Expected<'_>,
    observed: &Observed,
) {
    let target = expected.holdings.len();
    let (paid, expired, either) = expected.fate_counts();
    eprintln!(
        "  settling: stats {}/{target} paid {}/{paid} expired {}/{expired} (either {either}), orders {}, outbox {}, payments open {}, sms {}/{}{}",
        observed.stats.sold,
        observed.stats.paid,
        observed.stats.expired,
        show(observed.orders.map(|rows| rows.rows)),
        show(observed.outbox),
        show(observed.open_payments),
        show(observed.sms),
        expected.sms(),
        consumer_lag(gateway, &probes.metrics_urls).await,
    );
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

#[cfg(test)]
mod tests {
    use super::*;

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
