//! The nemesis: faults of the fault table drawn at random from a seed, at random moments and
//! for random lengths, several at once (a gateway killed while Redis is paused, the broker
//! down while an order worker restarts), while sale after sale plays its whole life: a crowd,
//! payments, expiries, latecomers buying the units that come back. Once every sale has played
//! and every fault is healed, each sale is held to every invariant against what its crowd was
//! told: the answers, the order rows, the SMS, the statistics and the payment provider's books.
//!
//! The seed fixes the schedule (which faults, when, for how long); the same seed strikes the
//! same faults at the same moments of a run, though the services' timing differs.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::proof::faults::{Fault, Resource, Target};
use crate::proof::services::{self, Service};
use crate::proof::stack::Role;
use crate::proof::{Record, Run, ServiceUrls, chaos};

#[derive(Args, Clone, Debug)]
pub struct Nemesis {
    #[command(flatten)]
    pub urls: ServiceUrls,

    /// The seed of the fault schedule (default: a random one, printed to rerun it).
    #[arg(long)]
    pub seed: Option<u64>,

    /// How long faults strike; sales begin throughout it.
    #[arg(long, default_value_t = 120)]
    pub duration_secs: u64,
}

/// A new sale begins this often.
const SALE_EVERY: Duration = Duration::from_secs(15);
/// About how long a sale plays (its crowd, two payment windows and a resale round): the last
/// sale begins this long before the faults end.
const SALE_LIFE: Duration = Duration::from_secs(45);
/// Its payment window: unpaid orders expire while faults still strike.
const WINDOW_SECS: u32 = 10;
/// Faults lasting at once, at most.
const AT_ONCE: usize = 3;
/// Room after a fault is healed before another may take what it held (a process serving
/// again, a service answering).
const RECOVERY: Duration = Duration::from_secs(5);

/// A fault the schedule placed, and what came of it.
#[derive(Debug, serde::Serialize)]
pub struct Struck {
    /// When it was injected, from the start of the faults.
    pub at_ms: u64,
    pub fault: String,
    /// When it was healed; `None` when it did not strike or heal.
    pub healed_ms: Option<u64>,
    pub error: Option<String>,
}

impl fmt::Display for Struck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:>7.1} s  {}", self.at_ms as f64 / 1000.0, self.fault)?;
        match (&self.error, self.healed_ms) {
            (Some(error), _) => write!(f, ": failed: {error}"),
            (None, Some(healed)) => write!(f, ", healed at {:.1} s", healed as f64 / 1000.0),
            (None, None) => Ok(()),
        }
    }
}

/// The faults of one run, in the order they strike.
struct Schedule {
    strikes: Vec<(Duration, Fault)>,
}

impl Schedule {
    /// Draws faults from `seed` over `duration`: one every 1 to 6 s, each from the whole table,
    /// kept only while fewer than [`AT_ONCE`] last and none holds what it needs.
    fn draw(seed: u64, duration: Duration) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut strikes = Vec::new();
        let mut held: Vec<(Resource, Duration)> = Vec::new();
        let mut at = Duration::from_secs(2);
        while at + RECOVERY < duration {
            held.retain(|(_, until)| *until > at);
            let fault = draw_fault(&mut rng);
            let lasting = strikes
                .iter()
                .filter(|(start, fault): &&(Duration, Fault)| *start + fault.length() > at)
                .count();
            let free = fault
                .resources()
                .iter()
                .all(|resource| held.iter().all(|(taken, _)| taken != resource));
            if free && lasting < AT_ONCE {
                let until = at + fault.length() + RECOVERY;
                held.extend(fault.resources().into_iter().map(|r| (r, until)));
                strikes.push((at, fault));
            }
            at += Duration::from_millis(rng.random_range(1_000..6_000));
        }
        Self { strikes }
    }

    /// Strikes every fault at its moment from `start`; what came of each.
    async fn strike(&self, target: &Target<'_>, start: Instant) -> Vec<Struck> {
        let strikes = self.strikes.iter().map(|(at, fault)| async move {
            tokio::time::sleep_until(start + *at).await;
            let result = fault.strike(target).await;
            let since = |instant: Instant| instant.duration_since(start).as_millis() as u64;
            Struck {
                at_ms: at.as_millis() as u64,
                fault: fault.to_string(),
                healed_ms: result.is_ok().then(|| since(Instant::now())),
                error: result.err().map(|error| format!("{error:#}")),
            }
        });
        futures::future::join_all(strikes).await
    }

    /// SMS worker kills: each may leave one message sent again.
    fn sms_worker_kills(&self) -> u64 {
        let kills_sms = |fault: &Fault| matches!(fault, Fault::Kill { roles, .. } if roles.contains(&Role::SmsWorker));
        self.strikes
            .iter()
            .filter(|(_, fault)| kills_sms(fault))
            .count() as u64
    }
}

/// One fault of the table, with a random length.
fn draw_fault(rng: &mut ChaCha8Rng) -> Fault {
    let choice = rng.random_range(0..11);
    let mut length =
        |from_ms: u64, to_ms: u64| Duration::from_millis(rng.random_range(from_ms..to_ms));
    let kill = |roles: Vec<Role>, down| Fault::Kill { roles, down };
    match choice {
        0 => kill(vec![Role::Gateway(1)], length(500, 3_000)),
        1 => kill(vec![Role::Gateway(2)], length(500, 3_000)),
        2 => kill(vec![Role::OrderWorker(1)], length(500, 3_000)),
        3 => kill(vec![Role::OrderWorker(2)], length(500, 3_000)),
        4 => kill(
            vec![Role::OrderWorker(1), Role::OrderWorker(2)],
            length(500, 3_000),
        ),
        5 => kill(vec![Role::SmsWorker], length(500, 3_000)),
        6 => kill(vec![Role::StatsWorker], length(500, 3_000)),
        7 => Fault::Crash {
            service: Service::Broker,
            down: length(1_000, 4_000),
        },
        8 => Fault::Crash {
            service: Service::Redis,
            down: length(1_000, 4_000),
        },
        9 => Fault::Crash {
            service: Service::Postgres,
            down: length(1_000, 4_000),
        },
        _ => Fault::PauseRedis {
            pause: length(1_000, 4_000),
        },
    }
}

