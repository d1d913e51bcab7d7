//! The benchmark: what the stack does, what its ceilings are, and what every process spent per
//! request, side by side in one run on this machine. Figures are reports, never pass or fail;
//! the targets they are compared with live here ([`TARGETS`]), and `docs/benchmark.md` gives
//! the last run's.
//!
//! Wall-clock rates swing by a third between runs on a shared 2-core VM; CPU time per request
//! per process does not, so every phase reports it, read from `/proc/<pid>/stat` (over the
//! attempts alone where the load generator drives, around the phase for wrk, redis-benchmark
//! and the drains). The phases:
//!
//! - ceilings, the system otherwise idle ([`ceilings`]): HTTP (a hello-world of this workspace
//!   under wrk and under the load generator) and Redis (redis-benchmark running `reserve.lua`);
//! - the gateway alone (no workers), with a release build of the broker of its own: purchases
//!   (every attempt a new buyer), sold-out refusals, latency in open loop at 25%, 50% and 75% of
//!   the purchase maximum, at 50% again with Redis fsyncing once a second, and the hello-world
//!   at that rate (the floor of client, HTTP and shared cores);
//! - the drain ([`drain`]): a backlog of events, then each worker alone;
//! - memory: the peak RSS of every process of ours.
//!
//! | module | concern |
//! | --- | --- |
//! | [`processes`] | the broker and hello-world as child processes, pids, peak memory, a quiet machine |
//! | [`ceilings`] | the HTTP and Redis ceilings |
//! | [`drain`] | each worker draining a backlog alone |
//! | [`profile`] | flamegraphs of the gateway under the purchase and sold-out crowds (`loadtest profile`) |
//! | [`report`] | the table and the JSON |

pub mod ceilings;
pub mod drain;
pub mod processes;
pub mod profile;
pub mod report;

use std::collections::BTreeMap;

use anyhow::Context;
use clap::Args;

use crate::api::Gateway;
use crate::cpu::Watched;
use crate::proof::stack::{Role, Settings};
use crate::proof::{Run, ServiceUrls, services};
use crate::report::Summary;
use crate::{Crowd, Pacing, open_sale};
use ceilings::Ceiling;
use drain::Backlog;
use drain::Drain;
use processes::{Tool, peak_rss_mb, redis_pid, until_idle};
use report::{BacklogFigures, BenchReport, Latency, Phase};

#[derive(Args, Clone, Debug)]
pub struct Bench {
    #[command(flatten)]
    pub urls: ServiceUrls,

    /// Attempts of each closed-loop phase, and redis-benchmark's calls.
    #[arg(long, env = "BENCH_REQUESTS", default_value_t = 50_000)]
    pub requests: usize,

    /// Requests in flight (and connections) in closed loop.
    #[arg(long, env = "BENCH_CONCURRENCY", default_value_t = 64)]
    pub concurrency: usize,

    /// Events the workers drain.
    #[arg(long, env = "BENCH_BACKLOG", default_value_t = 100_000)]
    pub backlog: usize,

    /// How long wrk measures the HTTP ceiling.
    #[arg(long, env = "BENCH_CEILING_SECS", default_value_t = 8)]
    pub ceiling_secs: u64,
}

/// The targets: what each measured ratio should reach, and in which direction.
pub const TARGETS: [report::Target; 7] = [
    report::Target::at_least("loadtest / wrk (hello-world req/s)", 0.8),
    report::Target::at_least("purchase / redis-benchmark (req/s)", 0.6),
    report::Target::at_most("gateway CPU: purchase / hello-world", 2.0),
    report::Target::at_most("gateway CPU: sold-out / hello-world", 1.3),
    report::Target::at_most("purchase p99 at half the maximum (ms)", 5.0),
    report::Target::at_least("order drain (orders/s)", 20_000.0),
    report::Target::at_most("gateway peak RSS (MB)", 64.0),
];

/// How the latency phases at a share of the purchase maximum are named.
pub(crate) const PURCHASE_AT: &str = "purchase at";
pub(crate) const BROKER_PORT: u16 = 19092;
const HELLO_PORT: u16 = 18181;
/// The gateway as deployed, except a global limit high enough not to be what is measured.
pub(crate) const GATEWAY: &[(&str, &str)] = &[
    ("RATE_LIMIT_GLOBAL_PER_SEC", "10000000"),
    ("RUST_LOG", "warn"),
];

