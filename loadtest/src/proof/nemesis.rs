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
use std::ops::Range;
use std::time::Duration;

use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::Played;
use crate::proof::cluster::Cluster;
use crate::proof::faults::{Fault, Resource, Target};
use crate::proof::services::Service;
use crate::proof::stack::{Role, Stack};
use crate::proof::{FAULTED_STACK, Namespace, Record, Run, ServiceUrls, faulted_crowd};
use crate::report::Summary;

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
    pub fault: String,
    /// When the schedule placed it, from the start of the faults.
    pub planned_ms: u64,
    /// When it had struck (the processes killed, the service crashed or paused).
    pub injected_ms: u64,
    /// When it was healed (every process serving again, the service answering).
    pub healed_ms: u64,
    /// Whether a sale's crowd or latecomers were sending attempts meanwhile.
    pub met_buyers: bool,
    /// Why it did not strike or heal whole, if it did not.
    pub error: Option<String>,
    /// Whether it killed the SMS worker (which may send one message again).
    #[serde(skip)]
    kills_sms_worker: bool,
    /// Whether it could keep purchases from being answered ([`Fault::hinders_purchases`]).
    #[serde(skip)]
    hinders_purchases: bool,
}

impl Struck {
    /// From its injection to its healing, in ms from the start of the faults.
    fn lasted(&self) -> Range<u64> {
        self.injected_ms..self.healed_ms.max(self.injected_ms + 1)
    }

    /// Whether it lasted while something happened during `span`.
    fn overlaps(&self, span: &Range<u64>) -> bool {
        let lasted = self.lasted();
        span.start < lasted.end && lasted.start < span.end
    }
}

impl fmt::Display for Struck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |ms: u64| ms as f64 / 1000.0;
        write!(
            f,
            "{:>7.1} s  {} (struck {:.1} s, healed {:.1} s{})",
            secs(self.planned_ms),
            self.fault,
            secs(self.injected_ms),
            secs(self.healed_ms),
            if self.met_buyers {
                ", buyers meanwhile"
            } else {
                ""
            }
        )?;
        match &self.error {
            Some(error) => write!(f, ": failed: {error}"),
            None => Ok(()),
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
    fn draw(seed: u64, duration: Duration, redis: &RedisFaults) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut strikes = Vec::new();
        let mut held: Vec<(Resource, Duration)> = Vec::new();
        let mut at = Duration::from_secs(2);
        while at + RECOVERY < duration {
            held.retain(|(_, until)| *until > at);
            let fault = draw_fault(&mut rng, redis, at);
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
        let since = move |instant: Instant| instant.duration_since(start).as_millis() as u64;
        let strikes = self.strikes.iter().map(|(at, fault)| async move {
            tokio::time::sleep_until(start + *at).await;
            let injected = fault.inject(target).await;
            let injected_ms = since(Instant::now());
            tokio::time::sleep(fault.length()).await;
            let healed = fault.heal(target).await;
            Struck {
                fault: fault.to_string(),
                planned_ms: at.as_millis() as u64,
                injected_ms,
                healed_ms: since(Instant::now()),
                met_buyers: false,
                error: injected.and(healed).err().map(|error| format!("{error:#}")),
                kills_sms_worker: matches!(fault, Fault::Kill { roles, .. } if roles.contains(&Role::SmsWorker)),
                hinders_purchases: fault.hinders_purchases(),
            }
        });
        futures::future::join_all(strikes).await
    }
}

/// Where the nemesis strikes Redis.
enum RedisFaults {
    /// The one node: crashed, or every client paused.
    Node,
    /// A Redis Cluster: the master of the sale playing at the moment killed (its replica
    /// promoted) or paused, or its slot moved to another master. The sales' key prefix.
    Cluster { namespace: String },
}

impl RedisFaults {
    /// A key of the sale that began last before `at` (the one most likely buying).
    fn sale_key_at(namespace: &str, at: Duration) -> String {
        let k = at.as_millis() / SALE_EVERY.as_millis();
        let sale_id = sale_id(namespace, k as usize)
            .parse()
            .expect("a valid sale id");
        shared::keys::KeySpace::new(namespace).sale(&sale_id).stock
    }
}

/// The id of the nemesis's `k`-th sale.
fn sale_id(namespace: &str, k: usize) -> String {
    format!("{namespace}-{k}")
}

