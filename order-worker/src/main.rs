//! `order-worker`: config → telemetry → build → listen → consume and reconcile until SIGTERM.

use clap::Parser;
use order_worker::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init_logs(&config.worker.telemetry);
    let order_worker = order_worker::build(&config)?;
    let http = config.worker.front_door.listen(config.worker.http_addr)?;
    tracing::info!(addr = %http.local_addr()?, group = config.loop_settings().group, "order worker starting");
    order_worker::serve(order_worker, http, shared::shutdown::on_signal()).await
}
