//! The benchmark's report: every figure of a run, the ratios the targets speak of, a table for
//! a person and one JSON object for a program.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ceilings::Ceiling;
use super::drain::Drain;
use super::{PURCHASE_AT, TARGETS};
use crate::cpu::LOADTEST;
use crate::report::Summary;

/// A ratio's target: the bound, and which side of it is good.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub bound: f64,
    pub at_least: bool,
}

impl Target {
    pub const fn at_least(name: &'static str, bound: f64) -> Self {
        Self {
            name,
            bound,
            at_least: true,
        }
    }

    pub const fn at_most(name: &'static str, bound: f64) -> Self {
        Self {
            name,
            bound,
            at_least: false,
        }
    }

    fn met_by(&self, measured: f64) -> bool {
        if self.at_least {
            measured >= self.bound
        } else {
            measured <= self.bound
        }
    }
}

/// A phase the load generator drove at the gateway.
#[derive(Clone, Debug, Serialize)]
pub struct Phase {
    pub requests_per_sec: f64,
    pub p99_ms: f64,
    /// CPU per request of the gateway, Redis, the broker and the client, in µs.
    pub cpu_us: BTreeMap<String, f64>,
}

impl Phase {
    pub fn of(summary: &Summary) -> Self {
        let mut cpu_us = summary.cpu_us_per_request.clone();
        if let Some(client) = cpu_us.remove(LOADTEST) {
            cpu_us.insert("client".into(), client);
        }
        Self {
            requests_per_sec: summary.throughput_per_sec.round(),
            p99_ms: summary.latency_ms.p99,
            cpu_us,
        }
    }

    fn cpu(&self, process: &str) -> f64 {
        self.cpu_us.get(process).copied().unwrap_or_default()
    }
}

/// Latency in open loop at one rate.
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    pub name: String,
    pub rate: u32,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The generator's own share: how late, at p99, requests went out.
    pub sent_late_p99_ms: f64,
}

impl Latency {
    pub fn of(name: &str, rate: u32, summary: &Summary) -> Self {
        Self {
            name: name.to_owned(),
            rate,
            p50_ms: summary.latency_ms.p50,
            p99_ms: summary.latency_ms.p99,
            sent_late_p99_ms: summary.send_delay_ms.p99,
        }
    }
}

/// The backlog the drain began with.
#[derive(Clone, Debug, Serialize)]
pub struct BacklogFigures {
    pub events: u64,
    pub written_per_sec: u64,
    /// Events the broker had not acknowledged (left to the reconciler).
    pub unacknowledged: u64,
    /// Orders in the order table once drained.
    pub orders: u64,
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measured {
    pub wrk: Ceiling,
    pub hammer: Ceiling,
    pub redis: Ceiling,
    pub purchase: Phase,
    pub sold_out: Phase,
    pub latency: Vec<Latency>,
    pub drains: BTreeMap<String, Drain>,
    pub backlog: BacklogFigures,
    pub rss_mb: BTreeMap<String, f64>,
}

/// One ratio against its target.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub target: Target,
    pub measured: f64,
    pub met: bool,
}

/// A run's report.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub date: String,
    pub cores: usize,
    pub cpu: String,
    #[serde(flatten)]
    pub measured: Measured,
    pub ratios: Vec<Ratio>,
    /// All processes' CPU per request summed, and the rate this machine's cores allow at it if
    /// nothing else ran: for a purchase, and for an order drained.
    pub bound: BTreeMap<String, Bound>,
}

/// CPU per request summed over processes, and the rate the cores allow at that cost.
#[derive(Clone, Debug, Serialize)]
pub struct Bound {
    pub cpu_us: f64,
    pub per_sec: u64,
}

impl Bound {
    fn of(cores: usize, costs: &[f64]) -> Self {
        let cpu_us: f64 = costs.iter().sum();
        Self {
            cpu_us: (cpu_us * 10.0).round() / 10.0,
            per_sec: if cpu_us > 0.0 {
                (cores as f64 * 1e6 / cpu_us) as u64
            } else {
                0
            },
        }
    }
}

impl BenchReport {
    pub fn new(measured: Measured) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .map(|name| name.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let hello_us = measured.hammer.server_us;
        let order_drain = measured
            .drains
            .get("order-worker")
            .cloned()
            .unwrap_or_default();
        let half_load = format!("{PURCHASE_AT} 50% (");
        let half_load_p99 = measured
            .latency
            .iter()
            .find(|latency| latency.name.starts_with(&half_load))
            .map_or(f64::NAN, |latency| latency.p99_ms);
        // In the order of TARGETS.
        let figures = [
            measured.hammer.requests_per_sec / measured.wrk.requests_per_sec,
            measured.purchase.requests_per_sec / measured.redis.requests_per_sec,
            measured.purchase.cpu("gateway") / hello_us,
            measured.sold_out.cpu("gateway") / hello_us,
            half_load_p99,
            order_drain.per_sec as f64,
            measured.rss_mb.get("gateway").copied().unwrap_or_default(),
        ];
        let ratios = TARGETS
            .iter()
            .zip(figures)
            .map(|(target, measured)| Ratio {
                target: *target,
                measured: (measured * 100.0).round() / 100.0,
                met: target.met_by(measured),
            })
            .collect();
        let purchase = ["gateway", "redis", "broker", "client"].map(|p| measured.purchase.cpu(p));
        let drained = ["worker", "redis", "broker", "postgres"]
            .map(|p| order_drain.cpu_us.get(p).copied().unwrap_or_default());
        let bound = BTreeMap::from([
            ("purchase".to_owned(), Bound::of(cores, &purchase)),
            ("order_drain".to_owned(), Bound::of(cores, &drained)),
            (
                "order_drain_broker_alone".to_owned(),
                Bound::of(cores, &drained[2..3]),
            ),
        ]);
        Self {
            date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
            cores,
            cpu,
            measured,
            ratios,
            bound,
        }
    }

