//! Chaos: the fault table of `docs/architecture.md`, one fault at a time. Each scenario
//! starts a stack in a namespace of its own and sends it a crowd of 3,000 attempts by 1,500
//! buyers for 600 units, in open loop over 15 s; 70% of the winners pay, the rest let a 20 s
//! window pass, and latecomers buy the units that come back. The scenario's fault strikes at
//! the step it is meant to meet (once 30 units are locked, 30 orders written, …). Once healed
//! and settled, the sale is held to every invariant, and the crowd's answers must bear a trace
//! of the fault: a fault that never struck is a violation, not a pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use gateway::outcome::ErrorCode;
use order_worker::payments::PAYMENTS_SETTLED_TOTAL;
use shared::consumer::{CONSUMED_TOTAL, DEAD_LETTERED};
use shared::keys::KeySpace;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use crate::drive::NO_ANSWER;
use crate::proof::cluster::Cluster;
use crate::proof::faults::{Fault, Target};
use crate::proof::progress::Step;
use crate::proof::services::Service;
use crate::proof::stack::{Role, Settings};
use crate::proof::{FAULTED_STACK, Namespace, Record, Run, ServiceUrls, faulted_crowd, metrics};
use crate::report::Summary;
use crate::{Crowd, Pacing, open_sale, prometheus};

#[derive(Args, Clone, Debug)]
pub struct Chaos {
    #[command(flatten)]
    pub urls: ServiceUrls,

    /// The scenarios to run (default: every one).
    #[arg(value_enum)]
    pub scenarios: Vec<Scenario>,
}

/// One fault of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    GatewayKilled,
    OrderWorkerKilled,
    SmsWorkerKilled,
    StatsWorkerKilled,
    BrokerKilled,
    RedisKilled,
    PostgresStopped,
    RedisSlow,
    RedisKilledWhilePaying,
    /// Both order workers killed (and the reconciler's sweep with them) as orders expire.
    ExpirySweeperKilled,
    /// The SMS provider fails for 5 s and refuses one recipient for ever.
    SmsProviderFailing,
    /// On Redis Cluster: the master holding the sale SIGKILLed, its replica promoted.
    MasterKilled,
    /// On Redis Cluster: the master holding the sale paused past every deadline.
    MasterPaused,
    /// On Redis Cluster: the sale's slot moved to another master while buyers buy.
    SlotMoved,
}

/// What the SMS worker may try before a message is dead-lettered in the provider's scenario:
/// enough to outlast its 5 s outage (back-off from 200 ms, doubling, at most 5 s), few enough
/// that a message it never accepts is dead-lettered in about 30 s.
const SMS_MAX_ATTEMPTS: u64 = 10;
/// The SMS worker's rate in the provider's scenario, per second.
const SMS_RATE: u64 = 100;
const FLAKY_PROVIDER: &str = "127.0.0.1:18090";

impl Scenario {
    /// Whether it strikes the run's Redis topology: one node's crash and pause on one node, a
    /// master's or a slot's on a cluster; the rest on either.
    fn fits(self, on_cluster: bool) -> bool {
        match self {
            Self::RedisKilled | Self::RedisSlow | Self::RedisKilledWhilePaying => !on_cluster,
            Self::MasterKilled | Self::MasterPaused | Self::SlotMoved => on_cluster,
            _ => true,
        }
    }

    fn name(self) -> String {
        self.to_possible_value()
            .expect("no scenario is skipped")
            .get_name()
            .to_owned()
    }

    /// The step at which the fault strikes, and how many times it must have happened.
    fn moment(self) -> (Step, u64) {
        match self {
            Self::GatewayKilled
            | Self::BrokerKilled
            | Self::RedisKilled
            | Self::RedisSlow
            | Self::MasterKilled
            | Self::MasterPaused
            | Self::SlotMoved => (Step::Locked, 30),
            Self::OrderWorkerKilled | Self::PostgresStopped => (Step::OrdersWritten, 30),
            Self::SmsWorkerKilled => (Step::SmsSent, 30),
            Self::SmsProviderFailing => (Step::SmsSent, 50),
            Self::StatsWorkerKilled => (Step::UnitsCounted, 30),
            Self::ExpirySweeperKilled => (Step::OrdersExpired, 1),
            Self::RedisKilledWhilePaying => (Step::Charges, 20),
        }
    }

