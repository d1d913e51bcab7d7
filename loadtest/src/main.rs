//! `loadtest`: parse → run the scenario → print the report → exit 1 on any violation.
//!
//! One thread, as `wrk -t1`: the attempts are a write and a read each, and a second thread
//! would only add wake-ups between threads on the cores the servers under test need.

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
