//! `loadtest`: parse → run the scenario → print the report → exit 1 on any violation.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let summary = loadtest::run(loadtest::Cli::parse()).await?;
    summary.print();
    println!("{}", serde_json::to_string(&summary)?);
    if !summary.violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