/// Runs every phase in turn.
pub async fn run(mut args: Bench) -> anyhow::Result<BenchReport> {
    args.urls.kafka_brokers = format!("127.0.0.1:{BROKER_PORT}");
    let run = Run::new("bench", args.urls.clone())?;
    anyhow::ensure!(
        !run.on_cluster(),
        "the benchmark measures one Redis node (its process's CPU); --on-cluster is not supported"
    );
    eprintln!("bench: logs and records in {}", run.dir.display());
    let broker = Tool::release_broker(&run.dir.join("broker"), BROKER_PORT).await?;
    let redis = Watched {
        name: "redis".into(),
        pid: redis_pid(run.redis_url()).await?,
    };

    eprintln!(
        "== HTTP ceiling: hello-world, wrk then loadtest, {} connections",
        args.concurrency
    );
    let (wrk, hammer, hello_rss) = http_ceiling(&run, &args).await?;
    eprintln!("== Redis ceiling: redis-benchmark, the same reserve.lua");
    let redis_ceiling = ceilings::redis(
        run.redis_url(),
        &run.id,
        &redis,
        args.requests as u64,
        args.concurrency,
    )
    .await?;

    let machine = Machine {
        run: &run,
        gateways: run.gateways()?,
        broker: &broker,
        redis,
        closed: Pacing::new(None, args.concurrency),
    };
    let (purchase, sold_out, latency, gateway_rss) = machine.gateway_alone(&args).await?;
    let (drains, backlog, drain_gateway_rss) = machine.drain(&args).await?;
    let gateway_rss = gateway_rss.max(drain_gateway_rss);

    let mut rss_mb: BTreeMap<String, f64> = drains
        .iter()
        .map(|(name, drain)| (name.clone(), drain.rss_mb))
        .collect();
    rss_mb.insert("gateway".into(), gateway_rss);
    rss_mb.insert("broker".into(), peak_rss_mb(broker.pid()));
    rss_mb.insert("hello-world".into(), hello_rss);
    let report = BenchReport::new(report::Measured {
        wrk,
        hammer,
        redis: redis_ceiling,
        purchase: Phase::of(&purchase),
        sold_out: Phase::of(&sold_out),
        latency,
        drains,
        backlog,
        rss_mb,
    });
    let path = run.dir.join("bench.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    Ok(report)
}

/// What the gateway and drain phases share: the run, the release broker, Redis.
struct Machine<'a> {
    run: &'a Run,
    gateways: Vec<Gateway>,
    broker: &'a Tool,
    redis: Watched,
    closed: Pacing,
}

impl Machine<'_> {
    /// The gateway alone (no workers): purchases, sold-out refusals and latencies; with its
    /// peak memory.
    async fn gateway_alone(
        &self,
        args: &Bench,
    ) -> anyhow::Result<(Summary, Summary, Vec<Latency>, f64)> {
        let mut stack = self.run.stack(&self.run.namespace("gateway"), GATEWAY);
        stack.start(Role::Gateway(1), Settings::new()).await?;
        let gateway_pid = stack.pid(Role::Gateway(1)).unwrap_or_default();
        let watched = [
            Watched {
                name: "gateway".into(),
                pid: gateway_pid,
            },
            self.redis.clone(),
            Watched {
                name: "broker".into(),
                pid: self.broker.pid(),
            },
        ];
        let gateway = &self.gateways[..1];
        until_idle(&[self.broker.pid()]).await;
        eprintln!(
            "== purchase: {} buyers, {} in flight",
            args.requests, args.concurrency
        );
        let purchase = crowd(gateway, args.requests, args.requests, self.closed, &watched).await?;
        until_idle(&[self.broker.pid()]).await;
        eprintln!("== sold out: {} attempts at a sold-out sale", args.requests);
        let sold_out = crowd(gateway, args.requests, 1, self.closed, &watched).await?;
        let latency = latencies(
            self.run,
            gateway,
            purchase.throughput_per_sec,
            self.broker.pid(),
        )
        .await?;
        let rss = peak_rss_mb(gateway_pid);
        stack.stop().await;
        Ok((purchase, sold_out, latency, rss))
    }

    /// A backlog written by the gateway in a namespace of its own (the drain sees only it),
    /// then each worker alone; with the gateway's peak memory.
    async fn drain(
        &self,
        args: &Bench,
    ) -> anyhow::Result<(BTreeMap<String, Drain>, BacklogFigures, f64)> {
        eprintln!(
            "== drain: a backlog of {} events, then each worker alone",
            args.backlog
        );
        let namespace = self.run.namespace("drain");
        let mut stack = self.run.stack(&namespace, GATEWAY);
        stack.start(Role::Gateway(1), Settings::new()).await?;
        let written = crowd(
            &self.gateways[..1],
            args.backlog,
            args.backlog,
            self.closed,
            &[],
        )
        .await?;
        // Past the producer's message timeout every event is acknowledged or given up on; a
        // given-up one reaches the workers only through the reconciler, so the drain includes it.
        tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        let probes = self.run.probes(&namespace, 0)?;
        let sale = written.sale_id.parse()?;
        let ledger = probes
            .ledger
            .as_ref()
            .context("the proofs' probes read the ledger")?;
        let unacknowledged = ledger.outbox_sizes(&sale).await?.unacknowledged;
        let rss = peak_rss_mb(stack.pid(Role::Gateway(1)).unwrap_or_default());
        stack.stop().await;
        until_idle(&[self.broker.pid()]).await;
        let backlog = Backlog {
            sale,
            events: args.backlog as u64,
            orders: probes
                .orders
                .clone()
                .context("the proofs' probes read the order table")?,
            broker: self.broker.pid(),
            redis: self.redis.pid,
        };
        let sms = vec![
            ("SMS_FILE".into(), namespace.sms_file.display().to_string()),
            ("SMS_RATE_PER_SEC".into(), "1000000".into()),
        ];
        let mut drains = BTreeMap::new();
        for (worker, settings) in [
            (Role::OrderWorker(1), Settings::new()),
            (Role::SmsWorker, sms),
            (Role::StatsWorker, Settings::new()),
        ] {
            eprintln!("== drain: {worker}");
            let drained = backlog.drain(&mut stack, worker, settings).await?;
            drains.insert(worker.binary().to_owned(), drained);
        }
        let figures = BacklogFigures {
            events: args.backlog as u64,
            written_per_sec: written.throughput_per_sec.round() as u64,
            unacknowledged,
            orders: backlog.orders.sale_orders(&backlog.sale).await?.rows,
        };
        Ok((drains, figures, rss))
    }
}

