//! The run's summary: a table for people, one JSON object for scripts.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use shared::order_status::OrderStatus;

use crate::checks::{Observed, Skipped, Verdict, told_unavailable_but_holding};
use crate::drive::Outcome;
use crate::lifecycle::{Fate, Fates, Round};
use crate::money::{self, Money};

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_histogram(us: &Histogram<u64>) -> Self {
        let ms = |q: f64| us.value_at_quantile(q) as f64 / 1000.0;
        Self {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: us.max() as f64 / 1000.0,
        }
    }
}

/// Everything a run found, as printed and as written by `--json`.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub scenario: String,
    pub sale_id: String,
    pub attempts: u64,
    pub accepted: u64,
    /// Orders the crowd holds: the 202s, plus locks first answered 503 whose retry was told
    /// `already_purchased` with the order id. Equal to `accepted` unless Redis timed out.
    pub holders: u64,
    /// Orders held by buyers a 503 told that nothing was locked, which no 202 announced: each
    /// a violation (the gateway broke its word).
    pub told_unavailable_but_holding: u64,
    pub orders: Option<u64>,
    /// SMS delivered, and sent again but not delivered (the provider knew the key).
    pub sms: Option<u64>,
    pub sms_repeats: Option<u64>,
    pub stats_sold: u64,
    pub remaining: u64,
    pub outbox: Option<u64>,
    pub duplicates: u64,
    /// With `--pay-ratio`: orders that ended paid and expired (checked: as their owners were
    /// told once settled; unchecked: the payments answered 200, and the orders nobody paid or
    /// whose payment was refused), and units sold again in the resale rounds.
    pub paid: Option<u64>,
    pub expired: Option<u64>,
    /// With `--pay-ratio`: payments whose answer could not tell (a 5xx, or none): each order
    /// may end paid or expired.
    pub payments_unknown: Option<u64>,
    /// With `--payments-file`: what the provider's books say of the sale's money.
    pub money: Option<Money>,
    pub resold: Option<u64>,
    pub resale_rounds: Vec<Round>,
    pub answers: BTreeMap<String, u64>,
    pub throughput_per_sec: f64,
    pub elapsed_secs: f64,
    /// CPU time per attempt in microseconds, by process: `loadtest` (the generator's own
    /// weight; in the all-in-one runner, the whole stack) and each `--cpu-of` server.
    pub cpu_us_per_request: BTreeMap<String, f64>,
    pub latency_ms: Latency,
    /// Of the latency, the part before each request went out: the generator's own (see
    /// `Outcome::send_delay_us`).
    pub send_delay_ms: Latency,
    pub settle_secs: f64,
    /// Whether the invariants were checked (not with `--skip-checks`).
    pub checked: bool,
    /// The checks that ran, by name, and those the run could not make, with the reason.
    pub checks_run: Vec<&'static str>,
    pub checks_skipped: Vec<Skipped>,
    pub violations: Vec<String>,
}

impl Summary {
    pub fn new(
        scenario: &str,
        sale_id: &str,
        outcome: &Outcome,
        observed: Option<&Observed>,
        fates: Option<&Fates>,
        verdict: Verdict,
    ) -> Self {
        let checked = observed.is_some();
        let ended = |status, fate| {
            fates.map(|fates| match observed {
                Some(observed) => observed.ended(status),
                None => fates.count(fate),
            })
        };
        let unchecked = Observed::default();
        let observed = observed.unwrap_or(&unchecked);
        let attempts = outcome.attempts();
        let elapsed_secs = outcome.elapsed.as_secs_f64();
        Self {
            scenario: scenario.to_owned(),
            sale_id: sale_id.to_owned(),
            attempts,
            accepted: outcome.answers.get("202").copied().unwrap_or(0),
            holders: outcome.holdings.len() as u64,
            told_unavailable_but_holding: told_unavailable_but_holding(
                &outcome.holdings,
                &outcome.promised_nothing_locked,
            )
            .len() as u64,
            orders: observed.orders.map(|rows| rows.rows),
            sms: observed.sms,
            sms_repeats: observed.sms_repeats,
            stats_sold: observed.stats.sold,
            remaining: observed.remaining,
            outbox: observed.outbox,
            duplicates: observed.duplicates,
            paid: ended(OrderStatus::Paid, Fate::Paid),
            expired: ended(OrderStatus::Expired, Fate::Expired),
            payments_unknown: fates.map(|fates| fates.count(Fate::PaidOrExpired)),
            money: observed.payments.as_ref().and_then(|books| {
                let sale_id = sale_id.parse().ok()?;
                Some(money::check(books, &sale_id, &observed.final_statuses).0)
            }),
            resold: fates.map(Fates::resold),
            resale_rounds: fates.map(|fates| fates.rounds.clone()).unwrap_or_default(),
            answers: outcome.answers.clone(),
            throughput_per_sec: attempts as f64 / elapsed_secs.max(1e-9),
            elapsed_secs,
            cpu_us_per_request: outcome
                .cpu
                .iter()
                .map(|(process, spent)| {
                    let per_request = spent.as_secs_f64() * 1e6 / (attempts as f64).max(1.0);
                    (process.clone(), (per_request * 10.0).round() / 10.0)
                })
                .collect(),
            latency_ms: Latency::from_histogram(&outcome.latency_us),
            send_delay_ms: Latency::from_histogram(&outcome.send_delay_us),
            settle_secs: observed.settle_secs,
            checked,
            checks_run: verdict.ran,
            checks_skipped: verdict.skipped,
            violations: verdict.violations,
        }
    }

