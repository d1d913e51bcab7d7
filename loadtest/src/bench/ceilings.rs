//! The ceilings the stack is measured against, each with the system otherwise idle: the HTTP
//! ceiling (an axum hello-world of this workspace, driven by wrk and by the bundled load
//! generator over the same connections) and the Redis ceiling (redis-benchmark running the
//! purchase's own `reserve.lua`, on the keys `shared` lays out for a sale).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use shared::keys::KeySpace;
use tokio::process::Command;

use crate::Pacing;
use crate::cpu::{LOADTEST, Meter, Watched};

/// What a server and its client spent, and how fast it went.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Ceiling {
    pub requests_per_sec: f64,
    /// CPU per request of the server, in µs.
    pub server_us: f64,
    /// CPU per request of the client, in µs (none for redis-benchmark's own).
    pub client_us: Option<f64>,
}

/// µs of `spent` per request.
pub fn micros_per(spent: Duration, requests: u64) -> f64 {
    (spent.as_secs_f64() * 1e6 / requests.max(1) as f64 * 10.0).round() / 10.0
}

/// wrk, one thread, `connections` connections, for `secs` seconds of POSTs at `url`; the
/// server's CPU measured around it, wrk's own by GNU time.
pub async fn wrk(
    dir: &Path,
    url: &str,
    server: &Watched,
    connections: usize,
    secs: u64,
) -> anyhow::Result<Ceiling> {
    let script = dir.join("post.lua");
    std::fs::write(&script, "wrk.method = \"POST\"\n")?;
    let cpu_file = dir.join("wrk.cpu");
    let meter = Meter::start(std::slice::from_ref(server));
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%U %S", "-o"])
        .arg(&cpu_file)
        .args([
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            "-s",
        ])
        .arg(&script)
        .arg(url)
        .output()
        .await
        .context("running wrk under /usr/bin/time")?;
    let spent = meter.stop()[&server.name];
    anyhow::ensure!(
        output.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout);
    let requests: u64 = text
        .lines()
        .find(|line| line.contains("requests in"))
        .and_then(|line| line.split_whitespace().next()?.parse().ok())
        .context("wrk printed no request count")?;
    let requests_per_sec: f64 = text
        .lines()
        .find_map(|line| line.strip_prefix("Requests/sec:"))
        .and_then(|rate| rate.trim().parse().ok())
        .context("wrk printed no rate")?;
    let client: f64 = std::fs::read_to_string(&cpu_file)?
        .split_whitespace()
        .filter_map(|seconds| seconds.parse::<f64>().ok())
        .sum();
    Ok(Ceiling {
        requests_per_sec,
        server_us: micros_per(spent, requests),
        client_us: Some(micros_per(Duration::from_secs_f64(client), requests)),
    })
}

/// The bundled load generator against the same server over the same connections.
pub async fn hammer(
    url: &str,
    server: &Watched,
    requests: usize,
    connections: usize,
) -> anyhow::Result<Ceiling> {
    let pacing = Pacing::new(None, connections);
    let summary = crate::hammer(url, requests, pacing, std::slice::from_ref(server)).await?;
    let cpu = &summary.cpu_us_per_request;
    Ok(Ceiling {
        requests_per_sec: summary.throughput_per_sec,
        server_us: cpu.get(&server.name).copied().unwrap_or_default(),
        client_us: cpu.get(LOADTEST).copied(),
    })
}

/// redis-benchmark running `reserve.lua` with `connections` connections, `requests` times,
/// each a new buyer, on a sale of `prefix` whose stock never runs out.
pub async fn redis(
    redis_url: &str,
    prefix: &str,
    redis: &Watched,
    requests: u64,
    connections: usize,
) -> anyhow::Result<Ceiling> {
    let client = redis::Client::open(redis_url)?;
    let mut connection = client.get_multiplexed_async_connection().await?;
    let sha: String = shared::scripts::RESERVE
        .prepare_invoke()
        .load_async(&mut connection)
        .await?;
    let keys = KeySpace::new(prefix).sale(&"bench".parse()?);
    let _: () = redis::cmd("SET")
        .arg(&keys.stock)
        .arg(1_000_000_000)
        .query_async(&mut connection)
        .await?;
    let address = reqwest::Url::parse(redis_url)?;
    let host = address.host_str().unwrap_or("127.0.0.1").to_owned();
    let port = address.port().unwrap_or(6379).to_string();
    // The script stores the event as opaque bytes: a payload of an event's size, without the
    // commas and quotes that would upset redis-benchmark's CSV.
    let event = "e".repeat(240);
    // The lock's run-by time: redis-benchmark queues nothing behind a deadline.
    let never_late = "99999999999999";
    let meter = Meter::start(std::slice::from_ref(redis));
    let output = Command::new("redis-benchmark")
        .args(["-h", &host, "-p", &port, "-c", &connections.to_string()])
        .args([
            "-n",
            &requests.to_string(),
            "-r",
            "1000000000",
            "--csv",
            "EVALSHA",
            &sha,
        ])
        .arg(keys.reserve().len().to_string())
        .args(keys.reserve())
        .args([
            "user-__rand_int__",
            "order-__rand_int__",
            &event,
            never_late,
            "900000",
        ])
        .output()
        .await
        .context("running redis-benchmark")?;
    let spent = meter.stop()[&redis.name];
    let _: () = redis::cmd("DEL")
        .arg(&keys.reserve()[..])
        .query_async(&mut connection)
        .await?;
    let text = String::from_utf8_lossy(&output.stdout);
    let requests_per_sec: f64 = text
        .lines()
        .nth(1)
        .and_then(|line| line.split("\",\"").nth(1)?.trim_matches('"').parse().ok())
        .with_context(|| format!("redis-benchmark gave no figure: {text}"))?;
    Ok(Ceiling {
        requests_per_sec,
        server_us: micros_per(spent, requests),
        client_us: None,
    })
}
