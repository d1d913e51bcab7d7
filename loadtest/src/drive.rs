//! Drives requests at the servers and records every answer and its latency.
//!
//! A fixed set of workers, each with its own keep-alive connections, takes the plan's entries
//! in order. Closed loop sends each worker's next request as soon as its last is answered
//! (like wrk). Open loop gives every entry a scheduled start whatever the answers (like wrk2
//! or k6's constant arrival rate) and measures each latency from that *scheduled* start, so a
//! stalled server is charged for the requests it kept waiting (coordinated omission
//! corrected). Each worker keeps its own tally and histogram, merged once at the end: nothing
//! is shared between requests but the index of the next entry.
//!
//! Besides counting, the tally keeps what the checks need about each buyer: the orders they
//! were told of and when (the oversell check counts the units held at every instant), the
//! answers that could not tell whether a unit was locked (those buyers are asked afterwards),
//! and the 503s that promised nothing was locked (a buyer so told must not hold an order no
//! 202 announced).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use gateway::error::promises_nothing_locked;
use gateway::outcome::ErrorCode;
use hdrhistogram::Histogram;
use serde::Deserialize;
use shared::ids::OrderId;

use crate::connection::{Answer, Connections, Prepared};
use crate::cpu::{Meter, Watched};

/// The label of attempts that got no HTTP answer (refused, reset, timed out).
pub const NO_ANSWER: &str = "error";

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

/// How a buyer learned of the order they hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Told {
    /// A 202 announced it.
    Accepted,
    /// A 409 `already_purchased` named it: the attempt that locked it had another answer.
    AlreadyPurchased,
    /// Asked afterwards (`GET /sales/{id}/orders/mine`), after answers that could not tell.
    AskedAfterwards,
}

/// An order a buyer holds, and what the run knows of when its unit was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The buyer's index among the run's users.
    pub user: usize,
    pub order_id: OrderId,
    pub told: Told,
    /// The lock came after this instant: the sending of the attempt answered 202; otherwise
    /// the start of the round the order was found in.
    pub locked_after: Instant,
    /// The lock came before this instant: when the buyer was told.
    pub known_at: Instant,
}

/// Everything the servers told the run.
pub struct Outcome {
    /// Answers by label (`202`, `409 already_purchased`, …; `error` when no answer came).
    pub answers: BTreeMap<String, u64>,
    /// Every order a user was told about: by a 202, by a 409 `already_purchased` naming it (a
    /// lock whose first answer was a 503), or by asking afterwards; one per (user, order).
    pub holdings: Vec<Holding>,
    /// Users to ask afterwards which order they hold: they were told of none, but an attempt
    /// ended without a definitive answer (no HTTP answer, or a 5xx: their lock may have
    /// happened all the same), or with a 503 that promised nothing was locked (the promise is
    /// checked).
    pub unsure: Vec<usize>,
    /// Users told by a 503 that nothing was locked, and whose every other answer was
    /// definitive: an order they hold that no 202 announced is one the gateway said it had
    /// not locked.
    pub promised_nothing_locked: Vec<usize>,
    /// When the first round began: the lock of an order found by asking came after it.
    pub started: Instant,
    /// Latency in microseconds.
    pub latency_us: Histogram<u64>,
    /// How late each request went out, from its scheduled start, in microseconds: in open loop
    /// the generator's own share of the latency (its timer, its scheduling, a busy
    /// connection); in closed loop about zero.
    pub send_delay_us: Histogram<u64>,
    pub elapsed: Duration,
    /// When requests were being sent: one span per round of attempts.
    pub sending: Vec<std::ops::Range<Instant>>,
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
        self.promised_nothing_locked
            .extend(later.promised_nothing_locked);
        let _ = self.latency_us.add(&later.latency_us);
        let _ = self.send_delay_us.add(&later.send_delay_us);
        self.elapsed += later.elapsed;
        self.sending.extend(later.sending);
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
    let round_start = run.start.into_std();
    let progress = tokio::spawn(report_progress(Arc::clone(&run)));
    let meter = Meter::start(watched);
    let started = Instant::now();
    let workers: Vec<_> = (0..pacing.workers())
        .map(|_| tokio::spawn(Arc::clone(&run).work()))
        .collect();
    let mut tally = Tally::new(round_start);
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
        let mut tally = Tally::new(self.start.into_std());
        loop {
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(&user) = self.plan.get(index) else {
                return tally;
            };
            let scheduled = self.pacing.scheduled(self.start, index);
            if let Pacing::Open { .. } = self.pacing {
                tokio::time::sleep_until(scheduled).await;
            }
            let sent = Instant::now();
            let target = index % self.prepared.targets();
            let answer = connections.send(target, user).await;
            let timing = Timing {
                scheduled: scheduled.into_std(),
                sent,
                answered: Instant::now(),
            };
            tally.record(user, answer.as_ref(), timing);
        }
    }
}