    /// The table people read.
    pub fn print(&self) {
        let show = |v: Option<u64>| v.map_or_else(|| "not checked".into(), |v| v.to_string());
        println!("\n== {} on sale {}", self.scenario, self.sale_id);
        println!("{:<28} {:>10}", "answer", "count");
        for (label, count) in &self.answers {
            println!("{label:<28} {count:>10}");
        }
        println!(
            "\n{} attempts in {:.2} s = {:.0} req/s",
            self.attempts, self.elapsed_secs, self.throughput_per_sec
        );
        let l = &self.latency_ms;
        println!(
            "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let d = &self.send_delay_ms;
        println!(
            "  of which before sending: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            d.p50, d.p90, d.p99, d.p999, d.max
        );
        let cpu: Vec<String> = self
            .cpu_us_per_request
            .iter()
            .map(|(process, us)| format!("{process} {us:.1}"))
            .collect();
        println!("CPU µs per request: {}", cpu.join(", "));
        if !self.checked {
            self.print_checks();
            return;
        }
        println!("\nsettled in {:.1} s", self.settle_secs);
        println!("{:<28} {:>12}", "accepted (202)", self.accepted);
        if self.holders != self.accepted {
            println!("{:<28} {:>12}", "orders held (202 or 409)", self.holders);
        }
        println!(
            "{:<28} {:>12}",
            "orders in the order table",
            show(self.orders)
        );
        println!("{:<28} {:>12}", "SMS sent", show(self.sms));
        if self.sms_repeats.is_some_and(|repeats| repeats > 0) {
            println!(
                "{:<28} {:>12}",
                "SMS repeats (not delivered)",
                show(self.sms_repeats)
            );
        }
        println!("{:<28} {:>12}", "stats: sold", self.stats_sold);
        println!("{:<28} {:>12}", "remaining stock", self.remaining);
        println!("{:<28} {:>12}", "outbox entries", show(self.outbox));
        println!("{:<28} {:>12}", "duplicates", self.duplicates);
        if self.told_unavailable_but_holding > 0 {
            println!(
                "{:<28} {:>12}",
                "told 503, yet holding", self.told_unavailable_but_holding
            );
        }
        if let (Some(paid), Some(expired), Some(resold)) = (self.paid, self.expired, self.resold) {
            println!("{:<28} {:>12}", "paid", paid);
            println!("{:<28} {:>12}", "expired (unit returned)", expired);
            if let Some(unknown) = self.payments_unknown.filter(|n| *n > 0) {
                println!("{:<28} {:>12}", "payments of unknown outcome", unknown);
            }
            println!(
                "{:<28} {:>12}",
                format!("resold ({} rounds)", self.resale_rounds.len()),
                resold
            );
        }
        if let Some(money) = self.money {
            println!("{:<28} {:>12}", "charged (provider's books)", money.charged);
            println!("{:<28} {:>12}", "refunded", money.refunded);
            println!("{:<28} {:>12}", "kept, in cents", money.kept_cents);
        }
        self.print_checks();
        if self.violations.is_empty() && self.checks_skipped.is_empty() {
            println!("\ninvariants: all hold");
        } else if self.violations.is_empty() {
            println!("\ninvariants: every check run holds");
        } else {
            println!("\ninvariants VIOLATED:");
            for violation in &self.violations {
                println!("  - {violation}");
            }
        }
    }

    /// Which checks ran, and which were skipped and why.
    fn print_checks(&self) {
        if !self.checks_run.is_empty() {
            println!("\nchecks run: {}", self.checks_run.join(", "));
        }
        for Skipped { check, because } in &self.checks_skipped {
            println!("check skipped: {check} ({because})");
        }
    }
}
