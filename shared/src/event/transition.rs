//! The event of an order's transition (created, paid, expired, failed), on the order-event
//! topic.
//!
//! The ledger step that changes an order's status writes this event into the sale's
//! transition outbox in the same atomic step (the Redis backend builds the JSON in Lua), and a
//! relay publishes it from there; so a transition is never made without its event, and a
//! re-published copy is byte-for-byte the first. There is one event per order and status, and
//! its `event_id` says so (`<order id>:<status>`): consumers deduplicate on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{DecodeError, EVENT_VERSION, check_order_fields};
use crate::ids::{OrderId, SaleId, UserId};
use crate::order_status::OrderStatus;

/// The namespace of the UUIDs that stand for transition event ids in the consumer loop.
const TRANSITION_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5ec6_111e_0e7e_4a8b_9c1d_2f3a_4b5c_6d7e);

/// An order moved to `status` at `at`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransitionEvent {
    pub version: u32,
    /// `<order id>:<status>`: one event per order and status.
    pub event_id: String,
    pub order_id: OrderId,
    pub sale_id: SaleId,
    pub user_id: UserId,
    /// The unit's price: a payment's revenue, a returned unit's value.
    pub price_cents: i64,
    /// Never `processing`: that is where an order starts, not a transition.
    pub status: OrderStatus,
    /// When the ledger made the change, in unix milliseconds on its clock.
    #[serde(with = "chrono::serde::ts_milliseconds")]
    pub at: DateTime<Utc>,
}

impl TransitionEvent {
    /// The event of `order_id` (owned by `user_id`, priced `price_cents`) moving to `status`
    /// at `at_ms` (unix ms on the ledger's clock).
    pub fn new(
        order_id: &OrderId,
        user_id: &UserId,
        price_cents: i64,
        status: OrderStatus,
        at_ms: i64,
    ) -> Self {
        Self {
            version: EVENT_VERSION,
            event_id: Self::event_id_of(order_id, status),
            sale_id: order_id.sale_id(),
            order_id: order_id.clone(),
            user_id: user_id.clone(),
            price_cents,
            status,
            at: DateTime::from_timestamp_millis(at_ms).unwrap_or_default(),
        }
    }

    /// The event id of `order_id`'s move to `status`.
    pub fn event_id_of(order_id: &OrderId, status: OrderStatus) -> String {
        format!("{order_id}:{}", status.as_str())
    }

    /// The event id as a UUID (name-based, so every copy maps to the same one).
    pub fn uuid(&self) -> Uuid {
        Uuid::new_v5(&TRANSITION_ID_NAMESPACE, self.event_id.as_bytes())
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a TransitionEvent always serialises")
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
        if event.status == OrderStatus::Processing {
            return Err(DecodeError::OutOfRange(
                "processing is where an order starts, not a transition",
            ));
        }
        if event.event_id != Self::event_id_of(&event.order_id, event.status) {
            return Err(DecodeError::OutOfRange(
                "event_id must be the order id and the status, joined by ':'",
            ));
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paid() -> TransitionEvent {
        let sale: SaleId = "s1".parse().unwrap();
        let order = OrderId::generate(&sale);
        TransitionEvent::new(
            &order,
            &"u1".parse().unwrap(),
            1999,
            OrderStatus::Paid,
            1_795_000_000_123,
        )
    }

    #[test]
    fn an_event_survives_a_round_trip_with_its_time_in_milliseconds() {
        let event = paid();
        let json = event.to_json();
        assert!(json.contains(r#""at":1795000000123"#), "{json}");
        assert!(json.contains(r#""status":"paid""#), "{json}");
        assert_eq!(TransitionEvent::from_json(json.as_bytes()).unwrap(), event);
    }

    #[test]
    fn copies_share_an_id_and_statuses_do_not() {
        let event = paid();
        assert_eq!(event.uuid(), event.clone().uuid());
        let mut expired = event.clone();
        expired.status = OrderStatus::Expired;
        expired.event_id = TransitionEvent::event_id_of(&expired.order_id, expired.status);
        assert_ne!(event.uuid(), expired.uuid());
    }

    #[test]
    fn a_processing_status_or_a_mismatched_id_is_poison() {
        let mut event = paid();
        event.status = OrderStatus::Processing;
        event.event_id = TransitionEvent::event_id_of(&event.order_id, event.status);
        assert!(matches!(
            TransitionEvent::from_json(event.to_json().as_bytes()),
            Err(DecodeError::OutOfRange(_))
        ));
        let mut event = paid();
        event.event_id = "something-else".into();
        assert!(matches!(
            TransitionEvent::from_json(event.to_json().as_bytes()),
            Err(DecodeError::OutOfRange(_))
        ));
    }
}
