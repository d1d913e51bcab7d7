//! What request handlers share, and the parts of it that extractors ask for by type.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use metrics_exporter_prometheus::PrometheusHandle;
use shared::backends::Backends;
use shared::kafka::EventBus;
use shared::payment::PaymentProvider;
use shared::publisher::Publisher;
use shared::stats::StatsStore;
use shared::stock::StockLedger;

use crate::auth::stream::StreamTokens;
use crate::auth::{AdminToken, TokenKeys};
use crate::catalog::SaleCatalog;
use crate::config::Config;
use crate::extract::BodyLimit;
use crate::outcome::PurchaseMetrics;
use crate::push::Push;
use crate::push::lag::GroupLags;
use crate::readiness::Readiness;
use crate::risk::blacklist::BlacklistCopy;
use crate::risk::limits::RateLimits;

/// Syncs of the blacklist copy that may fail in a row before the gateway is not ready.
const BLACKLIST_SYNCS_MISSED_AT_MOST: u32 = 3;

/// Cheap to clone: one `Arc` around the shared parts.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub tokens: Arc<TokenKeys>,
    pub stream_tokens: Arc<StreamTokens>,
    pub admin_token: AdminToken,
    pub limits: RateLimits,
    pub blacklist: BlacklistCopy,
    pub catalog: SaleCatalog,
    pub ledger: Arc<dyn StockLedger>,
    pub stats: Arc<dyn StatsStore>,
    pub publisher: Publisher,
    pub payments: Arc<dyn PaymentProvider>,
    pub push: Push,
    pub prometheus: PrometheusHandle,
    pub purchase_metrics: PurchaseMetrics,
    pub body_limit: BodyLimit,
    /// The last background check of the dependencies, which `/readyz` answers with.
    pub readiness: Readiness,
    /// The oldest the blacklist copy may be for `/readyz` to report ready.
    pub blacklist_max_age: Duration,
}

impl Deref for AppState {
    type Target = Inner;

    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// The state, without touching the network: the stores and Kafka connect lazily, so the
    /// gateway starts (and reports not ready) while they are down. `prometheus` is the
    /// installed recorder's handle, which `/metrics` renders.
    pub fn new(
        config: &Config,
        backends: &Backends,
        bus: &EventBus,
        publisher: Publisher,
        payments: Arc<dyn PaymentProvider>,
        prometheus: PrometheusHandle,
    ) -> Self {
        let ledger = backends.ledger();
        let push = Push::new(config, GroupLags::new(bus, &config.dashboard_groups));
        Self(Arc::new(Inner {
            tokens: Arc::new(TokenKeys::new(
                config.jwt_secret.expose(),
                config.token_ttl(),
                config.token_rules(),
            )),
            stream_tokens: Arc::new(StreamTokens::new(
                config.jwt_secret.expose(),
                &config.token_rules(),
            )),
            admin_token: AdminToken::new(config.admin_token.clone()),
            limits: RateLimits::new(
                Config::limit(config.rate_limit_global_per_sec),
                Config::limit(config.rate_limit_user_per_sec),
                Config::limit(config.rate_limit_ip_per_sec),
            ),
            blacklist: BlacklistCopy::new(backends.blacklist()),
            catalog: SaleCatalog::new(Arc::clone(&ledger) as _),
            ledger,
            stats: backends.stats(),
            publisher,
            payments,
            push,
            purchase_metrics: PurchaseMetrics::register(&prometheus),
            prometheus,
            body_limit: BodyLimit(config.body_limit_bytes),
            readiness: Readiness::new(config.readiness_check()),
            blacklist_max_age: config.blacklist_sync() * BLACKLIST_SYNCS_MISSED_AT_MOST,
        }))
    }
}

impl FromRef<AppState> for Arc<TokenKeys> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.tokens)
    }
}

impl FromRef<AppState> for Arc<StreamTokens> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.stream_tokens)
    }
}

impl FromRef<AppState> for AdminToken {
    fn from_ref(state: &AppState) -> Self {
        state.admin_token.clone()
    }
}

impl FromRef<AppState> for BodyLimit {
    fn from_ref(state: &AppState) -> Self {
        state.body_limit
    }
}