    pub fn print(&self) {
        println!(
            "\n== seckill benchmark, {}, {} cores, {}",
            self.date, self.cores, self.cpu
        );
        self.print_cpu();
        println!();
        self.print_latency();
        self.print_ratios();
    }

    /// CPU per request per process, phase by phase; capacities and bounds.
    fn print_cpu(&self) {
        let m = &self.measured;
        println!(
            "CPU per request, in µs of each process (server: hello-world, the gateway or the worker)"
        );
        let row = |phase: &str, rate: String, cells: [Option<f64>; 5]| {
            let cells =
                cells.map(|cell| cell.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}")));
            println!(
                "{phase:<30} {rate:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
                cells[0], cells[1], cells[2], cells[3], cells[4]
            );
        };
        println!(
            "{:<30} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "phase", "req/s", "server", "redis", "broker", "postgres", "client"
        );
        let rate = |r: f64| format!("{r:.0}");
        row(
            "hello-world, wrk",
            rate(m.wrk.requests_per_sec),
            [Some(m.wrk.server_us), None, None, None, m.wrk.client_us],
        );
        row(
            "hello-world, loadtest",
            rate(m.hammer.requests_per_sec),
            [
                Some(m.hammer.server_us),
                None,
                None,
                None,
                m.hammer.client_us,
            ],
        );
        row(
            "reserve.lua, redis-benchmark",
            rate(m.redis.requests_per_sec),
            [None, Some(m.redis.server_us), None, None, None],
        );
        for (name, phase) in [("purchase", &m.purchase), ("sold-out refusal", &m.sold_out)] {
            let cpu = |p: &str| phase.cpu_us.get(p).copied();
            row(
                name,
                rate(phase.requests_per_sec),
                [
                    cpu("gateway"),
                    cpu("redis"),
                    cpu("broker"),
                    None,
                    cpu("client"),
                ],
            );
        }
        for (name, drain) in &m.drains {
            let cpu = |p: &str| drain.cpu_us.get(p).copied();
            row(
                &format!("drain: {name}"),
                drain.per_sec.to_string(),
                [
                    cpu("worker"),
                    cpu("redis"),
                    cpu("broker"),
                    cpu("postgres"),
                    None,
                ],
            );
        }
        let capacity: Vec<String> = m
            .drains
            .iter()
            .map(|(name, drain)| format!("{name} {}", drain.capacity_per_sec))
            .collect();
        println!(
            "worker capacity (events per second of batch time): {}",
            capacity.join(", ")
        );
        let bounds: Vec<String> = self
            .bound
            .iter()
            .map(|(name, bound)| format!("{name} {:.1} µs -> {}/s", bound.cpu_us, bound.per_sec))
            .collect();
        println!(
            "all processes' CPU per request, and the rate {} cores allow at it: {}",
            self.cores,
            bounds.join("; ")
        );
    }

    /// Latency in open loop, at each rate.
    fn print_latency(&self) {
        let m = &self.measured;
        for latency in &m.latency {
            println!(
                "{:<48} {:>12} {:>12} {:>18}",
                latency.name,
                format!("p50 {:.2}", latency.p50_ms),
                format!("p99 {:.2}", latency.p99_ms),
                format!("sent late {:.2}", latency.sent_late_p99_ms)
            );
        }
        println!(
            "{:<48} {:>12} {:>12}",
            "purchase, closed loop",
            "",
            format!("p99 {:.2}", m.purchase.p99_ms)
        );
    }

    /// The ratios against their targets, memory and the backlog.
    fn print_ratios(&self) {
        let m = &self.measured;
        println!("\nratios                                   measured  target");
        for ratio in &self.ratios {
            let side = if ratio.target.at_least { ">=" } else { "<=" };
            println!(
                "{:<40} {:>8} {side} {}{}",
                ratio.target.name,
                ratio.measured,
                ratio.target.bound,
                if ratio.met { "" } else { "   (not met)" }
            );
        }
        let rss: Vec<String> = m
            .rss_mb
            .iter()
            .map(|(name, mb)| format!("{name} {mb}"))
            .collect();
        println!("\npeak RSS (MB): {}", rss.join(", "));
        println!(
            "backlog: {} events written at {}/s, {} not acknowledged by the broker (left to the reconciler), {} orders drained",
            m.backlog.events, m.backlog.written_per_sec, m.backlog.unacknowledged, m.backlog.orders
        );
    }
}
