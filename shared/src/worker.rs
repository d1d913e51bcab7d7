//! What every worker binary is around its handler: the consumer loop, and a small HTTP server
//! with `/healthz` and `/metrics` on the worker's own port.
//!
//! A worker is a configuration that implements [`WorkerConfig`] (its settings, its handler); the
//! rest is written once here, in two steps: [`build`] (or [`build_on`], with backends handed
//! in) returns a [`Worker`], and [`serve`] runs it until shutdown. [`main`] is the whole
//! binary: parse, telemetry, build, listen, serve until SIGTERM.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use axum::Router;
use axum::routing::get;
use clap::{Args, Parser};
use metrics_exporter_prometheus::PrometheusHandle;
use rdkafka::error::KafkaError;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::backends::Backends;
use crate::config::{KafkaArgs, RedisArgs, RefusedToStart, TelemetryArgs};
use crate::consumer::{ConsumerLoop, Handler, LoopSettings};
use crate::front_door::{self, FrontDoorArgs};
use crate::kafka::EventBus;

/// What every worker is told besides its own settings: where its dependencies are, where it
/// serves health and metrics, and how it logs. Each worker's `Config` flattens it once.
#[derive(Args, Clone, Debug)]
pub struct WorkerArgs {
    /// Consumer group (default: the worker's name); every instance with the same group shares
    /// the partitions, and each group receives every event.
    #[arg(long, env = "CONSUMER_GROUP")]
    pub consumer_group: Option<String>,

    /// Address of this worker's `/healthz` and `/metrics`.
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:9100")]
    pub http_addr: SocketAddr,

    #[command(flatten)]
    pub front_door: FrontDoorArgs,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl WorkerArgs {
    /// The consumer group: the one configured, else `worker_name`.
    pub fn group(&self, worker_name: &str) -> String {
        self.consumer_group
            .clone()
            .unwrap_or_else(|| worker_name.to_owned())
    }

    /// Refuses settings that cannot work, naming the variable.
    pub fn validate(&self) -> Result<(), RefusedToStart> {
        self.redis.validate()?;
        self.kafka.validate()
    }
}

/// A worker's configuration: the part of a worker that differs from the others.
pub trait WorkerConfig: Parser + Send + 'static {
    type Handler: Handler + 'static;

    /// The settings every worker shares.
    fn worker_args(&self) -> &WorkerArgs;

    /// Batching and retry policy of the consumer loop, for the consumer group `group`
    /// (`CONSUMER_GROUP`, or the worker's name).
    fn loop_settings(&self, group: &str) -> LoopSettings;

    /// The handler, with the stores it needs taken from `backends`.
    fn handler(&self, backends: &Backends) -> anyhow::Result<Self::Handler>;

    /// Refuses this worker's own settings when they cannot work, naming the variable (the
    /// shared ones are checked too).
    fn validate(&self) -> Result<(), RefusedToStart> {
        Ok(())
    }

    /// The consumer group: `CONSUMER_GROUP`, else the worker's name.
    fn group(&self) -> String {
        self.worker_args().group(Self::command().get_name())
    }
}

/// One consumer loop, started by [`serve`] once the topics exist.
type LoopRun = Box<
    dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = Result<(), KafkaError>> + Send>>
        + Send,
>;

/// A built worker, ready to [`serve`]: one consumer loop, or several (each its own group).
pub struct Worker {
    loops: Vec<LoopRun>,
    bus: EventBus,
    prometheus: PrometheusHandle,
    front_door: FrontDoorArgs,
}

impl Worker {
    /// A worker consuming `bus` with `handler`, serving its HTTP port through the default
    /// front door (see [`Worker::with_front_door`]) and its metrics from `prometheus`, the
    /// installed recorder ([`crate::telemetry::install_metrics`]). Connects lazily.
    pub fn new<H: Handler + 'static>(
        bus: &EventBus,
        settings: LoopSettings,
        handler: H,
        prometheus: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let worker = Self {
            loops: Vec::new(),
            bus: bus.clone(),
            prometheus,
            front_door: crate::config::defaults(),
        };
        worker.and_consume(settings, handler)
    }

    /// The worker, serving its HTTP port through `front_door`.
    #[must_use]
    pub fn with_front_door(mut self, front_door: &FrontDoorArgs) -> Self {
        self.front_door = front_door.clone();
        self
    }

    /// The worker with one more consumer loop, in the consumer group `settings.group`.
    pub fn and_consume<H: Handler + 'static>(
        mut self,
        settings: LoopSettings,
        handler: H,
    ) -> anyhow::Result<Self> {
        let consumer = ConsumerLoop::new(&self.bus, settings, handler)?;
        self.loops
            .push(Box::new(|shutdown| Box::pin(consumer.run(shutdown))));
        Ok(self)
    }
}

/// The worker `config` describes, on the backends and the bus its URLs name.
pub fn build<C: WorkerConfig>(config: &C) -> anyhow::Result<Worker> {
    let args = config.worker_args();
    let backends = Backends::open(&args.redis)?;
    let bus = EventBus::connect(&args.kafka)?;
    build_on(config, &backends, &bus)
}

/// The worker `config` describes, on backends and a bus built by the caller (shared with other
/// services of the process, or a test's).
pub fn build_on<C: WorkerConfig>(
    config: &C,
    backends: &Backends,
    bus: &EventBus,
) -> anyhow::Result<Worker> {
    config
        .worker_args()
        .validate()
        .and_then(|()| config.validate())?;
    // First: the handler may register its metrics' series at zero.
    let prometheus = crate::telemetry::install_metrics();
    let settings = config.loop_settings(&config.group());
    let worker = Worker::new(bus, settings, config.handler(backends)?, prometheus)?;
    Ok(worker.with_front_door(&config.worker_args().front_door))
}

/// Consumes until `shutdown` is cancelled, serving health and metrics on `http` meanwhile.
/// Returns once every loop committed its final offsets; a loop that fails stops the others.
pub async fn serve(
    worker: Worker,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if let Err(error) = worker.bus.ensure_topics().await {
        tracing::warn!(%error, "could not ensure the topics exist; consuming anyway");
    }
    let prometheus = worker.prometheus;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(move || async move { prometheus.render() }));
    let server_shutdown = shutdown.clone();
    let front_door = worker.front_door;
    let server =
        tokio::spawn(
            async move { front_door::serve(http, app, &front_door, server_shutdown).await },
        );
    let mut loops = JoinSet::new();
    for run in worker.loops {
        loops.spawn(run(shutdown.clone()));
    }
    let mut consumed = Ok(());
    while let Some(ended) = loops.join_next().await {
        if let Err(error) = ended? {
            shutdown.cancel();
            consumed = Err(error);
        }
    }
    shutdown.cancel();
    server.await??;
    Ok(consumed?)
}

/// The whole worker binary: configuration → telemetry → build → listen → serve until SIGINT
/// or SIGTERM.
pub async fn main<C: WorkerConfig>() -> anyhow::Result<()> {
    let config = C::parse();
    let args = config.worker_args();
    crate::telemetry::init_logs(&args.telemetry);
    let worker = build(&config)?;
    let http = args.front_door.listen(args.http_addr)?;
    tracing::info!(addr = %http.local_addr()?, group = config.group(), "worker starting");
    serve(worker, http, crate::shutdown::on_signal()).await
}
