//! `gateway`: config → telemetry → build → listen → serve until SIGTERM.

use clap::Parser;
use gateway::Config;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init_logs(&config.telemetry);
    let gateway = gateway::build(&config)?;
    let api = config.front_door.listen(config.listen_addr)?;
    let metrics = config.front_door.listen(config.metrics_addr)?;
    tracing::info!(
        addr = %api.local_addr()?,
        metrics = %metrics.local_addr()?,
        "gateway listening"
    );
    gateway::serve(gateway, api, metrics, shared::shutdown::on_signal()).await
}
