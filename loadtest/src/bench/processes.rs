//! What the benchmark runs besides the stack's services, and what it reads of every process:
//! a release broker of its own and the hello-world ceiling as child processes, the pids of
//! the real services, a process's peak memory, and a wait for the machine to go quiet between
//! phases.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use tokio::process::{Child, Command};

use crate::cpu::{Meter, Watched};

/// A program the benchmark started, killed when dropped.
pub struct Tool {
    child: Child,
}

impl Tool {
    /// Starts `command`, its output appended to `log`, and waits until it listens on `port`.
    pub async fn start(mut command: Command, log: &Path, port: u16) -> anyhow::Result<Self> {
        let output = std::fs::File::create(log)?;
        let child = command
            .stdout(output.try_clone()?)
            .stderr(output)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting what logs to {}", log.display()))?;
        let listening = shared::poll::until(
            Duration::from_mins(1),
            Duration::from_millis(100),
            async || {
                tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()
                    .map(|_| ())
            },
        )
        .await;
        listening.with_context(|| format!("nothing listened on {port}; see {}", log.display()))?;
        Ok(Self { child })
    }

    /// A broker of the benchmark's own, a release build with fresh storage in `dir`: nothing of
    /// the tests' runs in it.
    pub async fn release_broker(dir: &Path, port: u16) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let script = std::fs::canonicalize("scripts/services")?;
        let mut command = Command::new(script);
        command
            .args(["run-broker", "release", &port.to_string()])
            .current_dir(dir)
            .env("RUST_LOG", "warn");
        Self::start(command, &dir.join("broker.log"), port).await
    }

    /// The HTTP ceiling: the workspace's hello-world on `port`.
    pub async fn hello_world(binary: &Path, log: &Path, port: u16) -> anyhow::Result<Self> {
        let mut command = Command::new(binary);
        command.arg(format!("127.0.0.1:{port}"));
        Self::start(command, log, port).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
    }
}

/// The pid of the Redis server behind `redis_url`, as it reports it.
pub async fn redis_pid(redis_url: &str) -> anyhow::Result<u32> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut connection)
        .await?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .context("Redis did not report its process_id")
}

/// Every PostgreSQL process (the postmaster and its backends), by their command name.
pub fn postgres_pids() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|name| name.trim() == "postgres")
        })
        .collect()
}

/// The process's peak resident memory (VmHWM), in MB; 0 where `/proc` cannot tell.
pub fn peak_rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| {
            value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| (kb / 1024.0 * 10.0).round() / 10.0)
}

/// Waits until `pids` together use less than 5% of a core (the broker flushing earlier work),
/// for at most half a minute.
pub async fn until_idle(pids: &[u32]) {
    let watched: Vec<Watched> = pids
        .iter()
        .map(|pid| Watched {
            name: pid.to_string(),
            pid: *pid,
        })
        .collect();
    for _ in 0..30 {
        let meter = Meter::start(&watched);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let spent: Duration = meter
            .stop()
            .into_iter()
            .filter(|(name, _)| name != crate::cpu::LOADTEST)
            .map(|(_, spent)| spent)
            .sum();
        if spent < Duration::from_millis(50) {
            return;
        }
    }
}
