//! `hello-world`: the HTTP ceiling of the benchmark. The same stack as the gateway (tokio,
//! hyper, axum, serde_json) answering the purchase route with a constant 410, and nothing
//! else: no token, no limits, no metrics, no Redis. `scripts/bench` compares the gateway's
//! sold-out path against it.

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18181".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let app = axum::Router::new().route("/api/v1/sales/{sale_id}/orders", post(sold_out));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn sold_out() -> (StatusCode, Json<Value>) {
    (
        StatusCode::GONE,
        Json(json!({"error": "sold_out", "message": "the sale is sold out"})),
    )
}
