//! Liveness, readiness and metrics. Readiness is answered from the background check of
//! `crate::readiness`; metrics are served on their own address (`METRICS_ADDR`), never on
//! the public port.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// The process is up and serving HTTP.
pub async fn healthz() -> &'static str {
    "ok"
}

/// Ready to sell: at the last background check the stock ledger (Redis) and Kafka both
/// answered, and the blacklist copy is current (a stale one would let a banned user buy).
/// 503 otherwise, naming what is not. No request here touches Redis or Kafka.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let checked = state.readiness.current();
    let redis = checked.is_some_and(|checked| checked.redis);
    let kafka = checked.is_some_and(|checked| checked.kafka);
    let blacklist = state.blacklist.is_fresh(state.blacklist_max_age);
    let status = if redis && kafka && blacklist {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "redis": redis,
        "kafka": kafka,
        "blacklist": blacklist,
        "checked_at": checked.map(|checked| checked.checked_at),
    });
    (status, Json(body))
}

/// Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> String {
    state.prometheus.render()
}
