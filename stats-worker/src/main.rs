//! `stats-worker`: config → telemetry → listen → consume until SIGTERM.

use clap::Parser;
use stats_worker::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let prometheus = shared::telemetry::init(&config.worker.telemetry);
    let http = TcpListener::bind(config.worker.http_addr).await?;
    tracing::info!(addr = %http.local_addr()?, group = config.consumer_group, "stats worker starting");
    let shutdown = shared::worker::shutdown_on_signal();
    stats_worker::run(config, http, prometheus, shutdown).await
}
