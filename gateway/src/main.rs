//! `gateway`: config → telemetry → build → listen → serve until SIGTERM.

use clap::Parser;
use gateway::Config;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    shared::telemetry::init(&config.telemetry);
    let gateway = gateway::build(&config)?;
    let listener = TcpListener::bind(config.listen_addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    gateway::serve(gateway, listener, shared::shutdown::on_signal()).await
}