    /// The fault (a cluster's strikes the master of `sale_key`); the provider's scenario has
    /// none of its own (the provider fails by itself).
    fn fault(self, sale_key: &str) -> Option<Fault> {
        let kill = |roles: Vec<Role>| Fault::Kill {
            roles,
            down: Duration::from_secs(1),
        };
        let crash = |service, secs| Fault::Crash {
            service,
            down: Duration::from_secs(secs),
        };
        Some(match self {
            Self::GatewayKilled => kill(vec![Role::Gateway(1)]),
            Self::OrderWorkerKilled => kill(vec![Role::OrderWorker(1)]),
            Self::SmsWorkerKilled => kill(vec![Role::SmsWorker]),
            Self::StatsWorkerKilled => kill(vec![Role::StatsWorker]),
            Self::ExpirySweeperKilled => kill(vec![Role::OrderWorker(1), Role::OrderWorker(2)]),
            Self::BrokerKilled => crash(Service::Broker, 3),
            Self::RedisKilled | Self::RedisKilledWhilePaying => crash(Service::Redis, 2),
            Self::PostgresStopped => crash(Service::Postgres, 3),
            // Past the 200 ms deadline of a Redis call and the 2 s of a request.
            Self::RedisSlow => Fault::PauseRedis {
                pause: Duration::from_secs(3),
            },
            Self::SmsProviderFailing => return None,
            // Past the cluster's node timeout (2 s): its replica is promoted meanwhile.
            Self::MasterKilled => Fault::KillMaster {
                key: sale_key.to_owned(),
                down: Duration::from_secs(6),
            },
            Self::MasterPaused => Fault::PauseMaster {
                key: sale_key.to_owned(),
                pause: Duration::from_secs(3),
            },
            Self::SlotMoved => Fault::MoveSlot {
                key: sale_key.to_owned(),
            },
        })
    }

    /// Whether the sale's slot must be served by another master once the fault is healed
    /// (the replica promoted, the slot moved), or by the same one (a pause fails nothing
    /// over); `None` for the faults that do not touch a cluster.
    fn moves_the_sale(self) -> Option<bool> {
        match self {
            Self::MasterKilled | Self::SlotMoved => Some(true),
            Self::MasterPaused => Some(false),
            _ => None,
        }
    }

    /// The answer label the crowd must have met if the fault struck: connections refused by the
    /// dead gateway, 503s while Redis was gone or paused.
    fn evidence(self) -> Option<String> {
        match self {
            Self::GatewayKilled => Some(NO_ANSWER.to_owned()),
            Self::RedisKilled | Self::RedisSlow | Self::MasterKilled | Self::MasterPaused => {
                Some(format!("503 {}", ErrorCode::Unavailable))
            }
            _ => None,
        }
    }

    /// Messages sent again that the provider did not deliver: a killed SMS worker may have sent
    /// one whose record it never wrote, and its successor sends it again.
    fn sms_repeats_allowed(self) -> u64 {
        u64::from(self == Self::SmsWorkerKilled)
    }

    /// The SMS worker's own settings: the file provider, or the flaky one, which keeps the
    /// file the checks count itself.
    fn sms_worker(self, namespace: &Namespace) -> Settings {
        let settings: &[(&str, String)] = if self == Self::SmsProviderFailing {
            &[
                ("SMS_PROVIDER", "http".to_owned()),
                ("SMS_HTTP_URL", format!("http://{FLAKY_PROVIDER}/sms")),
                ("SMS_MAX_ATTEMPTS", SMS_MAX_ATTEMPTS.to_string()),
                ("SMS_RATE_PER_SEC", SMS_RATE.to_string()),
            ]
        } else {
            &[("SMS_FILE", namespace.sms_file.display().to_string())]
        };
        settings
            .iter()
            .map(|(name, value)| ((*name).to_owned(), value.clone()))
            .collect()
    }
}

/// Runs the scenarios one after the other.
pub async fn run(args: Chaos) -> anyhow::Result<Record> {
    let run = Run::new("chaos", args.urls)?;
    run.make_redis_durable().await?;
    eprintln!("chaos: logs and records in {}", run.dir.display());
    let on_cluster = run.on_cluster();
    let scenarios = if args.scenarios.is_empty() {
        Scenario::value_variants()
            .iter()
            .copied()
            .filter(|scenario| scenario.fits(on_cluster))
            .collect()
    } else {
        args.scenarios
    };
    if let Some(misfit) = scenarios.iter().find(|scenario| !scenario.fits(on_cluster)) {
        anyhow::bail!(
            "{} does not strike {}",
            misfit.name(),
            if on_cluster {
                "a Redis Cluster"
            } else {
                "one Redis node (run it --on-cluster)"
            }
        );
    }
    let mut record = Record::new("chaos", &run);
    for scenario in scenarios {
        eprintln!("chaos: == {}", scenario.name());
        let (summary, violations) = match one(&run, scenario).await {
            Ok(result) => result,
            Err(error) => (None, vec![format!("the scenario could not run: {error:#}")]),
        };
        record.add(scenario.name(), summary, violations);
    }
    record.save(&run)?;
    Ok(record)
}

