//! The compose file's application services as this machine runs them, and the static checks
//! that the compose file, the Dockerfile and the Prometheus config agree with the code.
//!
//! Each replica of a service built here becomes an [`Instance`] with its command and
//! environment mapped onto this machine:
//! - `redis:6379`, `kafka:9092`, `postgres:5432` → the services of `scripts/services`;
//! - a listen address `0.0.0.0:<port>` → a free loopback port per replica (they would collide);
//! - `<app service>:<port>` (the load test's `http://gateway:8080`) → that replica's port;
//! - a volume's mount path → a directory of this run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use anyhow::{Context, bail, ensure};
use regex::Regex;
use serde::Deserialize;

use crate::binaries;
use crate::compose::{Compose, Service};

/// Where each infrastructure service listens inside compose's network (its image's port).
pub const INFRA_PORTS: [(&str, u16); 3] = [("redis", 6379), ("kafka", 9092), ("postgres", 5432)];
/// Images that are neither built here nor infrastructure the services talk to.
const AUXILIARY: [&str; 3] = ["kafka-init", "prometheus", "grafana"];

static LISTEN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^0\.0\.0\.0:(\d+)$").expect("a valid pattern"));
static SERVICE_ADDRESS: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"([a-z][a-z0-9-]*):(\d+)").expect("a valid pattern"));
static URL_PORT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r":(\d+)/").expect("a valid pattern"));

/// One replica of an application service, mapped onto this machine.
#[derive(Debug, Clone)]
pub struct Instance {
    /// `<service>-<replica>`.
    pub name: String,
    pub service: String,
    /// Container port → loopback port of this replica.
    pub listen_ports: BTreeMap<u16, u16>,
    /// The binary and its arguments, mapped.
    pub command: Vec<String>,
    /// The environment, mapped.
    pub environment: BTreeMap<String, String>,
}

/// The application services of a compose file, as this machine runs them.
pub struct Topology {
    pub apps: BTreeMap<String, Service>,
    pub instances: Vec<Instance>,
}

/// How the compose names of infrastructure and volumes map onto this machine.
pub struct Host {
    /// `host:port` of each infrastructure service.
    pub infra: BTreeMap<String, String>,
    /// Where volumes live.
    pub run_dir: PathBuf,
    /// Hands out loopback ports for listen addresses.
    pub free_port: Box<dyn FnMut() -> anyhow::Result<u16>>,
}

impl Topology {
    /// Every replica of every service built here, mapped; refuses services it cannot place,
    /// variables a binary does not read, and addresses nobody listens on.
    pub fn new(compose: &Compose, host: &mut Host) -> anyhow::Result<Self> {
        let apps: BTreeMap<String, Service> = compose
            .services
            .iter()
            .filter(|(_, service)| service.is_built_here())
            .map(|(name, service)| (name.clone(), service.clone()))
            .collect();
        for name in compose.services.keys() {
            ensure!(
                apps.contains_key(name)
                    || infra_port(name).is_some()
                    || AUXILIARY.contains(&name.as_str()),
                "service {name:?} is neither built here nor known infrastructure"
            );
        }
        let mut instances = Vec::new();
        for (name, service) in &apps {
            for replica in 1..=service.replicas() {
                let mut listen_ports = BTreeMap::new();
                for value in service.environment_text().values() {
                    if let Some(port) = listen_port(value) {
                        listen_ports.insert(port, (host.free_port)()?);
                    }
                }
                instances.push(Instance {
                    name: format!("{name}-{replica}"),
                    service: name.clone(),
                    listen_ports,
                    command: Vec::new(),
                    environment: BTreeMap::new(),
                });
            }
        }
        let mut topology = Self { apps, instances };
        topology.map_commands_and_environments(host)?;
        Ok(topology)
    }

    /// The container ports `service` listens on.
    pub fn listen_ports_of(&self, service: &str) -> BTreeSet<u16> {
        self.first(service)
            .map(|instance| instance.listen_ports.keys().copied().collect())
            .unwrap_or_default()
    }

    pub fn first(&self, service: &str) -> Option<&Instance> {
        self.instances.iter().find(|i| i.service == service)
    }

