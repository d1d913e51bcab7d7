//! Drives requests at the servers and records every answer and its latency.
//!
//! A fixed set of workers, each with its own keep-alive connections, takes the plan's entries
//! in order. Closed loop sends each worker's next request as soon as its last is answered
//! (like wrk). Open loop gives every entry a scheduled start whatever the answers (like wrk2
//! or k6's constant arrival rate) and measures each latency from that *scheduled* start, so a
//! stalled server is charged for the requests it kept waiting (coordinated omission
//! corrected). Each worker keeps its own tally and histogram, merged once at the end: nothing
//! is shared between requests but the index of the next entry.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde::Deserialize;

use crate::connection::{Answer, Connections, Prepared};
use crate::cpu::{Meter, Watched};

/// How attempts are paced.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// This many requests in flight at all times.
    Closed { concurrency: usize },
    /// This many requests started per second, over at most `connections` at once.
    Open {
        rate_per_sec: u32,
        connections: usize,
    },
}

impl Pacing {
    /// Open loop at `rate_per_sec` over `connections`, or, without a rate, closed loop with
    /// that many in flight.
    pub fn new(rate_per_sec: Option<u32>, connections: usize) -> Self {
        match rate_per_sec {
            Some(rate_per_sec) => Self::Open {
                rate_per_sec,
                connections,
            },
            None => Self::Closed {
                concurrency: connections,
            },
        }
    }

    fn workers(self) -> usize {
        match self {
            Self::Closed { concurrency } => concurrency,
            Self::Open { connections, .. } => connections,
        }
        .max(1)
    }

    /// When the plan's `index`th entry is due (closed loop: as soon as a worker takes it).
    fn scheduled(self, start: tokio::time::Instant, index: usize) -> tokio::time::Instant {
        match self {
            Self::Closed { .. } => tokio::time::Instant::now(),
            Self::Open { rate_per_sec, .. } => {
                let interval = Duration::from_secs(1) / rate_per_sec.max(1);
                start + interval * u32::try_from(index).unwrap_or(u32::MAX)
            }
        }
    }
}

/// Everything the servers told the run.
pub struct Outcome {
    /// Answers by label (`202`, `409 already_purchased`, …; `error` when no answer came).
    pub answers: BTreeMap<String, u64>,
    /// (user index, order id) of every order a user was told about: by a 202, or by a 409
    /// `already_purchased` naming the order (a lock whose first answer was a 503).
    pub holdings: Vec<(usize, String)>,
    /// Users who hold nothing they were told about, but had an attempt end without a
    /// definitive answer (no HTTP answer, or a 5xx): their lock may have happened all the same.
    pub unsure: Vec<usize>,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// How late each request went out, from its scheduled start, in microseconds: in open loop
    /// the generator's own share of the latency (its timer, its scheduling, a busy
    /// connection); in closed loop about zero.
    pub send_delay_us: Histogram<u64>,
    pub elapsed: Duration,
    /// CPU time spent while the requests ran, by process: the load generator's own
    /// ([`crate::cpu::LOADTEST`]) and each watched server's.
    pub cpu: BTreeMap<String, Duration>,
}

impl Outcome {
    /// Adds a later round's answers, orders, latencies and times to this one's.
    pub fn absorb(&mut self, later: Outcome) {
        for (label, count) in later.answers {
            *self.answers.entry(label).or_insert(0) += count;
        }
        self.holdings.extend(later.holdings);
        self.unsure.extend(later.unsure);
        let _ = self.latency_us.add(&later.latency_us);
        let _ = self.send_delay_us.add(&later.send_delay_us);
        self.elapsed += later.elapsed;
        for (process, spent) in later.cpu {
            *self.cpu.entry(process).or_default() += spent;
        }
    }

    /// Requests answered or not.
    pub fn attempts(&self) -> u64 {
        self.answers.values().sum()
    }
}

/// Sends one request per entry of `plan` (a user index), round-robin over `prepared`'s
/// targets, and measures the CPU time of this process and the `watched` ones meanwhile.
pub async fn drive(
    plan: Vec<usize>,
    pacing: Pacing,
    prepared: Prepared,
    watched: &[Watched],
) -> Outcome {
    let run = Arc::new(Run {
        plan,
        pacing,
        prepared,
        next: AtomicUsize::new(0),
        start: tokio::time::Instant::now(),
    });
    let progress = tokio::spawn(report_progress(Arc::clone(&run)));
    let meter = Meter::start(watched);
    let started = Instant::now();
    let workers: Vec<_> = (0..pacing.workers())
        .map(|_| tokio::spawn(Arc::clone(&run).work()))
        .collect();
    let mut tally = Tally::default();
    for worker in workers {
        if let Ok(done) = worker.await {
            tally.absorb(done);
        }
    }
    let elapsed = started.elapsed();
    let cpu = meter.stop();
    progress.abort();
    tally.into_outcome(elapsed, cpu)
}

/// What the workers share: the plan, and the index of its next entry.
struct Run {
    plan: Vec<usize>,
    pacing: Pacing,
    prepared: Prepared,
    next: AtomicUsize,
    start: tokio::time::Instant,
}

impl Run {
    async fn work(self: Arc<Self>) -> Tally {
        let mut connections = Connections::new(&self.prepared);
        let mut tally = Tally::default();
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&user) = self.plan.get(index) else {
                return tally;
            };
            let scheduled = self.pacing.scheduled(self.start, index);
            if let Pacing::Open { .. } = self.pacing {
                tokio::time::sleep_until(scheduled).await;
            }
            let send_delay = scheduled.elapsed();
            let target = index % self.prepared.targets();
            let answer = connections.send(target, user).await;
            tally.record(user, answer.as_ref(), send_delay, scheduled.elapsed());
        }
    }
}