/// When one attempt was due, went out, and was answered.
#[derive(Clone, Copy)]
struct Timing {
    scheduled: Instant,
    sent: Instant,
    answered: Instant,
}

/// The parts of an answer's JSON body the run keeps.
#[derive(Default, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    error: Option<Cow<'a, str>>,
    #[serde(borrow)]
    order_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

/// One worker's record of its answers.
struct Tally {
    /// When the round began (see [`Holding::locked_after`]).
    round_start: Instant,
    /// (status, error code) → answers; `None` status: no answer. A handful of distinct kinds,
    /// so a scan finds them without allocating a label per answer.
    kinds: Vec<(Option<u16>, Option<ErrorCode>, u64)>,
    holdings: Vec<Holding>,
    /// Users who had an answer that could not tell whether a unit was locked.
    uncertain: Vec<usize>,
    /// Users told by a 503 that nothing was locked.
    told_nothing_locked: Vec<usize>,
    latency_us: Histogram<u64>,
    send_delay_us: Histogram<u64>,
}

impl Tally {
    fn new(round_start: Instant) -> Self {
        Self {
            round_start,
            kinds: Vec::new(),
            holdings: Vec::new(),
            uncertain: Vec::new(),
            told_nothing_locked: Vec::new(),
            latency_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
            send_delay_us: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }

    fn record(&mut self, user: usize, answer: Option<&Answer>, timing: Timing) {
        let micros = |from: Instant, to: Instant| {
            u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
        };
        let latency = micros(timing.scheduled, timing.answered);
        self.latency_us.saturating_record(latency);
        let send_delay = micros(timing.scheduled, timing.sent);
        self.send_delay_us.saturating_record(send_delay);
        let Some(&Answer { status, body }) = answer else {
            self.count(None, None, 1);
            self.uncertain.push(user);
            return;
        };
        let body: Body = serde_json::from_slice(body).unwrap_or_default();
        // Each field on its own: one that does not parse loses only itself.
        let code = body.error.as_deref().and_then(|code| code.parse().ok());
        self.count(Some(status), code, 1);
        let nothing_locked =
            status == 503 && body.message.as_deref().is_some_and(promises_nothing_locked);
        if nothing_locked {
            self.told_nothing_locked.push(user);
        } else if status >= 500 {
            self.uncertain.push(user);
        }
        let told = match status {
            202 => Told::Accepted,
            409 => Told::AlreadyPurchased,
            _ => return,
        };
        let Some(order_id) = body.order_id.and_then(|id| id.parse().ok()) else {
            // No order id that parses tells nothing: the buyer is asked afterwards.
            self.uncertain.push(user);
            return;
        };
        let locked_after = match told {
            Told::Accepted => timing.sent,
            _ => self.round_start,
        };
        self.holdings.push(Holding {
            user,
            order_id,
            told,
            locked_after,
            known_at: timing.answered,
        });
    }

    fn count(&mut self, status: Option<u16>, code: Option<ErrorCode>, answers: u64) {
        match self
            .kinds
            .iter_mut()
            .find(|(s, c, _)| *s == status && *c == code)
        {
            Some((_, _, count)) => *count += answers,
            None => self.kinds.push((status, code, answers)),
        }
    }

    fn absorb(&mut self, other: Tally) {
        for (status, code, answers) in other.kinds {
            self.count(status, code, answers);
        }
        self.holdings.extend(other.holdings);
        self.uncertain.extend(other.uncertain);
        self.told_nothing_locked.extend(other.told_nothing_locked);
        let _ = self.latency_us.add(&other.latency_us);
        let _ = self.send_delay_us.add(&other.send_delay_us);
    }

    fn into_outcome(self, elapsed: Duration, cpu: BTreeMap<String, Duration>) -> Outcome {
        let answers = self
            .kinds
            .into_iter()
            .map(|(status, code, count)| {
                let label = match (status, code) {
                    (None, _) => NO_ANSWER.to_owned(),
                    (Some(status), None) => status.to_string(),
                    (Some(status), Some(code)) => format!("{status} {code}"),
                };
                (label, count)
            })
            .collect();
        let holdings = first_told(self.holdings);
        let holders: BTreeSet<usize> = holdings.iter().map(|holding| holding.user).collect();
        let uncertain: BTreeSet<usize> = self.uncertain.into_iter().collect();
        let told_nothing_locked: BTreeSet<usize> = self.told_nothing_locked.into_iter().collect();
        // A user told of an order is sure, whatever else their attempts met.
        let unsure = uncertain
            .union(&told_nothing_locked)
            .copied()
            .filter(|user| !holders.contains(user))
            .collect();
        Outcome {
            answers,
            holdings,
            unsure,
            promised_nothing_locked: told_nothing_locked
                .difference(&uncertain)
                .copied()
                .collect(),
            started: self.round_start,
            latency_us: self.latency_us,
            send_delay_us: self.send_delay_us,
            elapsed,
            sending: vec![self.round_start..self.round_start + elapsed],
            cpu,
        }
    }
}

/// One holding per (user, order): the one told first, a 202 before a 409 naming the same order.
fn first_told(holdings: Vec<Holding>) -> Vec<Holding> {
    let mut first: BTreeMap<(usize, OrderId), Holding> = BTreeMap::new();
    for holding in holdings {
        let key = (holding.user, holding.order_id.clone());
        match first.get(&key) {
            Some(kept) if (kept.told, kept.known_at) <= (holding.told, holding.known_at) => {}
            _ => {
                first.insert(key, holding);
            }
        }
    }
    first.into_values().collect()
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
    use gateway::error::{ApiError, NOTHING_LOCKED};
    use shared::error::StoreError;

    use super::*;

    const ORDER: &str = "s.0123456789abcdef0123456789abcdef";

    fn answer(status: u16, body: &str) -> Answer<'_> {
        Answer {
            status,
            body: body.as_bytes(),
        }
    }