/// One scenario: its stack, its crowd, its fault, its checks.
async fn one(run: &Run, scenario: Scenario) -> anyhow::Result<(Option<Summary>, Vec<String>)> {
    let namespace = run.namespace(&scenario.name());
    let provider = if scenario == Scenario::SmsProviderFailing {
        Some(FlakyProvider::start(run, &namespace)?)
    } else {
        None
    };
    let stack = Mutex::new(run.stack(&namespace, FAULTED_STACK));
    let own = BTreeMap::from([(Role::SmsWorker, scenario.sms_worker(&namespace))]);
    stack.lock().await.start_all(own).await?;

    // The window is longer than the crowd: unpaid orders expire after it has passed.
    let crowd = faulted_crowd("chaos", &namespace.name, 600, 1500, 20)?;
    let progress = run.progress(&namespace, &crowd.sale)?;
    let gateways = run.gateways()?;
    let target = Target {
        stack: &stack,
        redis_url: run.redis_url(),
    };
    let sale_key = KeySpace::new(&namespace.name).sale(&crowd.sale.id).stock;
    let cluster = Cluster::of(run.redis_url());
    let master_before = match &cluster {
        Some(cluster) => Some(cluster.master_of(&sale_key).await?.id),
        None => None,
    };
    let fault = async {
        let (step, at_least) = scenario.moment();
        progress.reached(step, at_least).await?;
        if let Some(fault) = scenario.fault(&sale_key) {
            fault.strike(&target).await
        } else {
            // The provider fails for 5 s of the next 10.
            tokio::time::sleep(Duration::from_secs(10)).await;
            Ok(())
        }
    };
    let (played, struck) = tokio::join!(crowd.play(&gateways), fault);
    let probes = run.probes(&namespace, scenario.sms_repeats_allowed())?;
    let summary = played?.check(Some(&probes)).await?;
    let mut violations = summary.violations.clone();
    if let Err(error) = struck {
        violations.push(format!(
            "the fault did not strike (its moment never came, or the service was not ours to crash): {error:#}"
        ));
    }
    if let Some(label) = scenario.evidence()
        && summary.answers.get(&label).copied().unwrap_or(0) == 0
    {
        violations.push(format!("no answer was {label}: the fault left no trace"));
    }
    if let (Some(cluster), Some(before), Some(moves)) =
        (&cluster, &master_before, scenario.moves_the_sale())
    {
        let after = cluster.master_of(&sale_key).await?.id;
        if (after != *before) != moves {
            violations.push(format!(
                "the sale's master {} the fault (before {before}, after {after})",
                if moves {
                    "was the same after"
                } else {
                    "changed with"
                }
            ));
        }
    }
    if scenario == Scenario::RedisKilledWhilePaying {
        violations.extend(payments_left_were_settled(&summary).await);
    }
    if let Some(provider) = &provider {
        match provider
            .undeliverable_is_dead_lettered(run, &gateways)
            .await
        {
            Ok(found) => violations.extend(found),
            Err(error) => violations.push(format!("the undeliverable purchase failed: {error:#}")),
        }
    }
    stack.lock().await.stop().await;
    if let Some(provider) = provider {
        match provider.stop().await {
            Ok(found) => violations.extend(found),
            Err(error) => violations.push(format!("the provider's file was unreadable: {error:#}")),
        }
    }
    Ok((Some(summary), violations))
}

/// Redis crashed while buyers paid: the answers that could not tell must exist, and the
/// payment resolver must have settled what the crash left (paid or refunded).
async fn payments_left_were_settled(summary: &Summary) -> Vec<String> {
    let mut violations = Vec::new();
    if summary.payments_unknown.unwrap_or(0) == 0 {
        violations.push("no payment was left unconfirmed: the fault left no trace".to_owned());
    }
    let mut settled = 0.0;
    for worker in [Role::OrderWorker(1), Role::OrderWorker(2)] {
        let text = metrics(&worker.metrics_url()).await;
        for how in ["paid", "refunded"] {
            settled += prometheus::sum(&text, PAYMENTS_SETTLED_TOTAL, &[("how", how)]);
        }
    }
    if settled == 0.0 {
        violations.push("the resolver settled no charge the crash left".to_owned());
    }
    violations
}

/// The SMS provider of the provider's scenario: fails for 5 s after 50 messages, and never
/// accepts a message to a recipient of the sale `undeliverable`.
struct FlakyProvider {
    child: Child,
    log: std::path::PathBuf,
    file: std::path::PathBuf,
}

