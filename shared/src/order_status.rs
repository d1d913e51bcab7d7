//! Where an order stands: the statuses of its life, as the ledger stores them, the API shows
//! them and the transition events carry them.
//!
//! ```text
//! processing ──row stored──▶ created ──paid in time──▶ paid
//!     │                         └──window passed──▶ expired   (unit back on sale)
//!     └──row refused──▶ failed                                 (unit back on sale)
//! ```

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an order stands, as the buyer sees it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Accepted; the order row is not written yet.
    Processing,
    /// The order row is in the order store; payment is awaited.
    Created,
    /// Paid in time: final.
    Paid,
    /// Not paid in time; its unit went back on sale: final.
    Expired,
    /// The order could not be created (its event went to the dead-letter topic); its unit went
    /// back on sale: final.
    Failed,
}

impl OrderStatus {
    /// The status as the ledger stores it and the API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Created => "created",
            Self::Paid => "paid",
            Self::Expired => "expired",
            Self::Failed => "failed",
        }
    }

    /// Paid, expired or failed: nothing follows.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Paid | Self::Expired | Self::Failed)
    }

    /// The status stored as `stored` (a missing one is `processing`: the lock wrote it).
    pub fn from_stored(stored: Option<&str>) -> Self {
        stored.and_then(Self::named).unwrap_or(Self::Processing)
    }

    /// The status named `name` ([`Self::as_str`]), if it is one.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "processing" => Some(Self::Processing),
            "created" => Some(Self::Created),
            "paid" => Some(Self::Paid),
            "expired" => Some(Self::Expired),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}
