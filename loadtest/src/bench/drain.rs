//! The drain: a backlog of events waiting in the topic, then each worker alone, timed from its
//! first message to the whole backlog: its rate, what it, Redis, the broker and PostgreSQL spent
//! per event, its peak memory, and its capacity (events per second of time spent inside its
//! batches, apart from waiting for the broker to deliver).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use order_worker::store::OrderStore;
use serde::Serialize;
use shared::consumer::{BATCH_SECONDS, CONSUMED_TOTAL};
use shared::ids::SaleId;

use crate::bench::ceilings::micros_per;
use crate::bench::processes::{peak_rss_mb, postgres_pids, until_idle};
use crate::cpu::{Meter, Watched};
use crate::prometheus;
use crate::proof::metrics;
use crate::proof::stack::{Role, Settings, Stack};

/// One worker's drain.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Drain {
    pub per_sec: u64,
    /// CPU per event of the worker, Redis, the broker and PostgreSQL, in µs.
    pub cpu_us: BTreeMap<String, f64>,
    pub rss_mb: f64,
    /// Events per second of time inside its batches: far above `per_sec`, it says the broker's
    /// delivery is what limits the drain.
    pub capacity_per_sec: u64,
}

/// The backlog the workers drain, and the processes they share.
pub struct Backlog {
    pub sale: SaleId,
    pub events: u64,
    pub orders: Arc<dyn OrderStore>,
    pub broker: u32,
    pub redis: u32,
}

/// How long a drain may take to start and to finish.
const PATIENCE: Duration = Duration::from_mins(10);

impl Backlog {
    /// Starts `worker` alone on `stack` with its own `settings`, drains the backlog, stops it.
    pub async fn drain(
        &self,
        stack: &mut Stack,
        worker: Role,
        settings: Settings,
    ) -> anyhow::Result<Drain> {
        stack.start(worker, settings).await?;
        let pid = stack.pid(worker).context("the worker has no pid")?;
        let first = shared::poll::until(PATIENCE, Duration::from_millis(50), async || {
            let handled = self.handled(worker).await;
            (handled > 0).then_some(handled)
        })
        .await
        .with_context(|| format!("{worker} handled nothing"))?;
        let started = Instant::now();
        let mut watched = vec![
            Watched {
                name: "worker".into(),
                pid,
            },
            Watched {
                name: "redis".into(),
                pid: self.redis,
            },
            Watched {
                name: "broker".into(),
                pid: self.broker,
            },
        ];
        watched.extend(postgres_pids().into_iter().map(|pid| Watched {
            name: format!("postgres {pid}"),
            pid,
        }));
        let meter = Meter::start(&watched);
        let handled = shared::poll::until(PATIENCE, Duration::from_millis(200), async || {
            let handled = self.handled(worker).await;
            (handled >= self.events).then_some(handled)
        })
        .await
        .with_context(|| format!("{worker} did not drain {} events", self.events))?;
        let seconds = started.elapsed().as_secs_f64();
        let mut spent: BTreeMap<String, Duration> = BTreeMap::new();
        for (name, time) in meter.stop() {
            let process = if name.starts_with("postgres") {
                "postgres".to_owned()
            } else {
                name
            };
            *spent.entry(process).or_default() += time;
        }
        spent.remove(crate::cpu::LOADTEST);
        let drained = handled - first;
        let text = metrics(&worker.metrics_url()).await;
        let group = [("group", worker.binary())];
        let batch_seconds = prometheus::sum(&text, &format!("{BATCH_SECONDS}_sum"), &group);
        let consumed = prometheus::sum(&text, CONSUMED_TOTAL, &group);
        let drain = Drain {
            per_sec: (drained as f64 / seconds).round() as u64,
            cpu_us: spent
                .into_iter()
                .map(|(name, time)| (name, micros_per(time, drained)))
                .collect(),
            rss_mb: peak_rss_mb(pid),
            capacity_per_sec: if batch_seconds > 0.0 {
                (consumed / batch_seconds) as u64
            } else {
                0
            },
        };
        stack.stop().await;
        until_idle(&[self.broker]).await;
        Ok(drain)
    }

    /// What `worker` has handled of the backlog: order rows written, or messages its group
    /// finished with.
    async fn handled(&self, worker: Role) -> u64 {
        if let Role::OrderWorker(_) = worker {
            return self
                .orders
                .sale_orders(&self.sale)
                .await
                .map_or(0, |rows| rows.rows);
        }
        let text = metrics(&worker.metrics_url()).await;
        prometheus::sum(&text, CONSUMED_TOTAL, &[("group", worker.binary())]) as u64
    }
}
