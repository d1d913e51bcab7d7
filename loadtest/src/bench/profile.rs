//! Profiles the gateway with perf while the benchmark's crowds run, and draws what it spends
//! its CPU on as flamegraphs (inferno): `docs/flamegraph-purchase.svg` (every attempt a new
//! buyer: the stock lock and the publish) and `docs/flamegraph-sold-out.svg` (the refusal a
//! flood meets). Only the attempts are sampled, not the minting of the buyers' tokens before
//! them: sampling begins once the gateway counts the first attempt.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use gateway::outcome::PURCHASES_TOTAL;
use tokio::process::Command;

use super::processes::Tool;
use super::{BROKER_PORT, GATEWAY, crowd};
use crate::Pacing;
use crate::prometheus;
use crate::proof::stack::{Role, Settings};
use crate::proof::{Run, ServiceUrls, metrics};

#[derive(Args, Clone, Debug)]
pub struct Profile {
    #[command(flatten)]
    pub urls: ServiceUrls,

    /// Buyers of each crowd.
    #[arg(long, env = "PROFILE_BUYERS", default_value_t = 60_000)]
    pub buyers: usize,

    /// How long perf samples the gateway.
    #[arg(long, env = "PROFILE_SECONDS", default_value_t = 4)]
    pub seconds: u64,

    /// Where inferno's `inferno-collapse-perf` and `inferno-flamegraph` are.
    #[arg(long, env = "INFERNO_BIN")]
    pub inferno_bin: PathBuf,
}

/// Draws both flamegraphs; the paths written.
pub async fn run(mut args: Profile) -> anyhow::Result<Vec<PathBuf>> {
    args.urls.kafka_brokers = format!("127.0.0.1:{BROKER_PORT}");
    let run = Run::new("profile", args.urls.clone())?;
    anyhow::ensure!(
        !run.on_cluster(),
        "the profile runs on one Redis node; --on-cluster is not supported"
    );
    let _broker = Tool::release_broker(&run.dir.join("broker"), BROKER_PORT).await?;
    let mut stack = run.stack(&run.namespace("gateway"), GATEWAY);
    stack.start(Role::Gateway(1), Settings::new()).await?;
    let pid = stack
        .pid(Role::Gateway(1))
        .context("the gateway has no pid")?;
    let gateways = run.gateways()?;
    let mut written = Vec::new();
    for (name, stock) in [("purchase", args.buyers), ("sold-out", 1)] {
        let perf_data = run.dir.join(format!("{name}.perf"));
        let crowd = crowd(
            &gateways[..1],
            args.buyers,
            stock,
            Pacing::new(None, 64),
            &[],
        );
        let sample = sample_attempts(pid, &perf_data, args.seconds);
        let (crowd, sampled) = tokio::join!(crowd, sample);
        crowd?;
        sampled?;
        let svg = PathBuf::from(format!("docs/flamegraph-{name}.svg"));
        draw(
            &args.inferno_bin,
            &perf_data,
            &run.dir.join(format!("{name}.folded")),
            name,
            &svg,
        )
        .await?;
        eprintln!("{} written", svg.display());
        written.push(svg);
    }
    stack.stop().await;
    Ok(written)
}

/// Samples the gateway `pid` for `seconds` once it counts an attempt more than now.
async fn sample_attempts(pid: u32, perf_data: &Path, seconds: u64) -> anyhow::Result<()> {
    let attempts = async || {
        prometheus::sum(
            &metrics(&Role::Gateway(1).metrics_url()).await,
            PURCHASES_TOTAL,
            &[],
        )
    };
    let before = attempts().await;
    shared::poll::until(
        Duration::from_mins(5),
        Duration::from_millis(100),
        async || (attempts().await > before).then_some(()),
    )
    .await
    .context("the crowd never arrived")?;
    let status = Command::new("perf")
        .args([
            "record",
            "-q",
            "-F",
            "499",
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(perf_data)
        .args(["--", "sleep", &seconds.to_string()])
        .stderr(Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(status.success(), "perf record failed: {status}");
    Ok(())
}

/// `perf script | inferno-collapse-perf > folded`, then `inferno-flamegraph < folded > svg`.
async fn draw(
    inferno: &Path,
    perf_data: &Path,
    folded: &Path,
    name: &str,
    svg: &Path,
) -> anyhow::Result<()> {
    let mut script = Command::new("perf")
        .args(["script", "-i"])
        .arg(perf_data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let samples: Stdio = script
        .stdout
        .take()
        .context("perf script's output")?
        .try_into()?;
    let collapsed = Command::new(inferno.join("inferno-collapse-perf"))
        .stdin(samples)
        .stdout(std::fs::File::create(folded)?)
        .status()
        .await?;
    script.wait().await?;
    anyhow::ensure!(
        collapsed.success(),
        "inferno-collapse-perf failed: {collapsed}"
    );
    let date = chrono::Utc::now().format("%Y-%m-%d");
    let drawn = Command::new(inferno.join("inferno-flamegraph"))
        .args([
            "--minwidth",
            "2",
            "--title",
            &format!("gateway: {name} ({date})"),
        ])
        .stdin(std::fs::File::open(folded)?)
        .stdout(std::fs::File::create(svg)?)
        .status()
        .await?;
    anyhow::ensure!(drawn.success(), "inferno-flamegraph failed: {drawn}");
    Ok(())
}
