//! The events on the bus: what a consumer receives, one versioned schema per topic, so a
//! consumer can refuse (dead-letter) a message it does not understand instead of guessing.
//!
//! | topic | event | written by |
//! | --- | --- | --- |
//! | reservations | [`ReservationEvent`]: a unit locked for a buyer | the gateway's stock lock |
//! | order events | [`TransitionEvent`]: an order became created, paid, expired or failed | the ledger step that made the change, through its outbox |
//!
//! A consumer names the events it takes by a type implementing [`Consumed`]: one of the two,
//! or [`OrderEvent`] for both (the SMS and statistics workers follow an order's whole life).

mod reservation;
mod transition;

use uuid::Uuid;

pub use self::reservation::ReservationEvent;
pub use self::transition::TransitionEvent;
use crate::ids::{OrderId, SaleId};
use crate::sale::MAX_PRICE_CENTS;

/// The schema version this build writes and understands.
pub const EVENT_VERSION: u32 = 1;

/// Why a message could not become an event. Such a message is poison: retrying cannot help,
/// so consumers send it to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the message is not a valid event: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("event version {found} is not understood (this build reads version {EVENT_VERSION})")]
    UnsupportedVersion { found: u32 },
    #[error("order id {order_id} does not belong to sale {sale_id}")]
    Inconsistent { order_id: OrderId, sale_id: SaleId },
    #[error("{0}")]
    OutOfRange(&'static str),
}

/// The checks both kinds of event share: the version this build reads, a price in range, an
/// order id of the event's sale.
fn check_order_fields(
    version: u32,
    price_cents: i64,
    order_id: &OrderId,
    sale_id: &SaleId,
) -> Result<(), DecodeError> {
    if version != EVENT_VERSION {
        return Err(DecodeError::UnsupportedVersion { found: version });
    }
    if !(0..=MAX_PRICE_CENTS).contains(&price_cents) {
        return Err(DecodeError::OutOfRange(
            "price_cents is outside the accepted range",
        ));
    }
    if order_id.sale_id() != *sale_id {
        return Err(DecodeError::Inconsistent {
            order_id: order_id.clone(),
            sale_id: sale_id.clone(),
        });
    }
    Ok(())
}

/// The topics events arrive on, by what they carry (the names are the bus's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Reservations,
    OrderEvents,
}

/// An event a consumer loop can hand to a handler.
pub trait Consumed: Sized + Send + Sync + 'static {
    /// The topics this kind of event arrives on; a consumer subscribes to these.
    const STREAMS: &'static [Stream];

    /// Parses and checks a message of `stream`; any error means the message is poison.
    fn decode(stream: Stream, payload: &[u8]) -> Result<Self, DecodeError>;

    /// Unique per event and the same for every copy of it (a re-publish, a redelivery).
    fn id(&self) -> Uuid;

    /// The order the event is about.
    fn order_id(&self) -> &OrderId;
}

impl Consumed for ReservationEvent {
    const STREAMS: &'static [Stream] = &[Stream::Reservations];

    fn decode(_: Stream, payload: &[u8]) -> Result<Self, DecodeError> {
        Self::from_json(payload)
    }

    fn id(&self) -> Uuid {
        self.event_id
    }

    fn order_id(&self) -> &OrderId {
        &self.order_id
    }
}

impl Consumed for TransitionEvent {
    const STREAMS: &'static [Stream] = &[Stream::OrderEvents];

    fn decode(_: Stream, payload: &[u8]) -> Result<Self, DecodeError> {
        Self::from_json(payload)
    }

    fn id(&self) -> Uuid {
        self.uuid()
    }

    fn order_id(&self) -> &OrderId {
        &self.order_id
    }
}

/// Any event of an order's life: its reservation, then its transitions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    Reserved(ReservationEvent),
    Transition(TransitionEvent),
}

impl Consumed for OrderEvent {
    const STREAMS: &'static [Stream] = &[Stream::Reservations, Stream::OrderEvents];

    fn decode(stream: Stream, payload: &[u8]) -> Result<Self, DecodeError> {
        Ok(match stream {
            Stream::Reservations => Self::Reserved(ReservationEvent::from_json(payload)?),
            Stream::OrderEvents => Self::Transition(TransitionEvent::from_json(payload)?),
        })
    }

    fn id(&self) -> Uuid {
        match self {
            Self::Reserved(event) => event.id(),
            Self::Transition(event) => event.id(),
        }
    }

    fn order_id(&self) -> &OrderId {
        match self {
            Self::Reserved(event) => &event.order_id,
            Self::Transition(event) => &event.order_id,
        }
    }
}
