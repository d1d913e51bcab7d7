//! Sale ids and order ids.
//!
//! An order id is `<sale_id>.<uuid v7>`. Carrying the sale lets `GET /orders/{id}` find the
//! sale's keys (and so its Redis Cluster slot) without a global order index, which the stock
//! script could not write atomically because it would live in another slot. UUID v7 keeps ids
//! time-ordered, which PostgreSQL's primary-key index likes.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest sale id accepted; ids appear in every Redis key of the sale.
pub const MAX_SALE_ID_LEN: usize = 64;

/// Whether `id` is a usable sale id: 1 to 64 ASCII letters, digits, `-` or `_`.
pub fn is_valid_sale_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SALE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The id of one order, unique across sales.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderId(String);

/// A string that is not an order id.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an order id (expected <sale_id>.<32 hex digits>)")]
pub struct InvalidOrderId(String);

impl OrderId {
    /// A fresh order id for `sale_id`, which must be valid.
    pub fn generate(sale_id: &str) -> Self {
        debug_assert!(is_valid_sale_id(sale_id));
        Self(format!("{sale_id}.{}", Uuid::now_v7().simple()))
    }

    /// The sale this order belongs to.
    pub fn sale_id(&self) -> &str {
        self.0.rsplit_once('.').map_or("", |(sale_id, _)| sale_id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderId {
    type Error = InvalidOrderId;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        let well_formed = value.rsplit_once('.').is_some_and(|(sale_id, suffix)| {
            is_valid_sale_id(sale_id)
                && suffix.len() == 32
                && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        });
        if well_formed {
            Ok(Self(value))
        } else {
            Err(InvalidOrderId(value))
        }
    }
}

impl std::str::FromStr for OrderId {
    type Err = InvalidOrderId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

impl From<OrderId> for String {
    fn from(id: OrderId) -> Self {
        id.0
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_order_id_names_its_sale_and_parses_back() {
        let id = OrderId::generate("black-friday_2026");
        assert_eq!(id.sale_id(), "black-friday_2026");
        assert_eq!(id.as_str().parse::<OrderId>().unwrap(), id);
    }

    #[test]
    fn order_ids_are_unique() {
        assert_ne!(OrderId::generate("s"), OrderId::generate("s"));
    }

    #[test]
    fn malformed_order_ids_are_refused() {
        for bad in [
            "",
            "s1",
            "s1.",
            "s1.xyz",
            "bad sale.0123456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<OrderId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sale_ids_are_short_and_plain() {
        assert!(is_valid_sale_id("spring-2026_a"));
        for bad in ["", "a.b", "a b", "{tag}", &"x".repeat(MAX_SALE_ID_LEN + 1)] {
            assert!(!is_valid_sale_id(bad), "{bad:?} was accepted");
        }
    }
}