impl FlakyProvider {
    fn start(run: &Run, namespace: &Namespace) -> anyhow::Result<Self> {
        let log = run.dir.join("flaky-sms-provider.log");
        let output = std::fs::File::create(&log)?;
        let file = namespace.sms_file.clone();
        let child = Command::new(run.binary("flaky-sms-provider"))
            .args(["--listen", FLAKY_PROVIDER, "--file"])
            .arg(&file)
            .args([
                "--fail-after",
                "50",
                "--fail-for-secs",
                "5",
                "--stall-ms",
                "500",
            ])
            .args(["--refuse-to", "undeliverable"])
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self { child, log, file })
    }

    /// One buyer of a sale of its own whose message the provider never accepts: the message
    /// must be dead-lettered after exactly `SMS_MAX_ATTEMPTS` calls.
    async fn undeliverable_is_dead_lettered(
        &self,
        run: &Run,
        gateways: &[crate::api::Gateway],
    ) -> anyhow::Result<Vec<String>> {
        let sale = open_sale(Some(format!("{}-undeliverable", run.id).parse()?), 1, 1999);
        let crowd = Crowd {
            scenario: "undeliverable",
            users: 1,
            attempts_per_user: 1,
            sale,
            pacing: Pacing::new(None, 1),
            lifecycle: None,
            watched: Vec::new(),
        };
        crowd.play(gateways).await?;
        let dead = [
            ("group", Role::SmsWorker.binary()),
            ("outcome", DEAD_LETTERED),
        ];
        let dead_lettered = shared::poll::until(
            Duration::from_secs(90),
            Duration::from_millis(500),
            async || {
                let text = metrics(&Role::SmsWorker.metrics_url()).await;
                (prometheus::sum(&text, CONSUMED_TOTAL, &dead) >= 1.0).then_some(())
            },
        )
        .await;
        if dead_lettered.is_none() {
            return Ok(vec![
                "the undeliverable SMS was not dead-lettered".to_owned(),
            ]);
        }
        let log = std::fs::read_to_string(&self.log)?;
        let calls = log
            .lines()
            .filter(|line| line.starts_with("refused "))
            .count() as u64;
        Ok(if calls == SMS_MAX_ATTEMPTS {
            Vec::new()
        } else {
            vec![format!(
                "the undeliverable SMS was dead-lettered after {calls} calls, not {SMS_MAX_ATTEMPTS}"
            )]
        })
    }

    /// Stops the provider; the rate held: no more than the limit per second on average, and
    /// no second above the limit plus its burst.
    async fn stop(mut self) -> anyhow::Result<Vec<String>> {
        self.child.kill().await?;
        let rate = Rate::of(&self.file)?;
        eprintln!("chaos: the provider saw {rate:?}");
        let held = rate.messages <= SMS_RATE * (rate.span_secs + 1) + SMS_RATE
            && rate.busiest_second <= 2 * SMS_RATE;
        Ok(if held {
            Vec::new()
        } else {
            vec![format!(
                "the SMS rate of {SMS_RATE}/s did not hold: {rate:?}"
            )]
        })
    }
}

/// The messages a provider's file holds, over how long, and the most in one second.
#[derive(Debug, Default)]
struct Rate {
    messages: u64,
    span_secs: u64,
    busiest_second: u64,
}

impl Rate {
    fn of(file: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)?;
        let mut arrivals: Vec<u64> = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter_map(|sms| sms["at_ms"].as_u64())
            .collect();
        arrivals.sort_unstable();
        let (Some(first), Some(last)) = (arrivals.first(), arrivals.last()) else {
            return Ok(Self::default());
        };
        let mut per_second: BTreeMap<u64, u64> = BTreeMap::new();
        for at in &arrivals {
            *per_second.entry(at / 1000).or_default() += 1;
        }
        Ok(Self {
            messages: arrivals.len() as u64,
            span_secs: (last - first) / 1000,
            busiest_second: per_second.values().copied().max().unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_read_from_the_providers_arrival_times() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("sms.jsonl");
        let lines: Vec<String> = [1_000, 1_200, 1_900, 2_100, 4_999, 5_000]
            .iter()
            .map(|at| format!(r#"{{"idempotency_key":"s.o:created","at_ms":{at}}}"#))
            .collect();
        std::fs::write(&file, lines.join("\n")).expect("written");
        let rate = Rate::of(&file).expect("read");
        assert_eq!(
            (rate.messages, rate.span_secs, rate.busiest_second),
            (6, 4, 3)
        );
    }
}
