//! Liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to sell: the stock ledger (Redis) and Kafka both answer, and the blacklist copy is
/// current (a stale one would let a banned user buy). 503 otherwise, naming what is not.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let (redis, kafka) = tokio::join!(
        state.ledger.ping(),
        state.publisher.is_reachable(state.probe_timeout)
    );
    let redis = redis.is_ok();
    let blacklist = state.blacklist.is_fresh(state.blacklist_max_age);
    let status = if redis && kafka && blacklist {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "redis": redis, "kafka": kafka, "blacklist": blacklist });
    (status, Json(body))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.prometheus.render()
}
