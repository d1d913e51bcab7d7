//! `seckill`: the whole flash sale in one process, with nothing to install.
//!
//! It starts the gateway and the workers as tasks on embedded backends (in-process
//! stores, librdkafka's mock cluster, SQLite), opens a demo sale, sends a flash crowd at the
//! gateway over real HTTP with the bundled load test, prints the report with its invariant
//! checks, and keeps serving until Ctrl-C (or, with `--once`, stops at once).
//!
//! | module | concern |
//! | --- | --- |
//! | [`embedded`] | the embedded backends, built once, and each service's configuration |
//! | [`services`] | the services as tasks: build on the shared backends, serve, readiness, graceful stop |
//!
//! Nothing here is a second implementation: the services are the same crates the separate
//! binaries run, and the embedded backends sit behind the same traits as Redis, Kafka and
//! PostgreSQL, held to them by the conformance suites.

pub mod embedded;
pub mod services;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use loadtest::api::Gateway;
use loadtest::{Crowd, Lifecycle, Pacing, Probes, Report};
use shared::sale::Sale;
use tokio_util::sync::CancellationToken;

use crate::embedded::Embedded;
use crate::services::Services;

/// Runs the gateway and every worker in one process on embedded backends, sends a
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

    /// Share of the winners who pay; the others let the payment window pass, and latecomers
    /// buy the units that come back.
    #[arg(long, default_value_t = 0.7)]
    pub pay_ratio: f64,

    /// The demo sale's payment window: short, so the demo sees orders expire.
    #[arg(long, default_value_t = 3)]
    pub payment_window_secs: u32,

    /// The SMS provider's rate limit the SMS worker keeps to.
    #[arg(long, default_value_t = NonZeroU32::new(100).expect("100 > 0"))]
    pub sms_rate_per_sec: NonZeroU32,

    /// Which logs to show (RUST_LOG syntax); warnings only by default, so the report stands out.
    #[arg(long, env = "RUST_LOG", default_value = "warn")]
    pub log_filter: String,
}

/// Starts everything, runs the demo crowd and prints its report; then serves until
/// `shutdown` (unless `--once`). Returns the report, or `None` when stopped before it.
pub async fn run(cli: Cli, shutdown: CancellationToken) -> anyhow::Result<Option<Report>> {
    std::fs::create_dir_all(&cli.data_dir)?;
    let embedded = Embedded::start(&cli.data_dir, cli.sms_rate_per_sec)?;
    eprintln!("starting the gateway and the workers on embedded backends…");
    let mut services = Services::start(&embedded.stack(cli.listen)).await?;
    let url = &services.gateway_url;
    eprintln!("watch the sale live: {url}/dashboard (the buyer's page: {url}/)");

    let report = tokio::select! {
        report = flash_crowd(&cli, &embedded, &services) => report?,
        () = shutdown.cancelled() => return services.stop().await.map(|()| None),
    };
    report.print();

    if !cli.once {
        print_welcome(&cli, &embedded, &services, &report);
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
/// make here: the API, and the very order table, stock ledger and SMS file the services use.
async fn flash_crowd(
    cli: &Cli,
    embedded: &Embedded,
    services: &Services,
) -> anyhow::Result<Report> {
    let gateway = Gateway::new(&services.gateway_url, embedded.admin_token.expose())?;
    let crowd = Crowd {
        scenario: "flash-crowd",
        users: cli.users,
        attempts_per_user: cli.attempts_per_user,
        sale: Sale {
            payment_window_secs: cli.payment_window_secs,
            ..loadtest::open_sale(None, cli.stock, 1999)
        },
        pacing: Pacing::Closed { concurrency: 256 },
        lifecycle: Some(Lifecycle {
            pay_ratio: cli.pay_ratio,
            resale_rounds: 3,
        }),
        watched: Vec::new(),
    };
    let probes = Probes {
        orders: Some(embedded.orders.clone()),
        ledger: Some(embedded.backends.ledger()),
        sms_file: Some(embedded.sms_file.clone()),
        sms_repeats_allowed: 0,
        faults_while_buying: false,
        payments_file: Some(embedded.payments.payments_file.clone()),
        metrics_urls: vec![services.metrics_url.clone()],
        settle_timeout: Duration::from_mins(2),
    };
    Ok(Report::Crowd(Box::new(
        crowd.run(&[gateway], Some(&probes)).await?,
    )))
}

fn print_welcome(cli: &Cli, embedded: &Embedded, services: &Services, report: &Report) {
    let url = &services.gateway_url;
    let sale = match report {
        Report::Crowd(summary) => summary.sale_id.as_str(),
        Report::Abuse(_) | Report::Proof(_) | Report::Bench(_) | Report::Written(_) => "",
    };
    println!(
        "
seckill is serving at {url} (embedded backends; orders and SMS under {data})

  the buyer's page  {url}/?sale={sale}   (sign in with any name: demo mode is on)
  live dashboard    {url}/dashboard?sale={sale}
  the demo sale     curl {url}/api/v1/sales/{sale}
  its statistics    curl {url}/api/v1/sales/{sale}/stats
  metrics           curl {metrics}   (not on the public port)
  admin token       {token}

  a token, then a purchase (the crowd took every unit: expect 410 sold_out):
    TOKEN=$(curl -s -H 'Authorization: Bearer {token}' -H 'content-type: application/json' \\
      -d '{{\"user_id\":\"you\"}}' {url}/api/v1/admin/tokens | sed 's/.*\"token\":\"\\([^\"]*\\)\".*/\\1/')
    curl -s -X POST -H \"Authorization: Bearer $TOKEN\" {url}/api/v1/sales/{sale}/orders

  another crowd:
    cargo run --release -p loadtest -- flash-crowd --gateway {url} --admin-token {token}

Ctrl-C stops it.",
        data = cli.data_dir.display(),
        metrics = services.metrics_url,
        token = embedded.admin_token.expose(),
    );
}
