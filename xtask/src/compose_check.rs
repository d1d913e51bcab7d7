//! `cargo xtask compose-check`: docker-compose.yml, the Dockerfile, the Prometheus config
//! and the Grafana dashboard checked against the code, then the compose topology run natively.
//!
//! Static checks (also unit tests below, on the real files and on broken copies of them):
//! every `${VARIABLE}` is documented in `.env.example`; every build target is a Dockerfile
//! stage and every command a binary the image ships; every variable a service is given is one
//! its binary reads; every port in a health check, a port mapping, a URL or a scrape target is
//! one the service listens on; every long-running service is scraped.
//!
//! The native run: each application service's command and environment exactly as written,
//! its replicas as separate processes, `docker compose run loadtest`'s own command driving a
//! flash crowd with every invariant checked; then every dashboard query must name a metric,
//! label value and grouping label the running services export, and every process must exit 0
//! on SIGTERM.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail, ensure};

use crate::binaries;
use crate::compose::{self, Compose};
use crate::dashboard::{self, Dashboard};
use crate::native::{self, Running};
use crate::render::Recorder;
use crate::topology::{Host, PrometheusConfig, Topology};

/// The files the check reads, by their place in the repository.
pub struct Files {
    pub compose: String,
    pub env_example: String,
    pub dockerfile: String,
    pub prometheus: PrometheusConfig,
    pub dashboard: Dashboard,
}

impl Files {
    /// Reads the files, and refuses a Grafana provisioning file that is not YAML.
    pub fn read(root: &Path) -> anyhow::Result<Self> {
        let read = |path: &str| {
            std::fs::read_to_string(root.join(path)).with_context(|| format!("reading {path}"))
        };
        let provisioning = root.join("deploy/grafana/provisioning");
        for kind in std::fs::read_dir(&provisioning)? {
            for file in std::fs::read_dir(kind?.path())? {
                let path = file?.path();
                let text = std::fs::read_to_string(&path)?;
                serde_norway::from_str::<serde_norway::Value>(&text)
                    .with_context(|| format!("{} is not YAML", path.display()))?;
            }
        }
        Ok(Self {
            compose: read("docker-compose.yml")?,
            env_example: read(".env.example")?,
            dockerfile: read("Dockerfile")?,
            prometheus: serde_norway::from_str(&read("deploy/prometheus/prometheus.yml")?)?,
            dashboard: serde_json::from_str(&read("deploy/grafana/dashboards/seckill.json")?)?,
        })
    }
}

/// Every check that needs no running process; the topology, mapped onto `host`.
pub fn check_static(
    files: &Files,
    compose: &Compose,
    workspace: &[(String, Vec<String>)],
    host: &mut Host,
) -> anyhow::Result<Topology> {
    let undocumented: Vec<String> = compose::variables(&files.compose)
        .into_iter()
        .filter(|name| {
            !files.env_example.lines().any(|line| {
                line.trim_start_matches(['#', ' '])
                    .strip_prefix(name.as_str())
                    .is_some_and(|rest| rest.starts_with('='))
            })
        })
        .collect();
    ensure!(
        undocumented.is_empty(),
        ".env.example does not document {undocumented:?}"
    );
    let topology = Topology::new(compose, host)?;
    topology.check_dockerfile(&files.dockerfile, workspace)?;
    topology.check_ports()?;
    topology.check_prometheus(&files.prometheus)?;
    dashboard::needs(&files.dashboard)?;
    Ok(topology)
}

/// What the native run needs besides the files.
pub struct NativeRun {
    /// Where the release binaries are.
    pub bin_dir: PathBuf,
    /// Where logs and volumes go.
    pub run_dir: PathBuf,
    /// Draw the dashboard's panels to this SVG as well.
    pub render: Option<PathBuf>,
}

