//! `loadtest`: parse → run the scenario → print the report → exit 1 on any violation.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let report = loadtest::run(loadtest::Cli::parse()).await?;
    report.print();
    println!("{}", report.to_json());
    if !report.violations().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
