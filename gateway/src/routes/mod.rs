//! The HTTP API (`docs/architecture.md`, "The HTTP API"), one module per resource, and the
//! layers in front of it.
//!
//! Each API route is registered with its OpenAPI description (`crate::openapi`), served at
//! `/api/v1/openapi.json`.
//!
//! Overload protection wraps the API: one concurrency limit shared by every API route; a
//! request beyond it is shed at once with 503 (a queue would only add latency to a request
//! that is already late), and every request has a deadline. The event streams sit outside
//! those two (they are long by design) and have a bound of their own. Health and the pages
//! sit outside them all, so they answer even when the API is saturated; readiness answers
//! from a background check, so a flood of probes costs no Redis or Kafka call. `/metrics`
//! is not on this router at all: [`metrics_router`] serves it on its own address. Every
//! answer carries the browser's security headers (`headers`).

mod admin;
mod demo;
mod headers;
mod health;
mod live;
mod order_events;
mod orders;
mod purchase;
mod sales;
mod stream_token;

use std::net::SocketAddr;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{BoxError, Router};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::Config;
use crate::error::ApiError;
use crate::openapi::{ApiDoc, Document};
use crate::pages;
use crate::state::AppState;

/// The whole application, ready to serve (with `ConnectInfo<SocketAddr>`).
pub fn router(state: AppState, config: &Config) -> Router {
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(admin::create_sale))
        .routes(routes!(admin::mint_token))
        .routes(routes!(admin::ban))
        .routes(routes!(admin::unban))
        .routes(routes!(sales::list_sales))
        .routes(routes!(sales::get_sale))
        .routes(routes!(purchase::purchase))
        .routes(routes!(sales::get_stats))
        .routes(routes!(orders::get_order))
        .routes(routes!(orders::get_my_order))
        .routes(routes!(orders::pay_order))
        .routes(routes!(stream_token::stream_token));
    if config.demo {
        api = api.routes(routes!(demo::sign_in));
    }
    let (api, mut openapi) = api.split_for_parts();
    // The streams stay open for minutes: outside the request deadline and the concurrency
    // limit, bounded by their own number instead (`crate::push`).
    let (streams, streams_openapi) = OpenApiRouter::new()
        .routes(routes!(order_events::order_events))
        .routes(routes!(live::sale_live))
        .split_for_parts();
    openapi.merge(streams_openapi);
    let document = Document::render(&openapi);
    let deadline = config.request_timeout();
    let api = api
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |error| async move {
                    overload_to_error(error, deadline)
                }))
                .load_shed()
                // Global: `Router::layer` wraps each route separately, and a plain
                // concurrency limit would get one semaphore per route.
                .layer(GlobalConcurrencyLimitLayer::new(
                    config.concurrency_limit.get(),
                ))
                .timeout(config.request_timeout()),
        )
        .merge(streams)
        .route_layer(middleware::from_fn_with_state(state.clone(), limit_clients));
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/api/v1/openapi.json", get(move || async move { document }))
        .merge(pages::router())
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal {
                during: "handling the request",
                source: "a handler panicked".into(),
            }
            .into_response()
        }))
        .layer(middleware::map_response(headers::add))
        .with_state(state)
}

/// `/metrics` (Prometheus text), for the operator's address only.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// The global and per-IP limits, before any other work (even before checking the token).
async fn limit_clients(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    state.limits.check_global()?;
    state.limits.check_ip(peer.ip())?;
    Ok(next.run(request).await)
}

/// The overload layers' refusals: shed (nothing was done), or past the request's deadline
/// (`deadline`; what it did is unknown).
fn overload_to_error(error: BoxError, deadline: Duration) -> ApiError {
    if error.is::<tower::timeout::error::Elapsed>() {
        ApiError::DeadlinePassed(deadline)
    } else if error.is::<tower::load_shed::error::Overloaded>() {
        ApiError::Unavailable(crate::error::AT_CAPACITY)
    } else {
        ApiError::Internal {
            during: "running the overload layers",
            source: error,
        }
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
