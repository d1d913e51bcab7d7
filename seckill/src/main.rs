//! `seckill`: config → telemetry → run everything → exit 0 only if the invariants held.

use clap::Parser;
use shared::config::{LogFormat, TelemetryArgs};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = seckill::Cli::parse();
    shared::telemetry::init_logs(&TelemetryArgs {
        log_format: LogFormat::Text,
        log_filter: cli.log_filter.clone(),
    });
    let report = seckill::run(cli, shared::shutdown::on_signal()).await?;
    if !report.is_some_and(|report| report.violations().is_empty()) {
        std::process::exit(1);
    }
    Ok(())
}
