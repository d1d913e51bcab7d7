//! The services of a proof run, each a separate release process as an orchestrator runs it:
//! two gateways, two order workers, an SMS worker and a stats worker. Every process of a stack
//! shares one namespace (its own Redis key prefix and Kafka topics), so runs and scenarios never
//! meet; a process is killed with SIGKILL and started again as it was first started, as a
//! fault would; at the end each is stopped with SIGTERM, and a graceful stop exits 0.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

/// One process of the stack, by the part it plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// The `n`th gateway (1 or 2): the crowd's attempts go round-robin over both.
    Gateway(u16),
    /// The `n`th order worker (1 or 2); whichever holds the lease runs the reconciler.
    OrderWorker(u16),
    SmsWorker,
    StatsWorker,
}

impl Role {
    /// Every process of a stack, in the order they start.
    pub const ALL: [Self; 6] = [
        Self::Gateway(1),
        Self::Gateway(2),
        Self::OrderWorker(1),
        Self::OrderWorker(2),
        Self::SmsWorker,
        Self::StatsWorker,
    ];

    /// The consumers: every process but the gateways.
    pub const WORKERS: [Self; 4] = [
        Self::OrderWorker(1),
        Self::OrderWorker(2),
        Self::SmsWorker,
        Self::StatsWorker,
    ];

    /// Its binary's name, which is also a worker's consumer group (`CONSUMER_GROUP`'s default).
    pub fn binary(self) -> &'static str {
        match self {
            Self::Gateway(_) => "gateway",
            Self::OrderWorker(_) => "order-worker",
            Self::SmsWorker => "sms-worker",
            Self::StatsWorker => "stats-worker",
        }
    }

    /// The port its HTTP listener takes: the API for a gateway, health and metrics for a worker.
    fn port(self) -> u16 {
        match self {
            Self::Gateway(n) => 18079 + n,
            Self::OrderWorker(n) => 19100 + n,
            Self::SmsWorker => 19103,
            Self::StatsWorker => 19104,
        }
    }

    /// The base URL of its HTTP listener.
    pub fn url(self) -> String {
        format!("http://127.0.0.1:{}", self.port())
    }

    /// Where its Prometheus metrics are served (a gateway's on an address of their own).
    pub fn metrics_url(self) -> String {
        match self {
            Self::Gateway(n) => format!("http://127.0.0.1:{}/metrics", 19179 + n),
            _ => format!("{}/metrics", self.url()),
        }
    }

    /// What answers once it serves: a gateway's readiness (its stores reachable), a worker's
    /// liveness.
    fn ready_url(self) -> String {
        match self {
            Self::Gateway(_) => format!("{}/readyz", self.url()),
            _ => format!("{}/healthz", self.url()),
        }
    }

    /// The settings that place it on its ports.
    fn listen(self) -> Vec<(String, String)> {
        let address = format!("127.0.0.1:{}", self.port());
        match self {
            Self::Gateway(n) => vec![
                ("GATEWAY_LISTEN_ADDR".into(), address),
                ("METRICS_ADDR".into(), format!("127.0.0.1:{}", 19179 + n)),
            ],
            _ => vec![("HTTP_ADDR".into(), address)],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gateway(n) => write!(f, "gateway-{n}"),
            Self::OrderWorker(n) => write!(f, "order-worker-{n}"),
            _ => f.write_str(self.binary()),
        }
    }
}

/// Settings given to a process, `NAME=value` as its environment.
pub type Settings = Vec<(String, String)>;

/// How long a process may take to stop after SIGTERM before it is killed (and reported).
const STOP_PATIENCE: Duration = Duration::from_secs(15);
/// How long a process may take to serve once started.
const START_PATIENCE: Duration = Duration::from_secs(30);

/// How a process of the stack ended when it was stopped.
#[derive(Debug)]
pub enum Stopped {
    /// It exited by itself after SIGTERM, with this status.
    Exited(ExitStatus),
    /// It had not exited `STOP_PATIENCE` after SIGTERM, and was killed.
    Hung,
}

/// The processes of one namespace.
pub struct Stack {
    bin_dir: PathBuf,
    /// Where each process appends its output: `<logs>-<role>.log`.
    logs: PathBuf,
    /// Given to every process: the services, the namespace, the run's secrets, the proof's
    /// settings.
    common: Settings,
    /// Each role's own settings, kept to start it again as it was first started.
    own: BTreeMap<Role, Settings>,
    running: BTreeMap<Role, Child>,
}

