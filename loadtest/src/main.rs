//! `loadtest`: parse → run the scenario → print the report → exit 1 on any violation.
//!
//! One thread, as `wrk -t1`: the attempts are a write and a read each, and a second thread
//! would only add wake-ups between threads on the cores the servers under test need.

use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let stop = shared::shutdown::on_signal();
    // On SIGINT or SIGTERM the run is dropped, and with it every process a proof started.
    let finished = tokio::select! {
        report = loadtest::run(loadtest::Cli::parse()) => Some(report?),
        () = stop.cancelled() => None,
    };
    let Some(report) = finished else {
        eprintln!("stopped by a signal: nothing was checked");
        std::process::exit(130);
    };
    report.print();
    println!("{}", report.to_json());
    if !report.violations().is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
