//! What every worker binary runs around its handler: the consumer loop, and a small HTTP
//! server with `/healthz` and `/metrics` on the worker's own port.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use clap::Args;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{KafkaArgs, RedisArgs, TelemetryArgs};
use crate::consumer::{ConsumerLoop, Handler, LoopSettings};

/// What every worker is told besides its own settings: where its dependencies are, where it
/// serves health and metrics, and how it logs. Each worker's `Config` flattens it once.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Address of this worker's `/healthz` and `/metrics`.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:9100")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl WorkerArgs {
    /// Refuses settings that cannot work, naming the variable.
    pub fn validate(&self) -> Result<(), String> {
        self.redis.validate()?;
        self.kafka.validate()
    }
}

/// Consumes with `handler` until `shutdown` is cancelled (the caller has validated its
/// configuration, [`WorkerArgs::validate`] included), serving health and metrics on
/// `http` meanwhile. Returns once the final offsets are committed.
pub async fn run<H: Handler>(
    kafka: &KafkaArgs,
    settings: LoopSettings,
    handler: H,
    http: TcpListener,
    prometheus: PrometheusHandle,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Err(error) = crate::kafka::ensure_topics(kafka).await {
        tracing::warn!(%error, "could not ensure the topics exist; consuming anyway");
    }
    let consumer = ConsumerLoop::new(kafka, settings, handler)?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(move || async move { prometheus.render() }));
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(http, app)
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    consumer.run(shutdown.clone()).await?;
    shutdown.cancel();
    server.await??;
    Ok(())
}

/// A token cancelled on SIGINT or SIGTERM, for `main`.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let trigger = token.clone();
    tokio::spawn(async move {
        crate::shutdown::signal().await;
        trigger.cancel();
    });
    token
}