/// The parts of an answer's JSON body the run keeps.
#[derive(Default, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow)]
    order_id: Option<Cow<'a, str>>,
}

/// One worker's record of its answers.
struct Tally {
    /// (status, error code) → answers; `None` status: no answer. A handful of distinct kinds,
    /// so a scan finds them without allocating a label per answer.
    kinds: Vec<(Option<u16>, Option<String>, u64)>,
    holdings: Vec<(usize, String)>,
    unsure: Vec<usize>,
    latency_us: Histogram<u64>,
    send_delay_us: Histogram<u64>,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            kinds: Vec::new(),
            holdings: Vec::new(),
            unsure: Vec::new(),
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            send_delay_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

impl Tally {
    fn record(
        &mut self,
        user: usize,
        answer: Option<&Answer>,
        send_delay: Duration,
        latency: Duration,
    ) {
        let micros = |time: Duration| u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(micros(latency));
        self.send_delay_us.saturating_record(micros(send_delay));
        let Some(&Answer { status, body }) = answer else {
            self.count(None, None, 1);
            self.unsure.push(user);
            return;
        };
        let body: Body = serde_json::from_slice(body).unwrap_or_default();
        self.count(Some(status), body.error.as_deref(), 1);
        if status >= 500 {
            self.unsure.push(user);
        }
        if let (202 | 409, Some(order_id)) = (status, body.order_id) {
            self.holdings.push((user, order_id.into_owned()));
        }
    }

    fn count(&mut self, status: Option<u16>, code: Option<&str>, answers: u64) {
        match self
            .kinds
            .iter_mut()
            .find(|(s, c, _)| *s == status && c.as_deref() == code)
        {
            Some((_, _, count)) => *count += answers,
            None => self.kinds.push((status, code.map(str::to_owned), answers)),
        }
    }

    fn absorb(&mut self, other: Tally) {
        for (status, code, answers) in other.kinds {
            self.count(status, code.as_deref(), answers);
        }
        self.holdings.extend(other.holdings);
        self.unsure.extend(other.unsure);
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.send_delay_us.add(&other.send_delay_us);
    }

    fn into_outcome(self, elapsed: Duration, cpu: BTreeMap<String, Duration>) -> Outcome {
        let answers = self
            .kinds
            .into_iter()
            .map(|(status, code, count)| {
                let label = match (status, code) {
                    (None, _) => "error".to_owned(),
                    (Some(status), None) => status.to_string(),
                    (Some(status), Some(code)) => format!("{status} {code}"),
                };
                (label, count)
            })
            .collect();
        // A user told of an order is sure, whatever else their attempts met.
        let holdings: BTreeSet<(usize, String)> = self.holdings.into_iter().collect();
        let holders: BTreeSet<usize> = holdings.iter().map(|(user, _)| *user).collect();
        let unsure: BTreeSet<usize> = self
            .unsure
            .into_iter()
            .filter(|user| !holders.contains(user))
            .collect();
        Outcome {
            answers,
            holdings: holdings.into_iter().collect(),
            unsure: unsure.into_iter().collect(),
            latency_us: self.latency_us,
            send_delay_us: self.send_delay_us,
            elapsed,
            cpu,
        }
    }
}

async fn report_progress(run: Arc<Run>) {
    let total = run.plan.len();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let started = run.next.load(Ordering::Relaxed).min(total);
        let percent = started * 100 / total.max(1);
        eprintln!(
            "  [{:<50}] {started}/{total} attempts started",
            "#".repeat(percent / 2)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_counted_by_status_and_code_and_orders_make_their_buyers_sure() {
        let answer = |status, body: &'static [u8]| Answer { status, body };
        let sold_out = br#"{"error":"sold_out","message":"m"}"#;
        let mut first = Tally::default();
        first.record(
            1,
            Some(&answer(410, sold_out)),
            Duration::ZERO,
            Duration::from_millis(1),
        );
        first.record(2, None, Duration::ZERO, Duration::from_millis(2));
        let mut second = Tally::default();
        second.record(
            3,
            Some(&answer(410, sold_out)),
            Duration::ZERO,
            Duration::from_millis(3),
        );
        let accepted = br#"{"order_id":"o-1","status":"processing"}"#;
        second.record(
            2,
            Some(&answer(202, accepted)),
            Duration::ZERO,
            Duration::from_millis(4),
        );
        second.record(
            4,
            Some(&answer(503, b"")),
            Duration::ZERO,
            Duration::from_millis(5),
        );
        first.absorb(second);
        let outcome = first.into_outcome(Duration::from_secs(1), BTreeMap::new());
        assert_eq!(
            outcome.answers,
            BTreeMap::from([
                ("202".to_owned(), 1),
                ("410 sold_out".to_owned(), 2),
                ("503".to_owned(), 1),
                ("error".to_owned(), 1),
            ])
        );
        assert_eq!(outcome.holdings, [(2, "o-1".to_owned())]);
        assert_eq!(
            outcome.unsure,
            [4],
            "user 2 lost an answer but holds an order"
        );
        assert_eq!(outcome.latency_us.len(), 5);
        assert_eq!(
            outcome.latency_us.max() / 1000,
            5,
            "the slowest answer, in ms"
        );
        assert_eq!(outcome.send_delay_us.len(), 5);
    }
}