impl Stack {
    /// A stack whose processes are the binaries in `bin_dir`, logging to `<logs>-<role>.log`.
    pub fn new(bin_dir: &Path, logs: &Path, common: Settings) -> Self {
        Self {
            bin_dir: bin_dir.to_owned(),
            logs: logs.to_owned(),
            common,
            own: BTreeMap::new(),
            running: BTreeMap::new(),
        }
    }

    /// Starts every role, with the settings of `own` where it names them, and waits until
    /// each serves.
    pub async fn start_all(&mut self, mut own: BTreeMap<Role, Settings>) -> anyhow::Result<()> {
        for role in Role::ALL {
            self.own.insert(role, own.remove(&role).unwrap_or_default());
            self.spawn(role)?;
        }
        for role in Role::ALL {
            serving(role).await?;
        }
        Ok(())
    }

    /// Starts `role` alone, with its own `settings`, and waits until it serves.
    pub async fn start(&mut self, role: Role, settings: Settings) -> anyhow::Result<()> {
        self.own.insert(role, settings);
        self.spawn(role)?;
        serving(role).await
    }

    /// The process id of `role`, while it runs.
    pub fn pid(&self, role: Role) -> Option<u32> {
        self.running.get(&role)?.id()
    }

    /// Starts `role` again as it was first started (after [`Stack::kill`]); [`serving`] waits
    /// until it serves, without holding the stack.
    pub fn restart(&mut self, role: Role) -> anyhow::Result<()> {
        self.spawn(role)
    }

    /// Starts every role whose process is gone (a restart that failed, a process that exited
    /// by itself), and waits until each serves.
    pub async fn revive(&mut self) -> anyhow::Result<()> {
        let mut gone = Vec::new();
        for role in Role::ALL {
            let exited = match self.running.get_mut(&role) {
                Some(child) => child.try_wait()?.is_some(),
                None => true,
            };
            if exited {
                self.running.remove(&role);
                gone.push(role);
            }
        }
        for role in &gone {
            eprintln!("starting {role} again: its process was gone");
            self.spawn(*role)?;
        }
        for role in gone {
            serving(role).await?;
        }
        Ok(())
    }

    /// SIGKILL, as a crash or an OOM killer would: no shutdown, no flush.
    pub async fn kill(&mut self, role: Role) -> anyhow::Result<()> {
        let mut child = self
            .running
            .remove(&role)
            .with_context(|| format!("{role} is not running"))?;
        child.kill().await?;
        Ok(())
    }

    /// SIGTERM to every process, then how each one ended.
    pub async fn stop(&mut self) -> Vec<(Role, Stopped)> {
        for child in self.running.values() {
            if let Some(pid) = child
                .id()
                .and_then(|id| rustix::process::Pid::from_raw(id as i32))
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
        }
        let mut stopped = Vec::new();
        for (role, mut child) in std::mem::take(&mut self.running) {
            let ended =
                if let Ok(Ok(status)) = tokio::time::timeout(STOP_PATIENCE, child.wait()).await {
                    Stopped::Exited(status)
                } else {
                    let _ = child.kill().await;
                    Stopped::Hung
                };
            stopped.push((role, ended));
        }
        stopped
    }

    fn spawn(&mut self, role: Role) -> anyhow::Result<()> {
        let log_path = PathBuf::from(format!("{}-{role}.log", self.logs.display()));
        // Appended: a process started again keeps its predecessor's log above its own.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let own = self.own.get(&role).map(Vec::as_slice).unwrap_or_default();
        let child = Command::new(self.bin_dir.join(role.binary()))
            .envs(self.common.iter().cloned())
            .envs(role.listen())
            .envs(own.iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {role} from {}", self.bin_dir.display()))?;
        self.running.insert(role, child);
        Ok(())
    }
}

/// Waits until `role` serves (its readiness or liveness answers 2xx).
pub async fn serving(role: Role) -> anyhow::Result<()> {
    let url = role.ready_url();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    let served = shared::poll::until(START_PATIENCE, Duration::from_millis(100), async || {
        let answer = http.get(&url).send().await.ok()?;
        answer.status().is_success().then_some(())
    })
    .await;
    served.with_context(|| {
        format!("{role} did not serve {url} within {START_PATIENCE:?}; see its log")
    })
}
