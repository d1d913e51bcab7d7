//! The fault table of `docs/architecture.md` as values: each fault is injected, lasts a while,
//! and is healed the way an orchestrator heals it (a killed process started again, a crashed
//! service restarted, a paused Redis left to resume). Chaos strikes one per scenario; the
//! nemesis draws several, overlapping, from a seed.

use std::fmt;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::proof::cluster::Cluster;
use crate::proof::services::{self, Service};
use crate::proof::stack::{Role, Stack, serving};

/// One fault and how long it lasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Processes SIGKILLed together, started again after `down`.
    Kill { roles: Vec<Role>, down: Duration },
    /// A service crashed (SIGKILL; PostgreSQL's immediate stop), started again after `down`.
    Crash { service: Service, down: Duration },
    /// Every Redis client paused for `pause`: past a Redis call's deadline and a request's.
    PauseRedis { pause: Duration },
    /// On Redis Cluster: the master holding `key`'s slot SIGKILLed, its replica promoted by
    /// the cluster, the node started again after `down` (it rejoins as a replica).
    KillMaster { key: String, down: Duration },
    /// On Redis Cluster: every client of the master holding `key`'s slot paused for `pause`.
    PauseMaster { key: String, pause: Duration },
    /// On Redis Cluster: `key`'s slot moved to another master, keys and all.
    MoveSlot { key: String },
}

/// What a fault needs to strike: the stack's processes and the services' Redis.
pub struct Target<'a> {
    pub stack: &'a Mutex<Stack>,
    pub redis_url: &'a str,
}

impl Target<'_> {
    /// The Redis Cluster a cluster's fault strikes; an error on a single node.
    fn cluster(&self) -> anyhow::Result<Cluster> {
        Cluster::of(self.redis_url).ok_or_else(|| {
            anyhow::anyhow!("a Redis Cluster fault needs the run on a cluster (--on-cluster)")
        })
    }
}

/// What a fault holds while it lasts: two faults never hold the same thing at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    Process(Role),
    Service(Service),
}

impl Fault {
    /// Injects the fault, waits out its length, heals it. It is healed even when it did not
    /// strike whole (one of two processes not killed): nothing is left broken for the checks.
    pub async fn strike(&self, target: &Target<'_>) -> anyhow::Result<()> {
        let injected = self.inject(target).await;
        tokio::time::sleep(self.length()).await;
        let healed = self.heal(target).await;
        injected.and(healed)
    }

    /// How long the fault lasts before it is healed.
    pub fn length(&self) -> Duration {
        match self {
            Self::Kill { down, .. } | Self::Crash { down, .. } | Self::KillMaster { down, .. } => {
                *down
            }
            Self::PauseRedis { pause } | Self::PauseMaster { pause, .. } => *pause,
            Self::MoveSlot { .. } => Duration::ZERO,
        }
    }

    /// Whether it can keep a purchase from being answered (a gateway gone, Redis gone or
    /// paused): units may then stay unsold while buyers want them, which is no safety
    /// violation. The other faults only delay what follows a purchase.
    pub fn hinders_purchases(&self) -> bool {
        match self {
            Self::Kill { roles, .. } => roles.iter().any(|role| matches!(role, Role::Gateway(_))),
            Self::Crash { service, .. } => *service == Service::Redis,
            Self::PauseRedis { .. }
            | Self::KillMaster { .. }
            | Self::PauseMaster { .. }
            | Self::MoveSlot { .. } => true,
        }
    }

    /// What it holds while it lasts (a cluster's faults hold all of Redis: one at a time).
    pub fn resources(&self) -> Vec<Resource> {
        match self {
            Self::Kill { roles, .. } => roles.iter().copied().map(Resource::Process).collect(),
            Self::Crash { service, .. } => vec![Resource::Service(*service)],
            Self::PauseRedis { .. }
            | Self::KillMaster { .. }
            | Self::PauseMaster { .. }
            | Self::MoveSlot { .. } => vec![Resource::Service(Service::Redis)],
        }
    }

    /// Strikes: every process of a kill is killed, even when one of them fails.
    pub async fn inject(&self, target: &Target<'_>) -> anyhow::Result<()> {
        match self {
            Self::Kill { roles, .. } => {
                let mut stack = target.stack.lock().await;
                let mut failures = Vec::new();
                for role in roles {
                    if let Err(error) = stack.kill(*role).await {
                        failures.push(format!("{error:#}"));
                    }
                }
                all_or_nothing(&failures)
            }
            Self::Crash { service, .. } => service.crash().await,
            Self::PauseRedis { pause } => services::pause_redis(target.redis_url, *pause).await,
            Self::KillMaster { key, .. } => target.cluster()?.kill_master_of(key).await.map(drop),
            Self::PauseMaster { key, pause } => {
                target.cluster()?.pause_master_of(key, *pause).await
            }
            Self::MoveSlot { key } => target.cluster()?.move_slot_of(key).await.map(drop),
        }
    }

    /// Heals: every process a kill took is started again and must serve (the stack is held
    /// only to start them, not while they come up).
    pub async fn heal(&self, target: &Target<'_>) -> anyhow::Result<()> {
        match self {
            Self::Kill { roles, .. } => {
                let mut failures = Vec::new();
                let mut started = Vec::new();
                {
                    let mut stack = target.stack.lock().await;
                    for role in roles {
                        match stack.restart(*role) {
                            Ok(()) => started.push(*role),
                            Err(error) => failures.push(format!("{error:#}")),
                        }
                    }
                }
                for role in started {
                    if let Err(error) = serving(role).await {
                        failures.push(format!("{error:#}"));
                    }
                }
                all_or_nothing(&failures)
            }
            Self::Crash { service, .. } => service.start().await,
            // Every node that is down started again, then the cluster whole.
            Self::KillMaster { .. } => target.cluster()?.start_all_again().await,
            // The pause lapses by itself; the moved slot stays where it went.
            Self::PauseRedis { .. } | Self::PauseMaster { .. } | Self::MoveSlot { .. } => Ok(()),
        }
    }
}

/// One error naming every failure, if there was any.
fn all_or_nothing(failures: &[String]) -> anyhow::Result<()> {
    if failures.is_empty() {
        Ok(())
    } else {
        Err(anyhow::anyhow!(failures.join("; ")))
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill { roles, down } => {
                let names: Vec<String> = roles.iter().map(Role::to_string).collect();
                write!(
                    f,
                    "kill {} for {:.1} s",
                    names.join(" and "),
                    down.as_secs_f64()
                )
            }
            Self::Crash { service, down } => {
                write!(f, "crash {service} for {:.1} s", down.as_secs_f64())
            }
            Self::PauseRedis { pause } => write!(f, "pause redis {:.1} s", pause.as_secs_f64()),
            Self::KillMaster { key, down } => write!(
                f,
                "kill the master of {key} for {:.1} s",
                down.as_secs_f64()
            ),
            Self::PauseMaster { key, pause } => {
                write!(f, "pause the master of {key} {:.1} s", pause.as_secs_f64())
            }
            Self::MoveSlot { key } => write!(f, "move the slot of {key} to another master"),
        }
    }
}
