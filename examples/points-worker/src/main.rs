//! `points-worker`: config → telemetry → build → listen → consume until SIGTERM.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::worker::main::<points_worker::Config>().await
}