    pub fn long_running(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| !self.apps[&i.service].is_client())
    }

    pub fn clients(&self) -> impl Iterator<Item = &Instance> {
        self.instances
            .iter()
            .filter(|i| self.apps[&i.service].is_client())
    }

    fn map_commands_and_environments(&mut self, host: &Host) -> anyhow::Result<()> {
        let mapped: Vec<(Vec<String>, BTreeMap<String, String>)> = self
            .instances
            .iter()
            .map(|instance| {
                let service = &self.apps[&instance.service];
                let command = service
                    .command
                    .as_ref()
                    .filter(|command| !command.is_empty())
                    .with_context(|| format!("{} has no command", instance.service))?;
                let read = binaries::variables_read_by(&command[0], &command[1..])
                    .with_context(|| instance.service.clone())?;
                let environment = service.environment_text();
                for name in environment.keys() {
                    ensure!(
                        read.contains(name),
                        "{}: {name} is not a variable {} reads",
                        instance.service,
                        command[0]
                    );
                }
                let arguments: anyhow::Result<Vec<String>> = command[1..]
                    .iter()
                    .map(|arg| self.map_value(instance, service, arg, host))
                    .collect();
                let mut mapped_command = vec![command[0].clone()];
                mapped_command.extend(arguments?);
                let mapped_environment = environment
                    .iter()
                    .map(|(name, value)| {
                        Ok((
                            name.clone(),
                            self.map_value(instance, service, value, host)?,
                        ))
                    })
                    .collect::<anyhow::Result<_>>()?;
                Ok((mapped_command, mapped_environment))
            })
            .collect::<anyhow::Result<_>>()?;
        for (instance, (command, environment)) in self.instances.iter_mut().zip(mapped) {
            instance.command = command;
            instance.environment = environment;
        }
        Ok(())
    }

    /// A compose value as this machine needs it (see the module docs).
    fn map_value(
        &self,
        instance: &Instance,
        service: &Service,
        value: &str,
        host: &Host,
    ) -> anyhow::Result<String> {
        if let Some(port) = listen_port(value) {
            return Ok(format!("127.0.0.1:{}", instance.listen_ports[&port]));
        }
        let mut mapped = String::new();
        let mut rest = 0;
        for found in SERVICE_ADDRESS.captures_iter(value) {
            let whole = found.get(0).expect("the whole match");
            let (name, port) = (&found[1], &found[2]);
            // `user:password@host`: a numeric password is not a port.
            let followed_by_at = value[whole.end()..].starts_with('@');
            let preceded_by_word = value[..whole.start()]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
            if followed_by_at || preceded_by_word {
                continue;
            }
            let port: u16 = port.parse().context("a port number")?;
            let target = if let Some(expected) = infra_port(name) {
                ensure!(
                    port == expected,
                    "{}: {name}:{port}, but {name} listens on {expected}",
                    instance.service
                );
                host.infra[name].clone()
            } else if let Some(target) = self.first(name) {
                let native = target.listen_ports.get(&port).with_context(|| {
                    format!(
                        "{}: {name}:{port}, but {name} listens on {:?}",
                        instance.service,
                        target.listen_ports.keys().collect::<Vec<_>>()
                    )
                })?;
                format!("127.0.0.1:{native}")
            } else {
                continue;
            };
            mapped.push_str(&value[rest..whole.start()]);
            mapped.push_str(&target);
            rest = whole.end();
        }
        mapped.push_str(&value[rest..]);
        for volume in &service.volumes {
            let (source, target) = volume_mount(volume)?;
            let local = host.run_dir.join(source);
            if let Some(replaced) = replace_path_prefix(&mapped, target, &local) {
                std::fs::create_dir_all(&local)?;
                mapped = replaced;
            }
        }
        Ok(mapped)
    }

    /// Every build target is a stage of the Dockerfile, and every command a binary its build
    /// ships.
    pub fn check_dockerfile(
        &self,
        dockerfile: &str,
        workspace: &[(String, Vec<String>)],
    ) -> anyhow::Result<()> {
        let stages = binaries::dockerfile_stages(dockerfile);
        let shipped = binaries::shipped_binaries(dockerfile, workspace);
        for (name, service) in &self.apps {
            let target = service.build.as_ref().and_then(|b| b.target.clone());
            ensure!(
                target.as_ref().is_some_and(|t| stages.contains(t)),
                "{name}: build target {target:?} is not a stage of the Dockerfile"
            );
            let binary = service.command.as_ref().and_then(|c| c.first());
            ensure!(
                binary.is_some_and(|b| shipped.contains(b)),
                "{name}: command {binary:?} is not a binary the Dockerfile ships"
            );
        }
        Ok(())
    }

    /// Health checks and published ports name a port the service listens on.
    pub fn check_ports(&self) -> anyhow::Result<()> {
        for (name, service) in &self.apps {
            let listening = self.listen_ports_of(name);
            for mapping in &service.ports {
                let container_port: u16 = mapping
                    .rsplit(':')
                    .next()
                    .and_then(|port| port.split('/').next())
                    .and_then(|port| port.parse().ok())
                    .with_context(|| format!("{name}: port mapping {mapping:?}"))?;
                ensure!(
                    listening.contains(&container_port),
                    "{name}: publishes container port {container_port}, listens on {listening:?}"
                );
            }
            for url in service.health_urls() {
                let port = url_port(url)?;
                ensure!(
                    listening.contains(&port),
                    "{name}: health check asks port {port}, listens on {listening:?}"
                );
            }
        }
        Ok(())
    }

    /// Every scrape target is a service's listen port, and every long-running service is
    /// scraped.
    pub fn check_prometheus(&self, prometheus: &PrometheusConfig) -> anyhow::Result<()> {
        let mut scraped = BTreeSet::new();
        for job in &prometheus.scrape_configs {
            for target in job.targets() {
                let (host, port) = target
                    .rsplit_once(':')
                    .with_context(|| format!("scrape target {target}"))?;
                let port: u16 = port.parse()?;
                ensure!(
                    self.apps.contains_key(host) && self.listen_ports_of(host).contains(&port),
                    "Prometheus job {} scrapes {target}, which no service listens on",
                    job.job_name
                );
                scraped.insert(host.to_owned());
            }
        }
        let unscraped: Vec<&String> = self
            .apps
            .iter()
            .filter(|(name, service)| !service.is_client() && !scraped.contains(*name))
            .map(|(name, _)| name)
            .collect();
        if !unscraped.is_empty() {
            bail!("Prometheus scrapes no target of {unscraped:?}");
        }
        Ok(())
    }
}

