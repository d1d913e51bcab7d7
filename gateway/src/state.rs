//! What every request handler shares, built once from the [`Config`].

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use shared::backends::Backends;
use shared::ids::OrderId;
use shared::publisher::Publisher;
use shared::stats::StatsStore;
use shared::stock::StockLedger;
use tokio::sync::mpsc;

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::risk::blacklist::Blacklist;
use crate::risk::limits::RateLimits;
use crate::sales::SaleCatalog;

/// Cheap to clone: one `Arc` around the shared parts.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub tokens: TokenKeys,
    pub admin_token: String,
    pub limits: RateLimits,
    pub blacklist: Blacklist,
    pub catalog: SaleCatalog,
    pub ledger: Arc<dyn StockLedger>,
    pub stats: Arc<dyn StatsStore>,
    pub publisher: Publisher,
    pub prometheus: PrometheusHandle,
    pub body_limit_bytes: usize,
    /// How long `/readyz` waits for each dependency.
    pub probe_timeout: Duration,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Builds the state without touching the network: the stores and Kafka connect lazily, so the
    /// gateway starts (and reports not ready) while they are down. Also returns the channel of
    /// broker acknowledgements for [`shared::publisher::record_acknowledgements`].
    pub fn build(
        config: &Config,
        prometheus: PrometheusHandle,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<OrderId>)> {
        let Backends {
            ledger,
            stats,
            coordination,
        } = Backends::open(&config.redis)?;
        let (publisher, acknowledgements) = Publisher::new(&config.kafka)?;
        let inner = Inner {
            tokens: TokenKeys::new(
                config.jwt_secret.expose(),
                Duration::from_secs(config.token_ttl_secs),
            ),
            admin_token: config.admin_token.expose().to_owned(),
            limits: RateLimits::new(
                Config::limit(config.rate_limit_global_per_sec),
                Config::limit(config.rate_limit_user_per_sec),
                Config::limit(config.rate_limit_ip_per_sec),
            ),
            blacklist: Blacklist::new(coordination),
            catalog: SaleCatalog::new(Arc::clone(&ledger)),
            ledger,
            stats,
            publisher,
            prometheus,
            body_limit_bytes: config.body_limit_bytes,
            probe_timeout: Duration::from_secs(1),
        };
        Ok((Self(Arc::new(inner)), acknowledgements))
    }
}