/// The hello-world under wrk, then under the load generator for as many requests as wrk
/// answered in its time; and the hello-world's peak memory.
async fn http_ceiling(run: &Run, args: &Bench) -> anyhow::Result<(Ceiling, Ceiling, f64)> {
    let log = run.dir.join("hello-world.log");
    let hello = Tool::hello_world(&run.binary("hello-world"), &log, HELLO_PORT).await?;
    let server = Watched {
        name: "hello-world".into(),
        pid: hello.pid(),
    };
    let url = hello_url();
    let wrk = ceilings::wrk(&run.dir, &url, &server, args.concurrency, args.ceiling_secs).await?;
    let requests = (wrk.requests_per_sec * args.ceiling_secs as f64) as usize;
    let hammer = ceilings::hammer(&url, &server, requests, args.concurrency).await?;
    Ok((wrk, hammer, peak_rss_mb(hello.pid())))
}

fn hello_url() -> String {
    format!("http://127.0.0.1:{HELLO_PORT}/api/v1/sales/x/orders")
}

/// One attempt per buyer for `stock` units, tokens minted before the clock starts; the CPU of
/// `watched` measured over the attempts alone.
pub(crate) async fn crowd(
    gateway: &[Gateway],
    buyers: usize,
    stock: usize,
    pacing: Pacing,
    watched: &[Watched],
) -> anyhow::Result<Summary> {
    let crowd = Crowd {
        scenario: "bench",
        users: buyers,
        attempts_per_user: 1,
        sale: open_sale(None, u32::try_from(stock)?, 1999),
        pacing,
        lifecycle: None,
        watched: watched.to_vec(),
    };
    crowd.run(gateway, None).await
}

/// Latency in open loop at 25%, 50% and 75% of the purchase maximum; at 50% again with Redis
/// fsyncing once a second instead of before every answer (what the durability of a 202 costs);
/// and the hello-world at that rate (the floor of the client, HTTP and the shared cores).
async fn latencies(
    run: &Run,
    gateway: &[Gateway],
    maximum: f64,
    broker: u32,
) -> anyhow::Result<Vec<Latency>> {
    let rate_at = |percent: f64| ((maximum * percent / 100.0) as u32).max(1);
    let steady = |rate: u32| async move {
        let users = rate as usize * 5;
        crowd(
            gateway,
            users,
            users,
            Pacing::Open {
                rate_per_sec: rate,
                connections: 256,
            },
            &[],
        )
        .await
    };
    let mut latency = Vec::new();
    for percent in [25.0, 50.0, 75.0] {
        until_idle(&[broker]).await;
        let rate = rate_at(percent);
        eprintln!("== latency: open loop at {percent}% of the maximum ({rate}/s for 5 s)");
        latency.push(Latency::of(
            &format!("{PURCHASE_AT} {percent}% ({rate}/s)"),
            rate,
            &steady(rate).await?,
        ));
    }
    until_idle(&[broker]).await;
    let rate = rate_at(50.0);
    eprintln!("== latency: open loop at 50%, Redis fsyncing once a second");
    services::set_redis_fsync(run.redis_url(), "everysec").await?;
    let relaxed = steady(rate).await;
    services::set_redis_fsync(run.redis_url(), "always").await?;
    latency.push(Latency::of(
        "purchase at 50%, Redis fsync once a second",
        rate,
        &relaxed?,
    ));
    eprintln!("== latency: open loop at the same rate, the hello-world");
    let log = run.dir.join("hello-world-floor.log");
    let hello = Tool::hello_world(&run.binary("hello-world"), &log, HELLO_PORT).await?;
    let pacing = Pacing::Open {
        rate_per_sec: rate,
        connections: 256,
    };
    let floor = crate::hammer(&hello_url(), rate as usize * 5, pacing, &[]).await?;
    drop(hello);
    latency.push(Latency::of("hello-world at the same rate", rate, &floor));
    Ok(latency)
}