/// The whole check: static, then native.
pub async fn check(root: &Path, run: &NativeRun) -> anyhow::Result<()> {
    let files = Files::read(root)?;
    // Compose interpolates from the caller's environment; so does this run.
    let compose = compose::parse(&files.compose, &|name| std::env::var(name).ok())?;
    let workspace = binaries::workspace_binaries()?;
    let mut host = Host {
        infra: infra_from_environment()?,
        run_dir: run.run_dir.clone(),
        free_port: Box::new(free_port),
    };
    let topology = check_static(&files, &compose, &workspace, &mut host)?;
    eprintln!("compose-check: the static checks pass");
    let needs = dashboard::needs(&files.dashboard)?;

    let names: Vec<&str> = topology.long_running().map(|i| i.name.as_str()).collect();
    eprintln!("compose-check: starting {}", names.join(", "));
    let mut running = Running::start(&topology, &run.bin_dir, &run.run_dir)?;
    let outcome = drive(&topology, &mut running, run, &files.dashboard).await;
    let not_clean = running.stop().await;
    let exported = outcome?;

    let problems = dashboard::unanswered(&needs, &exported);
    ensure!(
        problems.is_empty(),
        "dashboard queries the services cannot answer: {problems:?}"
    );
    ensure!(
        not_clean.is_empty(),
        "not a clean exit on SIGTERM: {not_clean:?}"
    );
    let metrics: std::collections::BTreeSet<&str> =
        needs.iter().map(|n| n.metric.as_str()).collect();
    println!(
        "{}",
        serde_json::json!({
            "instances": topology.instances.iter().map(|i| &i.name).collect::<Vec<_>>(),
            "dashboard_metrics": metrics,
            "violations": [],
        })
    );
    Ok(())
}

/// With the instances running: the clients, the scrape, and the drawing if asked.
async fn drive(
    topology: &Topology,
    running: &mut Running,
    run: &NativeRun,
    dashboard: &Dashboard,
) -> anyhow::Result<dashboard::Series> {
    running.wait_healthy(topology).await?;
    let recorder = match &run.render {
        Some(_) => {
            let targets = running.metrics_targets();
            let mut recorder = Recorder::start(&targets, &run.run_dir, free_port()?)?;
            recorder
                .wait_until_scraping(targets.values().map(Vec::len).sum())
                .await?;
            tokio::time::sleep(Duration::from_secs(3)).await; // a baseline before the crowd
            Some(recorder)
        }
        None => None,
    };
    for client in topology.clients() {
        eprintln!("compose-check: running {} as compose would", client.service);
        native::run_client(client, &run.bin_dir, &run.run_dir).await?;
    }
    let exported = running.scrape().await?;
    if let (Some(recorder), Some(path)) = (recorder, &run.render) {
        tokio::time::sleep(Duration::from_secs(20)).await; // the drain and the settling gauges
        let drawn = recorder.draw(dashboard, path).await;
        recorder.stop();
        drawn?;
        eprintln!(
            "compose-check: dashboard panels drawn to {}",
            path.display()
        );
    }
    Ok(exported)
}

/// `host:port` of Redis, Kafka and PostgreSQL from `scripts/services env`.
fn infra_from_environment() -> anyhow::Result<BTreeMap<String, String>> {
    let var = |name: &str| {
        std::env::var(name)
            .with_context(|| format!("{name} is not set (eval \"$(scripts/services env)\")"))
    };
    let host_port = |url: &str, default_port: u16| -> anyhow::Result<String> {
        let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = after_scheme.split('/').next().unwrap_or_default();
        let host = authority.rsplit('@').next().unwrap_or_default();
        if host.is_empty() {
            bail!("no host in {url}");
        }
        Ok(if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:{default_port}")
        })
    };
    let kafka = var("KAFKA_BROKERS")?;
    Ok(BTreeMap::from([
        ("redis".to_owned(), host_port(&var("REDIS_URL")?, 6379)?),
        (
            "kafka".to_owned(),
            kafka.split(',').next().unwrap_or_default().to_owned(),
        ),
        (
            "postgres".to_owned(),
            host_port(&var("DATABASE_URL")?, 5432)?,
        ),
    ]))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[cfg(test)]
mod tests {
    //! The checks must refuse the mistakes they exist for: each case breaks one thing in the
    //! real files and expects the refusal by name.

    use super::*;
    use crate::compose::Service;

    struct Fixture {
        files: Files,
        compose: Compose,
        workspace: Vec<(String, Vec<String>)>,
    }

    impl Fixture {
        fn new() -> Self {
            let files = Files::read(&crate::workspace_root()).unwrap();
            let compose = compose::parse(&files.compose, &|_| None).unwrap();
            Self {
                files,
                compose,
                workspace: binaries::workspace_binaries().unwrap(),
            }
        }

        fn check(&self) -> anyhow::Result<Topology> {
            let mut next_port = 20_000;
            let mut host = Host {
                infra: BTreeMap::from([
                    ("redis".into(), "127.0.0.1:6379".into()),
                    ("kafka".into(), "127.0.0.1:9092".into()),
                    ("postgres".into(), "127.0.0.1:5432".into()),
                ]),
                run_dir: std::env::temp_dir().join("xtask-compose-check-test"),
                free_port: Box::new(move || {
                    next_port += 1;
                    Ok(next_port)
                }),
            };
            check_static(&self.files, &self.compose, &self.workspace, &mut host)
        }

