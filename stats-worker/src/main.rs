//! `stats-worker`: config → telemetry → build → listen → consume until SIGTERM
//! (`shared::worker::main`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::worker::main::<stats_worker::Config>().await
}
