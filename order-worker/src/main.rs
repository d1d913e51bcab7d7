//! `order-worker`: config → telemetry → build → listen → consume and reconcile until SIGTERM.

use clap::Parser;
use order_worker::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(&config.worker.telemetry);
    let order_worker = order_worker::build(&config)?;
    let http = TcpListener::bind(config.worker.http_addr).await?;
    tracing::info!(addr = %http.local_addr()?, group = config.loop_settings().group, "order worker starting");
    order_worker::serve(order_worker, http, shared::shutdown::on_signal()).await
}
