//! `seckill`: the whole flash sale in one process, with nothing to install.
//!
//! It starts the gateway and the three workers as tasks on embedded backends (in-process
//! stores, librdkafka's mock cluster, SQLite), opens a demo sale, sends a flash crowd at the
//! gateway over real HTTP with the bundled load test, prints the report with its invariant
//! checks, and keeps serving until Ctrl-C (or, with `--once`, stops at once).
//!
//! | module | concern |
//! | --- | --- |
//! | [`wiring`] | the embedded backends, and each service's configuration |
//! | [`services`] | the four services as tasks: start, readiness, graceful stop |
//!
//! Nothing here is a second implementation: the services are the same crates the separate
//! binaries run, and the embedded backends sit behind the same traits as Redis, Kafka and
//! PostgreSQL, held to them by the conformance suites.

pub mod services;
pub mod wiring;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use loadtest::Report;
use tokio_util::sync::CancellationToken;

use crate::services::Services;
use crate::wiring::Wiring;

/// Runs the gateway and all three workers in one process on embedded backends, sends a
/// flash crowd through them and proves the invariants, then keeps serving.
#[derive(Parser, Debug)]
#[command(name = "seckill", version)]
pub struct Cli {
    /// Stop after the report; the exit status is 0 only if every invariant held.
    #[arg(long)]
    pub once: bool,

    /// Address of the gateway's HTTP API.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Where the order table (SQLite) and the SMS outbox file live; kept across runs.
    #[arg(long, default_value = ".seckill")]
    pub data_dir: PathBuf,

    /// Distinct users in the demo crowd.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,

    /// Units on sale in the demo.
    #[arg(long, default_value_t = 200)]
    pub stock: u32,

    /// Purchase attempts per user.
    #[arg(long, default_value_t = 3)]
    pub attempts_per_user: usize,

    /// The SMS provider's rate limit the SMS worker keeps to.
    #[arg(long, default_value_t = 100)]
    pub sms_rate_per_sec: u32,

    /// Which logs to show (RUST_LOG syntax); warnings only by default, so the report stands out.
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub log_filter: String,
}

/// Starts everything, runs the demo crowd and prints its report; then serves until
/// `shutdown` (unless `--once`). Returns the report, or `None` when stopped before it.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<Option<Report>> {
    std::fs::create_dir_all(&cli.data_dir)?;
    let wiring = Wiring::embedded(&cli.data_dir, cli.sms_rate_per_sec);
    eprintln!("starting the gateway and three workers on embedded backends…");
    let mut services = Services::start(&wiring, cli.listen).await?;

    let report = tokio::select! {
        report = flash_crowd(&cli, &wiring, &services) => report?,
        () = shutdown.cancelled() => return services.stop().await.map(|()| None),
    };
    report.print();

    if !cli.once {
        print_welcome(&cli, &wiring, &services, &report);
        tokio::select! {
            () = shutdown.cancelled() => {}
            why = services.any_stopped() => anyhow::bail!("{why}"),
        }
        eprintln!("stopping…");
    }
    services.stop().await?;
    Ok(Some(report))
}

/// The bundled load test's flash crowd, pointed at this process, with every check it can
/// make here: the API, the order table, the stock ledger and the SMS file.
async fn flash_crowd(cli: &Cli, wiring: &Wiring, services: &Services) -> anyhow::Result<Report> {
    let mut args = vec![
        "loadtest".to_owned(),
        "flash-crowd".into(),
        "--gateway".into(),
        services.gateway_url.clone(),
        "--admin-token".into(),
        wiring.admin_token.clone(),
        "--users".into(),
        cli.users.to_string(),
        "--stock".into(),
        cli.stock.to_string(),
        "--attempts-per-user".into(),
        cli.attempts_per_user.to_string(),
        "--database-url".into(),
        wiring.database_url.clone(),
        "--redis-url".into(),
        wiring.redis_url.clone(),
        "--redis-key-prefix".into(),
        wiring.redis_key_prefix.clone(),
        "--sms-file".into(),
        wiring.sms_file.display().to_string(),
    ];
    // In one process every service records into one registry, which the gateway serves too:
    // its `/metrics` shows every group's lag (each worker's would show the same, thrice counted).
    args.extend([
        "--metrics-url".into(),
        format!("{}/metrics", services.gateway_url),
    ]);
    loadtest::run(loadtest::Cli::try_parse_from(args)?).await
}

fn print_welcome(cli: &Cli, wiring: &Wiring, services: &Services, report: &Report) {
    let url = &services.gateway_url;
    let sale = match report {
        Report::Crowd(summary) => summary.sale_id.as_str(),
        Report::Abuse(_) => "",
    };
    println!(
        "
seckill is serving at {url} (embedded backends; orders and SMS under {data})

  the demo sale     curl {url}/api/v1/sales/{sale}
  its statistics    curl {url}/api/v1/sales/{sale}/stats
  metrics           curl {url}/metrics
  admin token       {token}

  a token, then a purchase (the crowd took every unit: expect 410 sold_out):
    TOKEN=$(curl -s -H 'Authorization: Bearer {token}' -H 'content-type: application/json' \\
      -d '{{\"user_id\":\"you\"}}' {url}/api/v1/admin/tokens | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')
    curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/sales/{sale}/orders

  another crowd:
    cargo run --release -p loadtest -- flash-crowd --gateway {url} --admin-token {token}

Ctrl-C stops it.",
        data = cli.data_dir.display(),
        token = wiring.admin_token,
    );
}
