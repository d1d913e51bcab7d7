//! Every way a request can fail, and the status and JSON body each one answers with.
//!
//! Handlers return `Result<_, ApiError>`; the body is always
//! `{"error": "<code>", "message": "<sentence>"}`. A failure beneath (a store's, a signer's)
//! travels as the error's `source` and is logged once, here, when the answer is rendered: an
//! internal failure answers an opaque 500.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::error::{Cause, StoreError};
use shared::ids::OrderId;
use shared::sale::SaleState;
use utoipa::ToSchema;

use crate::outcome::ErrorCode;
use crate::risk::limits::RateLimited;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("this user may not buy")]
    Blacklisted,
    #[error("the sale is {}", state_name(*.0))]
    SaleNotOpen(SaleState),
    #[error("no sale has this id")]
    UnknownSale,
    #[error("not found")]
    NotFound,
    #[error("this method is not allowed on this path")]
    MethodNotAllowed,
    #[error("this user already bought in this sale (order {order_id})")]
    AlreadyPurchased { order_id: OrderId },
    #[error("a sale with this id already exists")]
    SaleExists,
    #[error("the order was not paid in time; its unit went back on sale")]
    OrderExpired,
    #[error(
        "the order could not be created, so there is nothing to pay; its unit went back on sale"
    )]
    OrderFailed,
    #[error("the sale is sold out")]
    SoldOut,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the request body must be JSON (Content-Type: application/json)")]
    UnsupportedMediaType,
    #[error("too many requests ({} limit); retry after the Retry-After delay", .0.limiter)]
    RateLimited(RateLimited),
    /// A client holds as many event streams as it may; the sentence names the bound.
    #[error("{0}")]
    TooManyStreams(&'static str),
    /// A refusal whose sentence is fixed: saturation, a full bound, a known outcome (nothing
    /// was locked) or an unknown one (a payment unconfirmed).
    #[error("{0}")]
    Unavailable(&'static str),
    /// A store gave no answer, so what the request did is unknown; the sentence says how a
    /// retry finds out.
    #[error("{}", store_unavailable(.0))]
    StoreUnavailable(#[from] StoreError),
    /// The request outlived the gateway's deadline for any request.
    #[error("the gateway did not finish this request within {0:?}; {RETRY_FINDS_OUT}")]
    DeadlinePassed(std::time::Duration),
    /// A failure the caller cannot act on: an opaque 500 that names only the step.
    #[error("internal error while {during}")]
    Internal {
        during: &'static str,
        #[source]
        source: Cause,
    },
}

fn state_name(state: SaleState) -> &'static str {
    match state {
        SaleState::Upcoming => "not open yet",
        SaleState::Open => "open",
        SaleState::SoldOut => "sold out",
        SaleState::Ended => "over",
    }
}

/// How a retry finds out what a request whose answer was lost did: the writes are idempotent,
/// and their retry answers with what the first one did.
const RETRY_FINDS_OUT: &str = "try again (if a purchase went through, the retry answers already_purchased with its order id; if a payment did, the paid order)";

/// What a 503 says when a store gave no answer. A script may still have run after the gateway
/// stopped waiting (or after the connection broke on the way back), so the answer cannot
/// promise that nothing happened; it says how a retry finds out instead. The store's own
/// failure stays out of the body (it is logged).
fn store_unavailable(error: &StoreError) -> String {
    match error {
        StoreError::Timeout(deadline) => {
            format!("the store did not answer within {deadline:?}; {RETRY_FINDS_OUT}")
        }
        StoreError::Failed(_) => format!("the store is unreachable; {RETRY_FINDS_OUT}"),
        StoreError::Unconfirmed(_) => {
            format!("the store could not confirm the change; {RETRY_FINDS_OUT}")
        }
    }
}

/// What a 503 says when the stock lock's answer was lost and the ledger, asked after it, held
/// nothing for the order: the buyer is promised that nothing was locked.
pub const NOTHING_LOCKED: &str =
    "the stock lock's answer was lost and nothing was locked; try again";

/// What a 503 says when the stock lock was taken on a Redis Cluster master but no replica
/// confirmed it in time: the unit is the buyer's unless a failover loses it, so it is neither
/// a 202 nor "nothing locked". A retry answers 409 with the order if it stands.
pub const LOCK_UNCONFIRMED: &str = "your purchase was recorded but not yet confirmed by a replica; if it stands, a retry answers already_purchased with its order id, which a failover before the replica catches up could still lose";

/// What a 503 says when the gateway shed the request before it reached the stock lock.
pub const AT_CAPACITY: &str = "the gateway is at capacity; nothing was locked, try again";

/// Whether a 503's message promises that nothing was locked (the load test holds the gateway
/// to it); a store's silence ([`ApiError::StoreUnavailable`]) promises nothing.
pub fn promises_nothing_locked(message: &str) -> bool {
    message == NOTHING_LOCKED || message == AT_CAPACITY
}

/// The body of every answer that is not a success.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: one of the codes of `docs/architecture.md`.
    error: ErrorCode,
    /// What went wrong and what to do, for people.
    message: String,
    /// The buyer's existing order, on `already_purchased`.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<OrderId>,
}

impl ApiError {
    /// The HTTP status: the one its code answers with.
    pub fn status(&self) -> StatusCode {
        self.code().status()
    }