/// One fault of the table, with a random length; Redis's are the cluster's on a cluster.
fn draw_fault(rng: &mut ChaCha8Rng, redis: &RedisFaults, at: Duration) -> Fault {
    // One node's faults are two kinds, a cluster's three: a seed of one node draws the same
    // schedule as before the cluster's existed.
    let kinds = match redis {
        RedisFaults::Node => 11,
        RedisFaults::Cluster { .. } => 12,
    };
    let choice = rng.random_range(0..kinds);
    let mut length =
        |from_ms: u64, to_ms: u64| Duration::from_millis(rng.random_range(from_ms..to_ms));
    let kill = |roles: Vec<Role>, down| Fault::Kill { roles, down };
    match (choice, redis) {
        (0, _) => kill(vec![Role::Gateway(1)], length(500, 3_000)),
        (1, _) => kill(vec![Role::Gateway(2)], length(500, 3_000)),
        (2, _) => kill(vec![Role::OrderWorker(1)], length(500, 3_000)),
        (3, _) => kill(vec![Role::OrderWorker(2)], length(500, 3_000)),
        (4, _) => kill(
            vec![Role::OrderWorker(1), Role::OrderWorker(2)],
            length(500, 3_000),
        ),
        (5, _) => kill(vec![Role::SmsWorker], length(500, 3_000)),
        (6, _) => kill(vec![Role::StatsWorker], length(500, 3_000)),
        (7, _) => Fault::Crash {
            service: Service::Broker,
            down: length(1_000, 4_000),
        },
        (8, RedisFaults::Node) => Fault::Crash {
            service: Service::Redis,
            down: length(1_000, 4_000),
        },
        (9, _) => Fault::Crash {
            service: Service::Postgres,
            down: length(1_000, 4_000),
        },
        (_, RedisFaults::Node) => Fault::PauseRedis {
            pause: length(1_000, 4_000),
        },
        // Down past the cluster's node timeout (2 s) or not: failed over, or back in time.
        (8, RedisFaults::Cluster { namespace }) => Fault::KillMaster {
            key: RedisFaults::sale_key_at(namespace, at),
            down: length(1_000, 6_000),
        },
        (10, RedisFaults::Cluster { namespace }) => Fault::PauseMaster {
            key: RedisFaults::sale_key_at(namespace, at),
            pause: length(1_000, 4_000),
        },
        (_, RedisFaults::Cluster { namespace }) => Fault::MoveSlot {
            key: RedisFaults::sale_key_at(namespace, at),
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
    run.make_redis_durable().await?;
    eprintln!(
        "nemesis: seed {seed}; logs and records in {}",
        run.dir.display()
    );
    let namespace = run.namespace("sales");
    let redis = if run.on_cluster() {
        RedisFaults::Cluster {
            namespace: namespace.name.clone(),
        }
    } else {
        RedisFaults::Node
    };
    let schedule = Schedule::draw(seed, duration, &redis);
    for (at, fault) in &schedule.strikes {
        eprintln!("nemesis: at {:.1} s, {fault}", at.as_secs_f64());
    }

    let stack = Mutex::new(run.stack(&namespace, FAULTED_STACK));
    let sms_file = namespace.sms_file.display().to_string();
    let own = BTreeMap::from([(Role::SmsWorker, vec![("SMS_FILE".into(), sms_file)])]);
    stack.lock().await.start_all(own).await?;
    let gateways = run.gateways()?;
    let target = Target {
        stack: &stack,
        redis_url: run.redis_url(),
    };

    let start = Instant::now();
    let since = |instant: Instant| instant.duration_since(start).as_millis() as u64;
    let sales = (0..)
        .map(|k| SALE_EVERY * k)
        .take_while(|begins| *begins + SALE_LIFE <= duration.max(SALE_LIFE));
    let plays = sales.enumerate().map(|(k, begins)| {
        let (gateways, sale_id) = (&gateways, sale_id(&namespace.name, k));
        async move {
            tokio::time::sleep_until(start + begins).await;
            let began = since(Instant::now());
            // When its attempts were being sent, in ms from the start of the faults.
            let sending = |played: &Played| -> Vec<Range<u64>> {
                let from_start = |at: std::time::Instant| since(Instant::from_std(at));
                played
                    .sending()
                    .iter()
                    .map(|span| from_start(span.start)..from_start(span.end))
                    .collect()
            };
            let played = match faulted_crowd("nemesis", &sale_id, 200, 600, WINDOW_SECS) {
                Ok(crowd) => crowd.play(gateways).await,
                Err(error) => Err(error),
            };
            let sent = played.as_ref().map(sending).unwrap_or_default();
            (Sale { began, sent }, played)
        }
    });
    let (played, mut struck) = tokio::join!(
        futures::future::join_all(plays),
        schedule.strike(&target, start)
    );

    let mut record = Record::new("nemesis", &run);
    record.seed = Some(seed);
    record.add("healing".to_owned(), None, heal(&stack, &run).await);
    for struck in &mut struck {
        struck.met_buyers = played
            .iter()
            .any(|(sale, _)| sale.sent.iter().any(|span| struck.overlaps(span)));
    }
    for (k, (sale, played)) in played.into_iter().enumerate() {
        let name = format!("sale-{k}");
        let (summary, violations) = check_sale(&run, &namespace, &sale, played, &struck).await;
        record.add(name, summary, violations);
    }
    let mut faults: Vec<String> = struck
        .iter()
        .filter(|struck| struck.error.is_some())
        .map(|struck| format!("the fault did not strike or heal whole: {struck}"))
        .collect();
    if !struck.iter().any(|struck| struck.met_buyers) {
        faults.push("no fault struck while buyers bought: the run proved nothing".to_owned());
    }
    record.add("faults".to_owned(), None, faults);
    record.faults = struck;
    stack.lock().await.stop().await;
    record.save(&run)?;
    Ok(record)
}

/// Every service answering, every process serving, before anything is checked; what would
/// not come back.
async fn heal(stack: &Mutex<Stack>, run: &Run) -> Vec<String> {
    let mut failures = Vec::new();
    for service in [Service::Redis, Service::Broker, Service::Postgres] {
        if let Err(error) = service.start().await {
            failures.push(format!("{service} did not start again: {error:#}"));
        }
    }
    if let Some(cluster) = Cluster::of(run.redis_url())
        && let Err(error) = cluster.start_all_again().await
    {
        failures.push(format!("the Redis Cluster did not become whole: {error:#}"));
    }
    if let Err(error) = stack.lock().await.revive().await {
        failures.push(format!("the stack did not serve again: {error:#}"));
    }
    failures
}

/// When a sale's life began, and when its attempts were being sent (the first crowd's and each
/// resale round's), in ms from the start of the faults.
struct Sale {
    began: u64,
    sent: Vec<Range<u64>>,
}

/// One sale, held to every
/// invariant; the checks of units left unsold are waived if a fault lasted while it bought.
async fn check_sale(
    run: &Run,
    namespace: &Namespace,
    sale: &Sale,
    played: anyhow::Result<Played>,
    struck: &[Struck],
) -> (Option<Summary>, Vec<String>) {
    let played = match played {
        Ok(played) => played,
        Err(error) => return (None, vec![format!("its crowd could not play: {error:#}")]),
    };
    // A killed SMS worker may send again one message of any sale whose SMS were pending.
    let sms_kills = struck
        .iter()
        .filter(|struck| struck.kills_sms_worker && struck.injected_ms >= sale.began)
        .count() as u64;
    let checked = match run.probes(namespace, sms_kills) {
        Ok(mut probes) => {
            probes.faults_while_buying = struck.iter().any(|struck| {
                struck.hinders_purchases && sale.sent.iter().any(|span| struck.overlaps(span))
            });
            played.check(Some(&probes)).await
        }
        Err(error) => Err(error),
    };
    match checked {
        Ok(summary) => {
            let violations = summary.violations.clone();
            (Some(summary), violations)
        }
        Err(error) => (None, vec![format!("it could not be checked: {error:#}")]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_draws_the_same_schedule_and_another_seed_another() {
        let minutes = Duration::from_mins(10);
        let shown = |seed| {
            Schedule::draw(seed, minutes, &RedisFaults::Node)
                .strikes
                .iter()
                .map(|(at, fault)| format!("{at:?} {fault}"))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown(7), shown(7));
        assert_ne!(shown(7), shown(8));
    }

    #[test]
    fn on_a_cluster_redis_faults_strike_the_master_of_the_sale_then_playing() {
        let redis = RedisFaults::Cluster {
            namespace: "n".to_owned(),
        };
        let schedule = Schedule::draw(42, Duration::from_mins(10), &redis);
        let mut kinds = std::collections::BTreeSet::new();
        for (at, fault) in &schedule.strikes {
            let key = match fault {
                Fault::Crash { service, .. } => {
                    assert_ne!(*service, Service::Redis, "one node's crash drawn at {at:?}");
                    continue;
                }
                Fault::PauseRedis { .. } => panic!("one node's pause drawn at {at:?}"),
                Fault::Kill { .. } => continue,
                Fault::KillMaster { key, .. }
                | Fault::PauseMaster { key, .. }
                | Fault::MoveSlot { key } => key,
            };
            kinds.insert(
                fault
                    .to_string()
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
            );
            let playing = at.as_millis() / SALE_EVERY.as_millis();
            assert!(
                key.contains(&format!("{{sale:n-{playing}}}")),
                "{key} at {at:?}"
            );
        }
        assert_eq!(kinds.len(), 3, "{kinds:?}");
    }

    #[test]
    fn faults_overlap_but_never_on_one_resource_and_never_more_than_allowed() {
        let schedule = Schedule::draw(42, Duration::from_mins(10), &RedisFaults::Node);
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
                Fault::KillMaster { .. } => "kill a master".to_owned(),
                Fault::PauseMaster { .. } => "pause a master".to_owned(),
                Fault::MoveSlot { .. } => "move a slot".to_owned(),
            })
            .collect();
        assert!(kinds.len() >= 8, "only {kinds:?} drawn");
    }
}