        fn service(&mut self, name: &str) -> &mut Service {
            self.compose.services.get_mut(name).unwrap()
        }

        fn refused(&self, expected: &str) {
            let error = self.check().err().map(|e| format!("{e:#}"));
            assert!(
                error.as_deref().is_some_and(|e| e.contains(expected)),
                "expected a refusal naming {expected:?}, got {error:?}"
            );
        }
    }

    #[test]
    fn the_real_files_pass() {
        let topology = Fixture::new().check().unwrap();
        assert!(topology.clients().any(|i| i.service == "loadtest"));
        assert_eq!(
            topology
                .instances
                .iter()
                .filter(|i| i.service == "order-worker")
                .count(),
            2
        );
    }

    /// One mistake in the real files, and the words its refusal must contain.
    type Mistake = (fn(&mut Fixture), &'static str);

    #[test]
    fn each_mistake_is_refused_by_name() {
        let mistakes: [Mistake; 10] = [
            (
                |f| {
                    let environment = &mut f.service("order-worker").environment;
                    let url = environment.remove("DATABASE_URL").unwrap();
                    environment.insert("DATABASE_URI".into(), url);
                },
                "DATABASE_URI is not a variable",
            ),
            (
                |f| {
                    let health = f.service("stats-worker").healthcheck.as_mut().unwrap();
                    health.test = vec![
                        "CMD".into(),
                        "curl".into(),
                        "http://127.0.0.1:9999/healthz".into(),
                    ];
                },
                "health check asks port 9999",
            ),
            (
                |f| {
                    for arg in f.service("loadtest").command.as_mut().unwrap() {
                        *arg = arg.replace("gateway:8080", "gateway:8000");
                    }
                },
                "gateway:8000, but gateway listens on",
            ),
            (
                |f| {
                    let redis = "redis://redis:6380".into();
                    f.service("gateway")
                        .environment
                        .insert("REDIS_URL".into(), redis);
                },
                "redis:6380, but redis listens on 6379",
            ),
            (
                |f| f.service("gateway").ports = vec!["8080:8081".into()],
                "publishes container port 8081",
            ),
            (
                |f| {
                    let first_job = &mut f.files.prometheus.scrape_configs[0];
                    first_job.static_configs[0].targets = vec!["gateway:9999".into()];
                },
                "scrapes gateway:9999",
            ),
            (
                |f| {
                    f.files
                        .prometheus
                        .scrape_configs
                        .retain(|job| job.job_name != "sms-worker");
                },
                "scrapes no target of [\"sms-worker\"]",
            ),
            (
                |f| f.service("stats-worker").build.as_mut().unwrap().target = Some("stats".into()),
                "build target Some(\"stats\") is not a stage",
            ),
            (
                |f| {
                    let excluded = "--exclude xtask --exclude sms-worker";
                    f.files.dockerfile = f.files.dockerfile.replace("--exclude xtask", excluded);
                },
                "command Some(\"sms-worker\") is not a binary the Dockerfile ships",
            ),
            (
                |f| {
                    let renamed = "RATE_LIMIT_PER_USER=";
                    f.files.env_example = f
                        .files
                        .env_example
                        .replace("RATE_LIMIT_USER_PER_SEC=", renamed);
                },
                ".env.example does not document [\"RATE_LIMIT_USER_PER_SEC\"]",
            ),
        ];
        for (break_it, expected) in mistakes {
            let mut fixture = Fixture::new();
            break_it(&mut fixture);
            fixture.refused(expected);
        }
    }

    #[test]
    fn a_numeric_password_is_not_taken_for_a_port() {
        let mut fixture = Fixture::new();
        fixture.service("order-worker").environment.insert(
            "DATABASE_URL".into(),
            "postgres://postgres:12345@postgres:5432/seckill".into(),
        );
        let topology = fixture.check().unwrap();
        let worker = topology.first("order-worker").unwrap();
        assert_eq!(
            worker.environment["DATABASE_URL"],
            "postgres://postgres:12345@127.0.0.1:5432/seckill"
        );
    }

    #[test]
    fn listen_addresses_and_service_urls_map_onto_loopback_ports() {
        let topology = Fixture::new().check().unwrap();
        let gateway = topology.first("gateway").unwrap();
        let native = gateway.listen_ports[&8080];
        assert_eq!(
            gateway.environment["GATEWAY_LISTEN_ADDR"],
            format!("127.0.0.1:{native}")
        );
        let loadtest = topology.first("loadtest").unwrap();
        assert!(
            loadtest
                .command
                .contains(&format!("--gateway=http://127.0.0.1:{native}")),
            "{:?}",
            loadtest.command
        );
    }
}
