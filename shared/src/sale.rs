//! A sale: what is sold, at what price, how many, and when.
//!
//! Sales are immutable once created, so every gateway may cache them forever; only the stock
//! counter beside them changes.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::SaleId;

/// Largest stock one sale may have. The outbox holds at most one entry per unit, so this also
/// bounds the outbox while Kafka is down.
pub const MAX_STOCK: u32 = 1_000_000;
/// Highest unit price, in cents. With [`MAX_STOCK`] it keeps any sale's revenue far inside
/// the 64-bit counters of PostgreSQL and Redis.
pub const MAX_PRICE_CENTS: i64 = 10_000_000_000;
const MAX_NAME_LEN: usize = 200;
/// The payment window a sale gets when its creator names none: 15 minutes.
pub const DEFAULT_PAYMENT_WINDOW_SECS: u32 = 900;
/// Longest payment window: a day. A unit held unpaid longer is a unit nobody can buy.
pub const MAX_PAYMENT_WINDOW_SECS: u32 = 86_400;

/// A flash sale, as created by the admin API and stored in Redis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Sale {
    pub id: SaleId,
    /// 1 to 200 characters, not all white space (Unicode's White_Space).
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"[^\t-\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]"
    )]
    pub name: String,
    #[schema(minimum = 0, maximum = 10_000_000_000_i64)]
    pub price_cents: i64,
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub stock: u32,
    pub starts_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    /// How long a buyer has to pay, from the stock lock, but never past `ends_at` (see
    /// [`Sale::pay_by`]); an order unpaid by then expires and its unit goes back on sale.
    #[serde(default = "default_payment_window_secs")]
    #[schema(minimum = 1, maximum = 86_400, default = 900)]
    pub payment_window_secs: u32,
}

fn default_payment_window_secs() -> u32 {
    DEFAULT_PAYMENT_WINDOW_SECS
}

/// Where a sale stands for a buyer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SaleState {
    Upcoming,
    Open,
    SoldOut,
    Ended,
}

impl Sale {
    /// Checks every field the types do not (the id is a [`SaleId`] already); the error is a
    /// sentence for the API's `message`.
    pub fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() || self.name.chars().count() > MAX_NAME_LEN {
            return Err(format!("name must be 1 to {MAX_NAME_LEN} characters"));
        }
        if !(0..=MAX_PRICE_CENTS).contains(&self.price_cents) {
            return Err(format!(
                "price_cents must be between 0 and {MAX_PRICE_CENTS}"
            ));
        }
        if self.stock == 0 || self.stock > MAX_STOCK {
            return Err(format!("stock must be between 1 and {MAX_STOCK}"));
        }
        if !(1..=MAX_PAYMENT_WINDOW_SECS).contains(&self.payment_window_secs) {
            return Err(format!(
                "payment_window_secs must be between 1 and {MAX_PAYMENT_WINDOW_SECS}"
            ));
        }
        if self.ends_at <= self.starts_at {
            return Err("ends_at must be after starts_at".into());
        }
        Ok(())
    }

    /// The state at `now` with `remaining` units left.
    pub fn state(&self, now: DateTime<Utc>, remaining: u32) -> SaleState {
        if now < self.starts_at {
            SaleState::Upcoming
        } else if now >= self.ends_at {
            SaleState::Ended
        } else if remaining == 0 {
            SaleState::SoldOut
        } else {
            SaleState::Open
        }
    }

    /// When a unit locked at `reserved_at` must be paid by: the payment window, closed at
    /// the sale's end. A unit that comes back after the end cannot sell again, so a window
    /// outliving the sale would only strand it; closed at `ends_at`, every order is final one
    /// expiry sweep after the sale ends. Whole milliseconds, as the ledgers keep deadlines.
    pub fn pay_by(&self, reserved_at: DateTime<Utc>) -> DateTime<Utc> {
        let window = chrono::Duration::seconds(i64::from(self.payment_window_secs));
        (reserved_at + window).min(self.ends_at).trunc_subsecs(3)
    }

    /// Whether purchases are accepted at `now` (stock aside).
    pub fn is_open_at(&self, now: DateTime<Utc>) -> bool {
        self.starts_at <= now && now < self.ends_at
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn sale() -> Sale {
        let now = Utc::now();
        Sale {
            id: "s1".parse().unwrap(),
            name: "Phone".into(),
            price_cents: 99_900,
            stock: 10,
            starts_at: now - Duration::minutes(1),
            ends_at: now + Duration::minutes(1),
            payment_window_secs: DEFAULT_PAYMENT_WINDOW_SECS,
        }
    }

    #[test]
    fn the_documented_name_pattern_refuses_exactly_the_blank_characters_validate_trims() {
        let schema = serde_json::to_value(<Sale as utoipa::PartialSchema>::schema()).unwrap();
        let pattern = schema["properties"]["name"]["pattern"].as_str().unwrap();
        let not_blank = regex::Regex::new(pattern).unwrap();
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(
                not_blank.is_match(c.encode_utf8(&mut [0; 4])),
                !c.is_whitespace(),
                "{c:?}"
            );
        }
    }

    #[test]
    fn a_well_formed_sale_is_valid() {
        assert_eq!(sale().validate(), Ok(()));
    }

    #[test]
    fn each_bad_field_is_named_in_the_error() {
        type Spoil = fn(&mut Sale);
        let cases: [(Spoil, &str); 5] = [
            (|s| s.name = " ".into(), "name"),
            (|s| s.price_cents = -1, "price_cents"),
            (|s| s.price_cents = MAX_PRICE_CENTS + 1, "price_cents"),
            (|s| s.stock = 0, "stock"),
            (|s| s.ends_at = s.starts_at, "ends_at"),
        ];
        for (spoil, field) in cases {
            let mut bad = sale();
            spoil(&mut bad);
            let message = bad.validate().unwrap_err();
            assert!(message.starts_with(field), "{field}: {message}");
        }
    }

    #[test]
    fn a_sale_with_a_bad_id_does_not_even_parse() {
        let mut json = serde_json::to_value(sale()).unwrap();
        json["id"] = "a b".into();
        let error = serde_json::from_value::<Sale>(json)
            .unwrap_err()
            .to_string();
        assert!(error.contains("sale id"), "{error}");
    }

    #[test]
    fn the_state_follows_the_window_and_the_stock() {
        let s = sale();
        assert_eq!(
            s.state(s.starts_at - Duration::seconds(1), 10),
            SaleState::Upcoming
        );
        assert_eq!(s.state(s.starts_at, 10), SaleState::Open);
        assert_eq!(s.state(s.starts_at, 0), SaleState::SoldOut);
        assert_eq!(s.state(s.ends_at, 10), SaleState::Ended);
        assert!(s.is_open_at(s.starts_at));
        assert!(!s.is_open_at(s.ends_at));
    }

    #[test]
    fn a_payment_window_closes_at_the_sales_end() {
        let s = sale();
        let window = Duration::seconds(i64::from(s.payment_window_secs));
        let early = s.ends_at - window - Duration::seconds(5);
        assert_eq!(
            s.pay_by(early),
            (early + window).trunc_subsecs(3),
            "the whole window fits"
        );
        let late = s.ends_at - Duration::seconds(5);
        assert_eq!(
            s.pay_by(late),
            s.ends_at.trunc_subsecs(3),
            "a window that would outlive the sale"
        );
    }
}
