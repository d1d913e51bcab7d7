//! The gateway and the workers as tasks of this process: each built by its own crate's
//! `build_on` from one set of backends, served by its own `serve`, exactly as its binary
//! serves it, and stopped together.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use order_worker::store::OrderStore;
use shared::backends::Backends;
use shared::kafka::EventBus;
use shared::payment::PaymentProvider;
use shared::worker::WorkerConfig;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What the services run on, and each one's configuration: the embedded deployment's
/// (`Embedded::stack`), or, in the browser tests, the real services'.
pub struct Stack {
    pub backends: Backends,
    pub bus: EventBus,
    pub orders: Arc<dyn OrderStore>,
    /// One payment provider for the gateway that charges and the resolver that refunds.
    pub payments: Arc<dyn PaymentProvider>,
    pub gateway: gateway::Config,
    pub order_worker: order_worker::Config,
    pub sms_worker: sms_worker::Config,
    pub stats_worker: stats_worker::Config,
    pub points_worker: points_worker::Config,
}

/// Each service's task, named, with what its `serve` returned.
type Tasks = JoinSet<(&'static str, anyhow::Result<()>)>;

/// The running services.
pub struct Services {
    pub gateway_url: String,
    /// The gateway's `/metrics`: in one process every service records into one registry, so
    /// it shows every worker's series too.
    pub metrics_url: String,
    stop: CancellationToken,
    tasks: Tasks,
    /// How many services were started (the readiness wait notices one that stopped).
    started: usize,
}

impl Services {
    /// Starts every service of `stack` and waits until the gateway is ready to sell.
    pub async fn start(stack: &Stack) -> anyhow::Result<Self> {
        let Stack { backends, bus, .. } = stack;
        let listen = stack.gateway.listen_addr;
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let listener = stack.gateway.front_door.listen(listen).map_err(|error| {
            anyhow::anyhow!(
                "cannot listen on {listen}: {error} (choose another address with --listen)"
            )
        })?;
        let gateway_url = format!("http://{}", listener.local_addr()?);
        let metrics = free_port().await?;
        let metrics_url = format!("http://{}/metrics", metrics.local_addr()?);
        let gateway = gateway::build_on(&stack.gateway, backends, bus, stack.payments.clone())?;
        spawn(
            &mut tasks,
            "gateway",
            gateway::serve(gateway, listener, metrics, stop.clone()),
        );

        // The workers' `/healthz` and `/metrics` listen on free ports too: in one process
        // they share one metrics registry, which the gateway's `/metrics` serves.
        let orders = order_worker::build_on(
            &stack.order_worker,
            backends,
            bus,
            stack.orders.clone(),
            stack.payments.clone(),
        )?;
        spawn(
            &mut tasks,
            "order-worker",
            order_worker::serve(orders, free_port().await?, stop.clone()),
        );
        // One line per worker that is a `WorkerConfig`; the order worker above is more.
        start_worker(&mut tasks, "sms-worker", &stack.sms_worker, stack, &stop).await?;
        start_worker(
            &mut tasks,
            "stats-worker",
            &stack.stats_worker,
            stack,
            &stop,
        )
        .await?;
        start_worker(
            &mut tasks,
            "points-worker",
            &stack.points_worker,
            stack,
            &stop,
        )
        .await?;

        let services = Self {
            gateway_url,
            metrics_url,
            stop,
            started: tasks.len(),
            tasks,
        };
        services.wait_until_ready(Duration::from_secs(30)).await?;
        Ok(services)
    }

    /// Polls the gateway's `/readyz`; fails early if a service has already stopped.
    async fn wait_until_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let url = format!("{}/readyz", self.gateway_url);
        let http = reqwest::Client::new();
        let deadline = Instant::now() + timeout;
        loop {
            if self.tasks.len() < self.started {
                anyhow::bail!("a service stopped while starting; see the log above");
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("the gateway was not ready within {timeout:?} ({url})");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Resolves when any service stops by itself (it should not before [`Services::stop`]).
    pub async fn any_stopped(&mut self) -> String {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => format!("{name} stopped"),
            Some(Ok((name, Err(error)))) => format!("{name} failed: {error:#}"),
            Some(Err(error)) => format!("a service panicked: {error}"),
            None => "no service is running".into(),
        }
    }

    /// Stops every service gracefully (the gateway flushes its producer, each worker commits
    /// its offsets) and reports the first failure.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        let mut first_failure = None;
        while let Some(joined) = self.tasks.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((name, Err(error))) => anyhow::anyhow!("{name} failed: {error:#}"),
                Err(error) => anyhow::anyhow!("a service panicked: {error}"),
            };
            first_failure.get_or_insert(failure);
        }
        first_failure.map_or(Ok(()), Err)
    }
}

/// Builds the worker `config` describes on the stack's backends and serves it as a task.
async fn start_worker<C: WorkerConfig>(
    tasks: &mut Tasks,
    name: &'static str,
    config: &C,
    stack: &Stack,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let worker = shared::worker::build_on(config, &stack.backends, &stack.bus)?;
    let serving = shared::worker::serve(worker, free_port().await?, stop.clone());
    spawn(tasks, name, serving);
    Ok(())
}

async fn free_port() -> std::io::Result<TcpListener> {
    TcpListener::bind("127.0.0.1:0").await
}

fn spawn(
    tasks: &mut Tasks,
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    tasks.spawn(async move { (name, service.await) });
}
