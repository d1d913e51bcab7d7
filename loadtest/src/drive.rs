//! Drives purchase attempts at the gateway and records every answer and its latency.
//!
//! Closed loop keeps a fixed number of requests in flight (like wrk). Open loop starts
//! requests on a fixed schedule whatever the answers (like wrk2 or k6's constant arrival
//! rate) and measures each latency from the request's *scheduled* start, so a stalled server
//! is charged for the requests it kept waiting (coordinated omission corrected).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

use crate::api::Answer;

/// How attempts are paced.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// This many requests in flight at all times.
    Closed { concurrency: usize },
    /// This many requests started per second.
    Open { rate_per_sec: u32 },
}

/// Everything the crowd was told.
pub struct Outcome {
    /// Answers by label (`202`, `409 already_purchased`, …; `error` for transport failures).
    pub answers: BTreeMap<String, u64>,
    /// (user index, order id) of every order a user was told about: by a 202, or by a 409
    /// `already_purchased` naming the order (a lock whose first answer was a 503).
    pub holdings: Vec<(usize, String)>,
    /// Users who hold nothing they were told about, but had an attempt end without a
    /// definitive answer (no HTTP answer, or a 5xx): their lock may have happened all the same.
    pub unsure: Vec<usize>,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Adds a later round's answers, orders, latencies and time to this one's.
    pub fn absorb(&mut self, later: Outcome) {
        for (label, count) in later.answers {
            *self.answers.entry(label).or_insert(0) += count;
        }
        self.holdings.extend(later.holdings);
        self.unsure.extend(later.unsure);
        let _ = self.latency_us.add(&later.latency_us);
        self.elapsed += later.elapsed;
    }
}

struct Sample {
    user: usize,
    answer: Option<Answer>,
    latency: Duration,
}

/// Sends one request per entry of `plan` (a user index): `send(user)` makes it and reads its
/// answer (`None` when there was no HTTP answer).
pub async fn drive<F, Fut>(plan: Vec<usize>, pacing: Pacing, send: F) -> Outcome
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Option<Answer>> + Send + 'static,
{
    let total = plan.len() as u64;
    let done = Arc::new(AtomicU64::new(0));
    let progress = tokio::spawn(report_progress(Arc::clone(&done), total));
    let started = Instant::now();
    let attempt = |user: usize, scheduled: Instant| {
        let (send, done) = (send.clone(), Arc::clone(&done));
        async move {
            let answer = send(user).await;
            done.fetch_add(1, Ordering::Relaxed);
            Sample {
                user,
                answer,
                latency: scheduled.elapsed(),
            }
        }
    };
    let samples: Vec<Sample> = match pacing {
        Pacing::Closed { concurrency } => {
            futures::stream::iter(plan)
                .map(|user| tokio::spawn(attempt(user, Instant::now())))
                .buffer_unordered(concurrency.max(1))
                .filter_map(|joined| async move { joined.ok() })
                .collect()
                .await
        }
        Pacing::Open { rate_per_sec } => {
            let interval = Duration::from_secs(1) / rate_per_sec.max(1);
            let start = tokio::time::Instant::now();
            let mut tasks = JoinSet::new();
            for (i, user) in plan.into_iter().enumerate() {
                let scheduled = start + interval * u32::try_from(i).unwrap_or(u32::MAX);
                tokio::time::sleep_until(scheduled).await;
                tasks.spawn(attempt(user, scheduled.into_std()));
            }
            tasks.join_all().await
        }
    };
    let elapsed = started.elapsed();
    progress.abort();
    summarise(samples, elapsed)
}

fn summarise(samples: Vec<Sample>, elapsed: Duration) -> Outcome {
    let mut answers = BTreeMap::new();
    let mut holdings = std::collections::BTreeSet::new();
    let mut unsure = std::collections::BTreeSet::new();
    let mut latency_us = Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for sample in samples {
        let label = sample
            .answer
            .as_ref()
            .map_or_else(|| "error".to_owned(), Answer::label);
        *answers.entry(label).or_insert(0) += 1;
        if sample.answer.as_ref().is_none_or(|a| a.status >= 500) {
            unsure.insert(sample.user);
        }
        if let Some(Answer {
            status: 202 | 409,
            order_id: Some(order_id),
            ..
        }) = sample.answer
        {
            holdings.insert((sample.user, order_id));
        }
        latency_us.saturating_record(sample.latency.as_micros() as u64);
    }
    for (user, _) in &holdings {
        unsure.remove(user);
    }
    Outcome {
        answers,
        holdings: holdings.into_iter().collect(),
        unsure: unsure.into_iter().collect(),
        latency_us,
        elapsed,
    }
}

async fn report_progress(done: Arc<AtomicU64>, total: u64) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let done = done.load(Ordering::Relaxed);
        let percent = done * 100 / total.max(1);
        eprintln!(
            "  [{:<50}] {done}/{total} attempts",
            "#".repeat((percent / 2) as usize)
        );
    }
}
