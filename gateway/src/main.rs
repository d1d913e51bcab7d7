//! `gateway`: config → telemetry → listen → serve until SIGTERM.

use clap::Parser;
use gateway::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let prometheus = shared::telemetry::init(&config.telemetry);
    let listener = TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    gateway::run(config, listener, prometheus, shared::shutdown::signal()).await
}
