//! The gateway and the three workers as tasks of this process, each started through its own
//! crate's `run`, exactly as its binary starts it, and stopped together.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::wiring::Wiring;

/// The four running services.
pub struct Services {
    pub gateway_url: String,
    stop: CancellationToken,
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    /// How many services were started (the readiness wait notices one that stopped).
    started: usize,
}

impl Services {
    /// Starts every service and waits until the gateway is ready to sell.
    pub async fn start(wiring: &Wiring, listen: SocketAddr) -> anyhow::Result<Self> {
        let prometheus = shared::telemetry::prometheus();
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();

        let gateway_config = wiring.gateway(listen)?;
        let listener = TcpListener::bind(gateway_config.listen_addr)
            .await
            .map_err(|error| {
                anyhow::anyhow!(
                    "cannot listen on {listen}: {error} (choose another address with --listen)"
                )
            })?;
        let gateway_url = format!("http://{}", listener.local_addr()?);
        let shutdown = stop.clone().cancelled_owned();
        spawn(
            &mut tasks,
            "gateway",
            gateway::run(gateway_config, listener, prometheus.clone(), shutdown),
        );

        let config = wiring.order_worker()?;
        let http = TcpListener::bind(config.worker.http_addr).await?;
        spawn(
            &mut tasks,
            "order-worker",
            order_worker::run(config, http, prometheus.clone(), stop.clone()),
        );
        let config = wiring.sms_worker()?;
        let http = TcpListener::bind(config.worker.http_addr).await?;
        spawn(
            &mut tasks,
            "sms-worker",
            sms_worker::run(config, http, prometheus.clone(), stop.clone()),
        );
        let config = wiring.stats_worker()?;
        let http = TcpListener::bind(config.worker.http_addr).await?;
        spawn(
            &mut tasks,
            "stats-worker",
            stats_worker::run(config, http, prometheus, stop.clone()),
        );

        let services = Self {
            gateway_url,
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

fn spawn(
    tasks: &mut JoinSet<(&'static str, anyhow::Result<()>)>,
    name: &'static str,
    service: impl Future<Output = anyhow::Result<()>> + Send + 'static,
) {
    tasks.spawn(async move { (name, service.await) });
}
