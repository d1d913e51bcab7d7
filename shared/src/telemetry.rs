//! Logs and metrics, set up the same way in every binary.
//!
//! Logs go through `tracing` (text or JSON lines, filtered by `RUST_LOG`), installed by
//! `main`. Metrics go through the `metrics` facade into one process-wide Prometheus recorder,
//! installed by each service's `build` and rendered by its `/metrics` route. Metric names are
//! constants next to the code that records them and end in `_total` (counters) or `_seconds`
//! (histograms).

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetryArgs};

/// Histogram buckets for latencies, in seconds: 100 µs to 5 s.
const LATENCY_BUCKETS_SECONDS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0,
];

/// Installs the log subscriber. Call once, first thing in `main`; the metrics recorder is
/// installed by each service's `build` ([`install_metrics`]), which tests call too.
pub fn init_logs(args: &TelemetryArgs) {
    let filter = EnvFilter::try_new(&args.log_filter).unwrap_or_else(|error| {
        eprintln!(
            "RUST_LOG {:?} is not a valid filter ({error}); using \"info\"",
            args.log_filter
        );
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match args.log_format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

/// How often histogram samples are folded into their buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Installs the process's Prometheus recorder (the `metrics` facade has one per process) and
/// the thread that folds histogram samples, and returns the handle `/metrics` renders. A
/// process that builds several services (the demo, a test) installs it once: later calls
/// return the same handle. Call it in `build`, before any metric handle is made, and hand the
/// handle to what renders or registers metrics.
pub fn install_metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS_SECONDS)
                .expect("the bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
            // Histograms keep raw samples until upkeep folds them in; without a scraper
            // (a dev run, a test) they would grow without bound.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}
