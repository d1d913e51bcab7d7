//! The API's vocabulary of answers: the code of every refusal, and what a purchase attempt
//! came to, with the metrics that count them. One enum each, so the error body, the metric
//! labels, the dashboard's tally and the load test's reading of an answer are the same words
//! by construction.

use std::time::Duration;

use axum::http::StatusCode;
use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Purchase attempts, by `outcome` ([`PurchaseOutcome::as_str`]).
pub const PURCHASES_TOTAL: &str = "seckill_purchases_total";
/// Time to answer a purchase attempt.
pub const PURCHASE_DURATION_SECONDS: &str = "seckill_purchase_duration_seconds";

/// The machine-readable `error` of a refusal (`docs/architecture.md`, "The API").
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    Unauthenticated,
    Blacklisted,
    SaleNotOpen,
    UnknownSale,
    NotFound,
    MethodNotAllowed,
    AlreadyPurchased,
    SaleExists,
    OrderExpired,
    OrderFailed,
    SoldOut,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    Internal,
}

impl ErrorCode {
    /// Every code, in the order of declaration (so `code as usize` is its position).
    pub const ALL: [Self; 17] = [
        Self::InvalidRequest,
        Self::Unauthenticated,
        Self::Blacklisted,
        Self::SaleNotOpen,
        Self::UnknownSale,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::AlreadyPurchased,
        Self::SaleExists,
        Self::OrderExpired,
        Self::OrderFailed,
        Self::SoldOut,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The HTTP status every refusal with this code answers with.
    pub fn status(self) -> StatusCode {
        match self {
            Self::InvalidRequest => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::Blacklisted | Self::SaleNotOpen => StatusCode::FORBIDDEN,
            Self::UnknownSale | Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::AlreadyPurchased | Self::SaleExists | Self::OrderExpired | Self::OrderFailed => {
                StatusCode::CONFLICT
            }
            Self::SoldOut => StatusCode::GONE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code as the body spells it, e.g. `sold_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::Unauthenticated => "unauthenticated",
            Self::Blacklisted => "blacklisted",
            Self::SaleNotOpen => "sale_not_open",
            Self::UnknownSale => "unknown_sale",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::AlreadyPurchased => "already_purchased",
            Self::SaleExists => "sale_exists",
            Self::OrderExpired => "order_expired",
            Self::OrderFailed => "order_failed",
            Self::SoldOut => "sold_out",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }
}

/// A code the API does not have.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is no error code of the API")]
pub struct UnknownCode(String);

impl std::str::FromStr for ErrorCode {
    type Err = UnknownCode;

    fn from_str(text: &str) -> Result<Self, UnknownCode> {
        Self::ALL
            .into_iter()
            .find(|code| code.as_str() == text)
            .ok_or_else(|| UnknownCode(text.to_owned()))
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one purchase attempt came to: a 202 (a unit locked, the order on its way), or a
/// refusal with its code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PurchaseOutcome {
    Accepted,
    Refused(ErrorCode),
}

impl PurchaseOutcome {
    /// How many outcomes there are.
    pub const COUNT: usize = 1 + ErrorCode::ALL.len();

    /// Every outcome, [`PurchaseOutcome::Accepted`] first, in the order of [`Self::index`].
    pub fn all() -> impl Iterator<Item = Self> {
        std::iter::once(Self::Accepted).chain(ErrorCode::ALL.map(Self::Refused))
    }

    /// Its position among [`Self::all`], for a table of counters indexed without a search.
    pub fn index(self) -> usize {
        match self {
            Self::Accepted => 0,
            Self::Refused(code) => 1 + code as usize,
        }
    }

    /// `accepted`, or the refusal's code: the `outcome` label of the purchase metric.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Refused(code) => code.as_str(),
        }
    }
}

/// The purchase's metric handles, registered once, so an attempt counts without looking a
/// metric up by its name and labels. Every outcome's series exists from the start: a stock
/// sells out in well under one scrape interval, so a series born at the first acceptance would
/// already hold its final count when first scraped, and `rate()` would show nothing.
pub struct PurchaseMetrics {
    /// By outcome, at [`PurchaseOutcome::index`].
    outcomes: Vec<Counter>,
    duration: Histogram,
}

impl PurchaseMetrics {
    /// Registers them with the installed recorder, whose handle is asked for as proof that
    /// it is installed: a metric handle made before that records nowhere.
    pub fn register(_installed: &PrometheusHandle) -> Self {
        Self {
            outcomes: PurchaseOutcome::all()
                .map(|outcome| {
                    let counter = counter!(PURCHASES_TOTAL, "outcome" => outcome.as_str());
                    counter.increment(0);
                    counter
                })
                .collect(),
            duration: histogram!(PURCHASE_DURATION_SECONDS),
        }
    }

    /// Counts one attempt that came to `outcome` after `took`.
    pub fn record(&self, outcome: PurchaseOutcome, took: Duration) {
        self.outcomes[outcome.index()].increment(1);
        self.duration.record(took);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_sits_at_its_own_index() {
        let outcomes: Vec<PurchaseOutcome> = PurchaseOutcome::all().collect();
        assert_eq!(outcomes.len(), PurchaseOutcome::COUNT);
        for (position, outcome) in outcomes.iter().enumerate() {
            assert_eq!(outcome.index(), position, "{outcome:?}");
        }
    }

    #[test]
    fn a_code_is_spelled_as_serde_writes_it() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
            assert_eq!(serde_json::from_value::<ErrorCode>(json).unwrap(), code);
            assert_eq!(code.as_str().parse::<ErrorCode>().unwrap(), code);
        }
    }
}
