//! The real services a fault strikes: crashed and started again through `scripts/services`
//! (the one script that starts and stops them), and Redis paused through its own command.

use std::fmt;
use std::time::Duration;

use anyhow::Context;

/// The script that owns the services; proofs run from the checkout's root.
const SERVICES_SCRIPT: &str = "scripts/services";

/// A service the stack depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Redis,
    Broker,
    Postgres,
}

impl Service {
    /// Its name to `scripts/services`.
    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Broker => "kafka",
            Self::Postgres => "postgres",
        }
    }

    /// SIGKILL (PostgreSQL: its immediate stop, no checkpoint). Fails when the service was not
    /// started by this checkout: a fault that cannot strike must not pass for one that did.
    pub async fn crash(self) -> anyhow::Result<()> {
        crash(self.name()).await
    }

    /// Starts it again and waits until it answers.
    pub async fn start(self) -> anyhow::Result<()> {
        start(self.name()).await
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// SIGKILLs the service `scripts/services` knows as `name` (PostgreSQL: its immediate stop).
pub async fn crash(name: &str) -> anyhow::Result<()> {
    services(&["crash", name]).await
}

/// Starts the service `scripts/services` knows as `name` again, and waits until it answers.
pub async fn start(name: &str) -> anyhow::Result<()> {
    services(&["start", name]).await
}

async fn services(args: &[&str]) -> anyhow::Result<()> {
    let status = tokio::process::Command::new(SERVICES_SCRIPT)
        .args(args)
        .status()
        .await
        .with_context(|| format!("running {SERVICES_SCRIPT}"))?;
    anyhow::ensure!(
        status.success(),
        "{SERVICES_SCRIPT} {} failed: {status}",
        args.join(" ")
    );
    Ok(())
}

/// Every Redis client waits `pause`: past the deadline of a Redis call and of a request.
pub async fn pause_redis(redis_url: &str, pause: Duration) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(pause.as_millis() as u64)
        .arg("ALL")
        .query_async::<()>(&mut connection)
        .await?;
    Ok(())
}

/// Every write fsynced before Redis answers, as the compose stack runs it, whatever started this
/// Redis: a lock answered 202 survives a crash.
pub async fn make_redis_durable(redis_url: &str) -> anyhow::Result<()> {
    set_redis_fsync(redis_url, "always").await
}

/// Sets when Redis fsyncs its append-only log: `always` (before every answer) or `everysec`.
pub async fn set_redis_fsync(redis_url: &str, policy: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("appendfsync")
        .arg(policy)
        .query_async::<()>(&mut connection)
        .await?;
    Ok(())
}