/// Runs the nemesis: sales and faults over `--duration-secs`, then the checks.
pub async fn run(args: Nemesis) -> anyhow::Result<Record> {
    let seed = args
        .seed
        .unwrap_or_else(|| uuid::Uuid::new_v4().as_u64_pair().0);
    let duration = Duration::from_secs(args.duration_secs);
    let run = Run::new("nemesis", args.urls)?;
    services::make_redis_durable(run.redis_url()).await?;
    eprintln!(
        "nemesis: seed {seed}; logs and records in {}",
        run.dir.display()
    );
    let schedule = Schedule::draw(seed, duration);
    for (at, fault) in &schedule.strikes {
        eprintln!("nemesis: at {:.1} s, {fault}", at.as_secs_f64());
    }

    let namespace = run.namespace("sales");
    let stack = Mutex::new(run.stack(&namespace, chaos::SETTINGS));
    let sms_file = namespace.sms_file.display().to_string();
    let own = BTreeMap::from([(Role::SmsWorker, vec![("SMS_FILE".into(), sms_file)])]);
    stack.lock().await.start_all(own).await?;
    let gateways = run.gateways()?;
    let target = Target {
        stack: &stack,
        redis_url: run.redis_url(),
    };

    let start = Instant::now();
    let sales = (0..)
        .map(|k| SALE_EVERY * k)
        .take_while(|begins| *begins + SALE_LIFE <= duration.max(SALE_LIFE));
    let plays = sales.enumerate().map(|(k, begins)| {
        let (gateways, sale_id) = (&gateways, format!("{}-{k}", namespace.name));
        async move {
            tokio::time::sleep_until(start + begins).await;
            chaos::crowd("nemesis", &sale_id, 200, 600, WINDOW_SECS)?
                .play(gateways)
                .await
        }
    });
    let (played, struck) = tokio::join!(
        futures::future::join_all(plays),
        schedule.strike(&target, start)
    );

    // Healed: every service answering, every process serving, before anything is checked.
    for service in [Service::Redis, Service::Broker, Service::Postgres] {
        service.start().await?;
    }
    stack.lock().await.revive().await?;

    let mut record = Record::new("nemesis", &run);
    record.seed = Some(seed);
    let probes = run.probes(&namespace, schedule.sms_worker_kills())?;
    for (k, played) in played.into_iter().enumerate() {
        let name = format!("sale-{k}");
        match played {
            Ok(played) => {
                let summary = played.check(Some(&probes)).await?;
                let violations = summary.violations.clone();
                record.add(name, Some(summary), violations);
            }
            Err(error) => {
                let violation = format!("its crowd could not play: {error:#}");
                record.add(name, None, vec![violation]);
            }
        }
    }
    let failed: Vec<String> = struck
        .iter()
        .filter(|struck| struck.error.is_some())
        .map(|struck| format!("the fault did not strike or heal: {struck}"))
        .collect();
    record.add("faults".to_owned(), None, failed);
    record.faults = struck;
    stack.lock().await.stop().await;
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_schedule_and_another_seed_another() {
        let minutes = Duration::from_mins(10);
        let shown = |seed| {
            Schedule::draw(seed, minutes)
                .strikes
                .iter()
                .map(|(at, fault)| format!("{at:?} {fault}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(7), shown(7));
        assert_ne!(shown(7), shown(8));
    }

    #[test]
    fn faults_overlap_but_never_on_one_resource_and_never_more_than_allowed() {
        let schedule = Schedule::draw(42, Duration::from_mins(10));
        let strikes = &schedule.strikes;
        assert!(
            strikes.len() > 50,
            "{} faults in ten minutes",
            strikes.len()
        );
        let mut overlapping = 0;
        for (i, (at, fault)) in strikes.iter().enumerate() {
            let lasting: Vec<&Fault> = strikes[..i]
                .iter()
                .filter(|(start, earlier)| *start + earlier.length() > *at)
                .map(|(_, earlier)| earlier)
                .collect();
            assert!(
                lasting.len() < AT_ONCE,
                "{} faults at {at:?}",
                lasting.len() + 1
            );
            overlapping += usize::from(!lasting.is_empty());
            for (start, earlier) in &strikes[..i] {
                let shares = earlier
                    .resources()
                    .iter()
                    .any(|r| fault.resources().contains(r));
                assert!(
                    !shares || *start + earlier.length() + RECOVERY <= *at,
                    "{earlier} and {fault} hold the same thing at {at:?}"
                );
            }
        }
        assert!(
            overlapping > 5,
            "only {overlapping} faults struck while another lasted"
        );
        let kinds: std::collections::HashSet<String> = strikes
            .iter()
            .map(|(_, fault)| match fault {
                Fault::Kill { roles, .. } => format!("kill {roles:?}"),
                Fault::Crash { service, .. } => format!("crash {service}"),
                Fault::PauseRedis { .. } => "pause redis".to_owned(),
            })
            .collect();
        assert!(kinds.len() >= 8, "only {kinds:?} drawn");
    }
}
