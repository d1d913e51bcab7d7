//! The event the gateway publishes for every accepted purchase, on the reservation topic.
//!
//! The same bytes are written to the Redis outbox by the stock
//! script, so a re-publish by the reconciler is byte-for-byte the original event and consumers
//! deduplicate it on `event_id`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, EVENT_VERSION, check_order_fields};
use crate::ids::{OrderId, SaleId, UserId};

/// An accepted purchase: one unit of a sale's stock locked for one user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservationEvent {
    pub version: u32,
    /// Unique per event; consumers deduplicate on it.
    pub event_id: Uuid,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    pub price_cents: i64,
    pub quantity: u32,
    /// When the unit was locked, on the ledger's clock (as the gateway read it just before).
    pub reserved_at: DateTime<Utc>,
    /// When the order must be paid by: the very deadline the stock lock records and payment
    /// and expiry are decided by, so the buyer's message tells what the ledger enforces.
    pub pay_by: DateTime<Utc>,
}

impl ReservationEvent {
    /// A new event for one unit bought by `user_id`, reserved at `reserved_at`, to be paid by
    /// `pay_by` (see [`crate::sale::Sale::pay_by`]).
    pub fn new(
        order_id: OrderId,
        user_id: &UserId,
        price_cents: i64,
        reserved_at: DateTime<Utc>,
        pay_by: DateTime<Utc>,
    ) -> Self {
        Self {
            version: EVENT_VERSION,
            event_id: Uuid::now_v7(),
            sale_id: order_id.sale_id(),
            order_id,
            user_id: user_id.clone(),
            price_cents,
            quantity: 1,
            reserved_at,
            pay_by,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ReservationEvent always serialises")
    }

    /// Parses and checks a message body; any error means the message is poison.
    pub fn from_json(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Self = serde_json::from_slice(bytes)?;
        check_order_fields(
            event.version,
            event.price_cents,
            &event.order_id,
            &event.sale_id,
        )?;
        if event.quantity != 1 {
            return Err(DecodeError::OutOfRange(
                "a version 1 event is for exactly one unit",
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    /// A new event of `user` in `sale`.
    fn event(sale: &str, user: &str, price_cents: i64) -> ReservationEvent {
        let sale: SaleId = sale.parse().unwrap();
        let now = Utc::now();
        ReservationEvent::new(
            OrderId::generate(&sale),
            &user.parse().unwrap(),
            price_cents,
            now,
            now + Duration::minutes(15),
        )
    }

    #[test]
    fn an_event_survives_a_round_trip_through_json() {
        let event = event("spring-sale", "user-7", 1999);
        let decoded = ReservationEvent::from_json(event.to_json().as_bytes()).unwrap();
        assert_eq!(decoded, event);
    }

    #[test]
    fn the_wire_format_names_every_field_of_the_design() {
        let event = event("s1", "u1", 5);
        let value: serde_json::Value = serde_json::from_str(&event.to_json()).unwrap();
        let mut fields: Vec<_> = value.as_object().unwrap().keys().cloned().collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "event_id",
                "order_id",
                "pay_by",
                "price_cents",
                "quantity",
                "reserved_at",
                "sale_id",
                "user_id",
                "version"
            ]
        );
    }

    #[test]
    fn garbage_is_reported_as_malformed() {
        let err = ReservationEvent::from_json(b"{not json").unwrap_err();
        assert!(matches!(err, DecodeError::Malformed(_)), "{err}");
    }

    #[test]
    fn a_future_version_is_refused_rather_than_guessed() {
        let mut value: serde_json::Value =
            serde_json::from_str(&event("s1", "u1", 5).to_json()).unwrap();
        value["version"] = 2.into();
        let err = ReservationEvent::from_json(value.to_string().as_bytes()).unwrap_err();
        assert!(
            matches!(err, DecodeError::UnsupportedVersion { found: 2 }),
            "{err}"
        );
    }

    #[test]
    fn quantities_and_prices_outside_the_range_are_refused() {
        let mut event = event("s1", "u1", 5);
        event.quantity = 2;
        assert!(matches!(
            ReservationEvent::from_json(event.to_json().as_bytes()),
            Err(DecodeError::OutOfRange(_))
        ));
        event.quantity = 1;
        event.price_cents = -1;
        assert!(matches!(
            ReservationEvent::from_json(event.to_json().as_bytes()),
            Err(DecodeError::OutOfRange(_))
        ));
    }

    #[test]
    fn an_order_id_of_another_sale_is_refused() {
        let mut event = event("s1", "u1", 5);
        event.sale_id = "s2".parse().unwrap();
        let err = ReservationEvent::from_json(event.to_json().as_bytes()).unwrap_err();
        assert!(matches!(err, DecodeError::Inconsistent { .. }), "{err}");
    }
}