    /// The machine-readable `error` code of the API (`docs/architecture.md`).
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::InvalidRequest,
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::Blacklisted => ErrorCode::Blacklisted,
            Self::SaleNotOpen(_) => ErrorCode::SaleNotOpen,
            Self::UnknownSale => ErrorCode::UnknownSale,
            Self::NotFound => ErrorCode::NotFound,
            Self::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Self::AlreadyPurchased { .. } => ErrorCode::AlreadyPurchased,
            Self::SaleExists => ErrorCode::SaleExists,
            Self::OrderExpired => ErrorCode::OrderExpired,
            Self::OrderFailed => ErrorCode::OrderFailed,
            Self::SoldOut => ErrorCode::SoldOut,
            Self::PayloadTooLarge(_) => ErrorCode::PayloadTooLarge,
            Self::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Self::RateLimited(_) | Self::TooManyStreams(_) => ErrorCode::RateLimited,
            Self::Unavailable(_) | Self::StoreUnavailable(_) | Self::DeadlinePassed(_) => {
                ErrorCode::Unavailable
            }
            Self::Internal { .. } => ErrorCode::Internal,
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(refusal: RateLimited) -> Self {
        Self::RateLimited(refusal)
    }
}

/// The flood's answer, rendered once: a sold-out refusal allocates no body of its own.
static SOLD_OUT_BODY: LazyLock<Bytes> = LazyLock::new(|| {
    let body = ErrorBody {
        error: ApiError::SoldOut.code(),
        message: ApiError::SoldOut.to_string(),
        order_id: None,
    };
    serde_json::to_vec(&body)
        .expect("an error body serialises")
        .into()
});

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::SoldOut = self {
            let json = HeaderValue::from_static("application/json");
            return (
                self.status(),
                [(header::CONTENT_TYPE, json)],
                SOLD_OUT_BODY.clone(),
            )
                .into_response();
        }
        match &self {
            Self::StoreUnavailable(error) => tracing::warn!(%error, "a store gave no answer"),
            Self::Internal { during, source } => {
                tracing::error!(during, error = %source, "request failed");
            }
            _ => {}
        }
        let body = ErrorBody {
            error: self.code(),
            message: self.to_string(),
            order_id: match &self {
                Self::AlreadyPurchased { order_id } => Some(order_id.clone()),
                _ => None,
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Self::RateLimited(RateLimited { retry_after, .. }) = self {
            // Whole seconds, rounded up, at least 1: HTTP has no finer unit.
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value, Option<String>) {
        let response = error.into_response();
        let status = response.status();
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap(), retry_after)
    }

    #[tokio::test]
    async fn each_refusal_maps_to_the_status_and_code_of_the_design() {
        let cases = [
            (
                ApiError::Unauthenticated("missing token"),
                401,
                "unauthenticated",
            ),
            (ApiError::Blacklisted, 403, "blacklisted"),
            (
                ApiError::SaleNotOpen(SaleState::Upcoming),
                403,
                "sale_not_open",
            ),
            (ApiError::UnknownSale, 404, "unknown_sale"),
            (
                ApiError::AlreadyPurchased {
                    order_id: "s.0123456789abcdef0123456789abcdef".parse().unwrap(),
                },
                409,
                "already_purchased",
            ),
            (ApiError::SoldOut, 410, "sold_out"),
            (ApiError::Unavailable(AT_CAPACITY), 503, "unavailable"),
            (
                ApiError::StoreUnavailable(StoreError::Timeout(Duration::from_millis(500))),
                503,
                "unavailable",
            ),
            (
                ApiError::DeadlinePassed(Duration::from_secs(4)),
                503,
                "unavailable",
            ),
            (ApiError::BadRequest("bad".into()), 400, "invalid_request"),
        ];
        for (error, status, code) in cases {
            let (got_status, body, _) = body_of(error).await;
            assert_eq!(got_status.as_u16(), status, "{code}");
            assert_eq!(body["error"], code);
            assert!(!body["message"].as_str().unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn rate_limited_answers_carry_retry_after_rounded_up() {
        let error = ApiError::from(RateLimited {
            limiter: "user",
            retry_after: Duration::from_millis(1200),
        });
        let (status, body, retry_after) = body_of(error).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["error"], "rate_limited");
        assert_eq!(retry_after.as_deref(), Some("2"));
    }

    #[tokio::test]
    async fn an_internal_error_does_not_leak_its_cause() {
        let error = ApiError::Internal {
            during: "signing a token",
            source: "secret detail".into(),
        };
        assert_eq!(
            std::error::Error::source(&error).map(ToString::to_string),
            Some("secret detail".to_owned()),
            "the cause travels as the source, for the log"
        );
        let (status, body, _) = body_of(error).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["message"], "internal error while signing a token");
        assert!(!body.to_string().contains("secret detail"));
    }

    #[tokio::test]
    async fn a_silent_store_is_named_without_its_failure_and_the_retry_explained() {
        let refused = std::io::Error::other("connection refused by 10.0.0.7:6379");
        let (_, body, _) = body_of(ApiError::StoreUnavailable(StoreError::Failed(Box::new(
            refused,
        ))))
        .await;
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with("the store is unreachable"), "{message}");
        assert!(message.contains("already_purchased"), "{message}");
        assert!(!message.contains("10.0.0.7"), "{message}");
        assert!(!promises_nothing_locked(message));
    }
}
