//! Every way a request can fail, and the status and JSON body each one answers with.
//!
//! Handlers return `Result<_, ApiError>`; the body is always
//! `{"error": "<code>", "message": "<sentence>"}`. An internal failure answers an opaque 500
//! and its cause is logged once, here.

use std::sync::LazyLock;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shared::error::StoreError;
use shared::ids::OrderId;
use shared::sale::SaleState;
use utoipa::ToSchema;

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
    /// A dependency failed or the gateway is saturated; the sentence says what to do.
    #[error("{0}")]
    Unavailable(&'static str),
    #[error("internal error")]
    Internal(String),
}

fn state_name(state: SaleState) -> &'static str {
    match state {
        SaleState::Upcoming => "not open yet",
        SaleState::Open => "open",
        SaleState::SoldOut => "sold out",
        SaleState::Ended => "over",
    }
}

/// What a 503 says when a Redis call outlived its deadline. The script may still have run
/// after we stopped waiting, so the answer cannot promise that nothing was locked; it says how
/// a retry finds out instead.
pub const SLOW_STOCK: &str = "the stock service did not answer in time; try again (if the purchase went through, the retry answers already_purchased with its order id)";

/// What a 503 says when a Redis call failed. Usually nothing was locked (Redis refused the
/// connection), but a connection lost after the script was sent cannot tell, so the answer
/// again says how a retry finds out.
pub const FAILED_STOCK: &str = "the stock service is unreachable; try again (if the purchase went through, the retry answers already_purchased with its order id)";

/// What a 503 says when the stock lock's answer was lost and the ledger, asked after it, held
/// nothing for the order: the buyer is promised that nothing was locked.
pub const NOTHING_LOCKED: &str =
    "the stock service did not answer in time and nothing was locked; try again";

/// What a 503 says when the gateway shed the request before it reached the stock lock.
pub const AT_CAPACITY: &str = "the gateway is at capacity; nothing was locked, try again";

/// Whether a 503's message promises that nothing was locked (the load test holds the gateway
/// to it); [`SLOW_STOCK`] and [`FAILED_STOCK`] promise nothing.
pub fn promises_nothing_locked(message: &str) -> bool {
    message == NOTHING_LOCKED || message == AT_CAPACITY
}

/// The body of every answer that is not a success.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for programs: one of the codes of `docs/architecture.md`
    /// (`invalid_request`, `unauthenticated`, `sold_out`, …).
    #[schema(example = "sold_out")]
    error: &'static str,
    /// What went wrong and what to do, for people.
    message: String,
    /// The buyer's existing order, on `already_purchased`.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<OrderId>,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::Blacklisted | Self::SaleNotOpen(_) => StatusCode::FORBIDDEN,
            Self::UnknownSale | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyPurchased { .. }
            | Self::SaleExists
            | Self::OrderExpired
            | Self::OrderFailed => StatusCode::CONFLICT,
            Self::SoldOut => StatusCode::GONE,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited(_) | Self::TooManyStreams(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable `error` code of the API (`docs/architecture.md`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "invalid_request",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Blacklisted => "blacklisted",
            Self::SaleNotOpen(_) => "sale_not_open",
            Self::UnknownSale => "unknown_sale",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyPurchased { .. } => "already_purchased",
            Self::SaleExists => "sale_exists",
            Self::OrderExpired => "order_expired",
            Self::OrderFailed => "order_failed",
            Self::SoldOut => "sold_out",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited(_) | Self::TooManyStreams(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal",
        }
    }
}

impl From<RateLimited> for ApiError {
    fn from(refusal: RateLimited) -> Self {
        Self::RateLimited(refusal)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::warn!(%error, "stock ledger call failed");
        match error {
            StoreError::Timeout(_) => Self::Unavailable(SLOW_STOCK),
            StoreError::Failed(_) => Self::Unavailable(FAILED_STOCK),
        }
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
        if let Self::Internal(cause) = &self {
            tracing::error!(cause, "request failed");
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
            (ApiError::Unavailable("Redis is down"), 503, "unavailable"),
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
        let (status, body, _) = body_of(ApiError::Internal("secret detail".into())).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("secret detail"));
    }
}