/// The parts of `prometheus.yml` the checks read.
#[derive(Debug, Clone, Deserialize)]
pub struct PrometheusConfig {
    pub scrape_configs: Vec<ScrapeJob>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ScrapeJob {
    pub job_name: String,
    #[serde(default)]
    pub static_configs: Vec<StaticTargets>,
    #[serde(default)]
    pub dns_sd_configs: Vec<DnsTargets>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StaticTargets {
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DnsTargets {
    pub names: Vec<String>,
    pub port: u16,
}

impl ScrapeJob {
    /// `host:port` of every target, static or found by DNS.
    pub fn targets(&self) -> Vec<String> {
        let fixed = self.static_configs.iter().flat_map(|c| c.targets.clone());
        let discovered = self
            .dns_sd_configs
            .iter()
            .flat_map(|c| c.names.iter().map(move |name| format!("{name}:{}", c.port)));
        fixed.chain(discovered).collect()
    }
}

fn infra_port(name: &str) -> Option<u16> {
    INFRA_PORTS
        .iter()
        .find(|(infra, _)| *infra == name)
        .map(|(_, port)| *port)
}

fn listen_port(value: &str) -> Option<u16> {
    LISTEN
        .captures(value)
        .and_then(|found| found[1].parse().ok())
}

pub fn url_port(url: &str) -> anyhow::Result<u16> {
    URL_PORT
        .captures(url)
        .and_then(|found| found[1].parse().ok())
        .with_context(|| format!("no port in {url}"))
}

/// (source name, mount path) of a volume `source:/path[:mode]`.
fn volume_mount(volume: &str) -> anyhow::Result<(&str, &str)> {
    let mut parts = volume.split(':');
    match (parts.next(), parts.next()) {
        (Some(source), Some(target)) => {
            let source = Path::new(source)
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or(source);
            Ok((source, target))
        }
        _ => bail!("volume {volume:?} is not source:/path"),
    }
}

/// `value` with the path `prefix` (a whole path component sequence) replaced by `local`, or
/// `None` when it does not occur.
fn replace_path_prefix(value: &str, prefix: &str, local: &Path) -> Option<String> {
    let start = value.match_indices(prefix).find_map(|(at, _)| {
        let before = value[..at].chars().next_back();
        let after = value[at + prefix.len()..].chars().next();
        let starts_path = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '/'));
        let ends_component = after.is_none_or(|c| c == '/');
        (starts_path && ends_component).then_some(at)
    })?;
    Some(format!(
        "{}{}{}",
        &value[..start],
        local.display(),
        &value[start + prefix.len()..]
    ))
}
