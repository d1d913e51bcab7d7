//! Runs a [`Topology`] as separate processes of the release binaries: start, wait until each
//! instance answers its own health check (as compose's `service_healthy` would), run the
//! clients as `docker compose run` would, scrape, and stop with SIGTERM.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::dashboard::{Series, add_scrape};
use crate::topology::{Instance, Topology, url_port};

/// How long every instance has to become healthy, and to exit after SIGTERM.
const PATIENCE: Duration = Duration::from_mins(1);

/// The running instances of a topology.
pub struct Running {
    processes: Vec<(Instance, Child)>,
    http: reqwest::Client,
}

impl Running {
    /// Starts every long-running instance, logging to `<run dir>/<instance>.log`.
    pub fn start(topology: &Topology, bin_dir: &Path, run_dir: &Path) -> anyhow::Result<Self> {
        let mut processes = Vec::new();
        for instance in topology.long_running() {
            let child = spawn(instance, bin_dir, run_dir)?;
            processes.push((instance.clone(), child));
        }
        Ok(Self {
            processes,
            http: reqwest::Client::new(),
        })
    }

    /// Polls each instance's health-check URLs on its own port until they answer 200.
    pub async fn wait_healthy(&mut self, topology: &Topology) -> anyhow::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        for (instance, child) in &mut self.processes {
            for url in topology.apps[&instance.service].health_urls() {
                let native = instance.listen_ports[&url_port(url)?];
                let path = url.splitn(4, '/').nth(3).unwrap_or_default();
                let url = format!("http://127.0.0.1:{native}/{path}");
                loop {
                    if let Some(status) = child.try_wait()? {
                        bail!("{} exited with {status}; see its log", instance.name);
                    }
                    let answer = self.http.get(&url).timeout(Duration::from_secs(2)).send();
                    if answer.await.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("{} not healthy at {url} within {PATIENCE:?}", instance.name);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        Ok(())
    }

    /// `host:port` of every running instance's metrics, by service.
    pub fn metrics_targets(&self) -> BTreeMap<String, Vec<String>> {
        let mut targets: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (instance, _) in &self.processes {
            for native in instance.listen_ports.values() {
                targets
                    .entry(instance.service.clone())
                    .or_default()
                    .push(format!("127.0.0.1:{native}"));
            }
        }
        targets
    }

    /// Every series the running instances export.
    pub async fn scrape(&self) -> anyhow::Result<Series> {
        let mut series = Series::new();
        for addresses in self.metrics_targets().values() {
            for address in addresses {
                let text = self
                    .http
                    .get(format!("http://{address}/metrics"))
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await?
                    .text()
                    .await?;
                add_scrape(&mut series, &text);
            }
        }
        Ok(series)
    }

    /// SIGTERM to every instance; the names of those that did not exit 0, with why.
    pub async fn stop(self) -> Vec<String> {
        for (_, child) in &self.processes {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let mut not_clean = Vec::new();
        for (instance, mut child) in self.processes {
            match wait_for_exit(&mut child, PATIENCE).await {
                Some(status) if status.success() => {}
                Some(status) => not_clean.push(format!("{}: {status}", instance.name)),
                None => {
                    let _ = child.kill();
                    not_clean.push(format!("{}: killed after {PATIENCE:?}", instance.name));
                }
            }
        }
        not_clean
    }
}

/// Runs a client instance to its end, as `docker compose run` would.
pub async fn run_client(instance: &Instance, bin_dir: &Path, run_dir: &Path) -> anyhow::Result<()> {
    let mut child = spawn(instance, bin_dir, run_dir)?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    if !status.success() {
        bail!(
            "{} exited with {status} (an invariant failed, or it could not run); see {}",
            instance.service,
            log_path(run_dir, instance).display()
        );
    }
    Ok(())
}

fn spawn(instance: &Instance, bin_dir: &Path, run_dir: &Path) -> anyhow::Result<Child> {
    let binary = bin_dir.join(&instance.command[0]);
    let log = File::create(log_path(run_dir, instance))?;
    Command::new(&binary)
        .args(&instance.command[1..])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&instance.environment)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} ({})", instance.name, binary.display()))
}

fn log_path(run_dir: &Path, instance: &Instance) -> PathBuf {
    run_dir.join(format!("{}.log", instance.name))
}

async fn wait_for_exit(child: &mut Child, patience: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