    fn unavailable(message: &str) -> String {
        serde_json::json!({ "error": "unavailable", "message": message }).to_string()
    }

    /// An attempt sent `at_ms` into the round and answered `latency_ms` later.
    fn timing(start: Instant, at_ms: u64, latency_ms: u64) -> Timing {
        let sent = start + Duration::from_millis(at_ms);
        Timing {
            scheduled: sent,
            sent,
            answered: sent + Duration::from_millis(latency_ms),
        }
    }

    #[test]
    fn answers_are_counted_by_status_and_code_and_orders_make_their_buyers_sure() {
        let start = Instant::now();
        let sold_out = r#"{"error":"sold_out","message":"m"}"#;
        let mut first = Tally::new(start);
        first.record(1, Some(&answer(410, sold_out)), timing(start, 0, 1));
        first.record(2, None, timing(start, 0, 2));
        let mut second = Tally::new(start);
        second.record(3, Some(&answer(410, sold_out)), timing(start, 0, 3));
        let accepted = format!(r#"{{"order_id":"{ORDER}","status":"processing"}}"#);
        second.record(2, Some(&answer(202, &accepted)), timing(start, 10, 4));
        second.record(4, Some(&answer(503, "")), timing(start, 0, 5));
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
        assert_eq!(
            outcome.holdings,
            [Holding {
                user: 2,
                order_id: ORDER.parse().unwrap(),
                told: Told::Accepted,
                locked_after: start + Duration::from_millis(10),
                known_at: start + Duration::from_millis(14),
            }]
        );
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

    #[test]
    fn a_503_that_promised_nothing_was_locked_is_kept_apart_from_one_that_could_not_tell() {
        let start = Instant::now();
        let mut tally = Tally::new(start);
        let nothing_locked = unavailable(NOTHING_LOCKED);
        let already = format!(r#"{{"error":"already_purchased","order_id":"{ORDER}"}}"#);
        // User 1: promised nothing was locked, then told of an order: held since the round.
        tally.record(1, Some(&answer(503, &nothing_locked)), timing(start, 0, 1));
        tally.record(1, Some(&answer(409, &already)), timing(start, 5, 1));
        // User 2: promised, but also a 503 that could not tell: no promise to hold them to.
        tally.record(2, Some(&answer(503, &nothing_locked)), timing(start, 0, 1));
        let slow_store =
            ApiError::StoreUnavailable(StoreError::Timeout(Duration::from_millis(500)));
        tally.record(
            2,
            Some(&answer(503, &unavailable(&slow_store.to_string()))),
            timing(start, 0, 1),
        );
        // User 3: promised, and holding nothing known: asked afterwards.
        tally.record(3, Some(&answer(503, &nothing_locked)), timing(start, 0, 1));
        let outcome = tally.into_outcome(Duration::from_secs(1), BTreeMap::new());
        assert_eq!(outcome.answers["503 unavailable"], 4);
        assert_eq!(outcome.promised_nothing_locked, [1, 3]);
        assert_eq!(outcome.unsure, [2, 3]);
        let [holding] = &outcome.holdings[..] else {
            panic!("{:?}", outcome.holdings)
        };
        assert_eq!(
            (holding.user, holding.told, holding.locked_after),
            (1, Told::AlreadyPurchased, start)
        );
    }
}
