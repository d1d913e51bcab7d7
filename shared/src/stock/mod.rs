//! The stock ledger: the only place a purchase is decided.
//!
//! Its methods are grouped by who calls them, one trait per role: [`Sales`] (the catalog, the
//! clock, the active sales), [`Purchases`] (the stock lock and a buyer's questions, in the
//! gateway), [`Payments`] (the pay route and the payment resolver), [`Outbox`] (the
//! publisher, the relay and the reconciler) and [`OrderLifecycle`] (created, failed, expired,
//! behind the queue); a caller holds the role it uses, and [`StockLedger`] is all of them, for
//! whoever wires the roles up. Two backends implement them with the same semantics, held to
//! them by one conformance suite:
//! [`RedisStockLedger`] (Lua scripts, one round trip per decision, shared by every process) and
//! [`MemoryStockLedger`] (one mutex in one process, for the all-in-one demo and fast tests).

mod clock;
mod memory;
mod redis;
mod replies;
mod scored_set;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use self::memory::MemoryStockLedger;
pub use self::redis::{RedisStockLedger, UNCONFIRMED_WRITES_TOTAL};
pub use self::replies::ReserveReply;
use crate::error::StoreError;
use crate::event::{ReservationEvent, TransitionEvent};
use crate::ids::{OrderId, SaleId, UserId};
pub use crate::order_status::OrderStatus;
use crate::sale::Sale;

/// What the stock lock decided for one purchase attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// One unit is locked for the buyer; `remaining` units are left.
    Reserved { remaining: u32 },
    /// The buyer already holds a unit of this sale, under `order_id`; nothing changed.
    AlreadyPurchased { order_id: OrderId },
    /// No unit left; nothing changed.
    SoldOut,
    /// No such sale; nothing changed.
    UnknownSale,
}

/// What a payment attempt found. Payment and expiry race on one atomic step; exactly one wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payment {
    /// Paid now.
    Paid,
    /// Paid before: a repeat is answered as the first payment was.
    AlreadyPaid,
    /// Its pay-by time had passed (the payment may have been what expired it).
    Expired,
    /// The order could not be created; there is nothing to pay.
    Failed,
    /// Not this user's order, or no such order.
    NotFound,
}

/// What recording a payment intent found ([`Payments::begin_payment`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentIntent {
    /// Recorded: the provider may be asked to charge now.
    Recorded,
    /// Nothing may be charged, and nothing was written: the order is paid already
    /// ([`Payment::AlreadyPaid`]), expired, failed, or not this buyer's.
    Refused(Payment),
}

/// A payment intent due for the resolver's look: the order, its buyer, where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuePayment {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub status: OrderStatus,
}

/// Names one transition event: the order and the status it moved to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransitionId {
    pub order_id: OrderId,
    pub status: OrderStatus,
}

impl TransitionId {
    /// The event id on the wire, `<order id>:<status>`.
    pub fn event_id(&self) -> String {
        TransitionEvent::event_id_of(&self.order_id, self.status)
    }
}

/// A transition event handed to the relay: its id in the outbox, and its JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTransition {
    /// The outbox's key for it (`<order id>:<status>`), which removes it even when the JSON
    /// does not parse.
    pub event_id: String,
    pub payload: String,
}

/// An outbox entry the reconciler may have to publish again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    pub order_id: OrderId,
    /// The event as the stock lock stored it; `None` when the order was created meanwhile
    /// and its outbox entry is gone.
    pub payload: Option<String>,
}

/// Where an outbox entry's publish stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Publication {
    /// The broker has not acknowledged it (yet, or ever).
    Unacknowledged,
    /// The broker acknowledged it, and no order row exists yet.
    Acknowledged,
}

/// How many units of one sale are locked without an order row yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxSizes {
    /// Outbox entries: locked units whose order row is not stored yet.
    pub locked: u64,
    /// Of those, the ones whose publish the broker has not acknowledged.
    pub unacknowledged: u64,
}

/// Stock, buyers, outbox and order status of every sale: every role's methods, which each
/// backend implements. A caller holds the role it uses (an `Arc<dyn StockLedger>` converts to
/// any of them).
///
/// Every change to a sale is one atomic step of the backend; none leaves a half-written sale
/// behind when it fails. (Reads that span two steps say so in the Redis backend.)
pub trait StockLedger: Sales + Purchases + Payments + Outbox + OrderLifecycle {}

impl<T: Sales + Purchases + Payments + Outbox + OrderLifecycle> StockLedger for T {}

/// The sales and the ledger's clock: the gateway's catalog, the sweeps' list of what is
/// still active, and readiness.
#[async_trait]
pub trait Sales: Send + Sync {
    /// Stores a new sale and its stock counter; `false` when the id is taken (nothing changed).
    /// An id stays taken after its sale settled and its keys expired: orders in the order
    /// table still name it (docs/architecture.md, "The order lifecycle").
    async fn create_sale(&self, sale: &Sale) -> Result<bool, StoreError>;

    /// The sale with this id, if it exists.
    async fn sale(&self, sale_id: &SaleId) -> Result<Option<Sale>, StoreError>;

    /// Units left, or `None` for an unknown sale.
    async fn remaining(&self, sale_id: &SaleId) -> Result<Option<u32>, StoreError>;

    /// The clock of the sale's ledger, in unix milliseconds: the one clock every age and
    /// deadline of the sale is measured on (the stock lock stamps entries with it too). On
    /// Redis Cluster, the clock of the master that holds the sale.
    async fn now_ms(&self, sale_id: &SaleId) -> Result<i64, StoreError>;

    /// [`Sales::now_ms`] as a time: what a reservation is stamped with.
    async fn now(&self, sale_id: &SaleId) -> Result<DateTime<Utc>, StoreError> {
        let now_ms = self.now_ms(sale_id).await?;
        DateTime::from_timestamp_millis(now_ms).ok_or_else(|| {
            StoreError::Failed(format!("the ledger's clock is out of range: {now_ms} ms").into())
        })
    }

    /// The sales not settled yet ([`Sales::settle_sale`]).
    async fn active_sale_ids(&self) -> Result<Vec<SaleId>, StoreError>;

    /// Settles the sale if nothing waits in its outbox, no order awaits payment, no transition
    /// event waits for the broker, no payment intent awaits settling, and no purchase can add
    /// to it (it is sold out, or `ended`): it leaves the active sales, and in Redis its keys
    /// expire after `retention`. `false` when work remains (nothing is changed).
    async fn settle_sale(
        &self,
        sale_id: &SaleId,
        ended: bool,
        retention: Duration,
    ) -> Result<bool, StoreError>;

    /// Whether the backend answers now (readiness).
    async fn ping(&self) -> Result<(), StoreError>;
}

/// The buyer's side, which the gateway calls: the stock lock, and what a buyer may ask of their
/// order.
#[async_trait]
pub trait Purchases: Send + Sync {
    /// The stock lock, in one atomic step: an unknown sale, a buyer who already holds a unit
    /// and an empty stock are refused in that order with nothing written; otherwise one unit
    /// is taken and the buyer, the outbox entry (`payload`, the very bytes that will be
    /// published), the unacknowledged mark, the status `processing` and the pay-by time are
    /// recorded. The pay-by time is the event's own `pay_by`, so the buyer is told exactly the
    /// deadline that payment and expiry are decided by. Idempotent on the order id: the same
    /// event again (a client resends a command after a reconnect) answers `Reserved` and
    /// writes nothing, where another attempt of the same buyer answers `AlreadyPurchased`.
    async fn reserve(
        &self,
        event: &ReservationEvent,
        payload: &str,
    ) -> Result<Reservation, StoreError>;

    /// When the order must be paid by (unix ms on the ledger's clock), while it awaits payment.
    async fn pay_by(&self, order_id: &OrderId) -> Result<Option<i64>, StoreError>;

    /// The order `user_id` holds in the sale, if any: how a buyer whose answer was lost finds
    /// out whether the purchase went through.
    async fn buyers_order(
        &self,
        sale_id: &SaleId,
        user_id: &UserId,
    ) -> Result<Option<OrderId>, StoreError>;

    /// The order's status, if `user_id` owns it. Anyone else learns nothing, not even that it
    /// exists.
    async fn order_status(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
    ) -> Result<Option<OrderStatus>, StoreError>;

    /// Waits until every write of the sale made so far would survive a failover: on Redis
    /// Cluster, until a replica confirms a write made after them (replication is in order);
    /// [`StoreError::Unconfirmed`] if none does in time. Nothing to wait for elsewhere. For a
    /// lock found after its own answer was lost, before it is answered 202.
    async fn confirm_written(&self, sale_id: &SaleId) -> Result<(), StoreError>;
}

/// A payment's three steps (intent, the provider's charge, the payment), which the gateway's
/// pay route walks, and the intents the payment resolver settles.
#[async_trait]
pub trait Payments: Send + Sync {
    /// Records the intent to charge `amount_cents` for `user_id`'s order: the first of a
    /// payment's three steps (intent, the provider's charge, [`Payments::pay`]), so that a
    /// charge whose outcome nobody learned is found by the payment resolver. Refuses, writing
    /// nothing, what `pay` would refuse. Recording again moves the resolver's look on.
    async fn begin_payment(
        &self,
        order_id: &OrderId,
        user_id: &UserId,
        amount_cents: i64,
    ) -> Result<PaymentIntent, StoreError>;

    /// Pays `user_id`'s order, in one atomic step that races the expiry: a payment after the
    /// pay-by time is refused and changes nothing (the expiry sweep ends the order). Called
    /// after the charge: a paid order (now or before) has its payment intent settled in the
    /// same step; a refused one keeps it until its charge is refunded.
    async fn pay(&self, order_id: &OrderId, user_id: &UserId) -> Result<Payment, StoreError>;

    /// Up to `limit` of the sale's payment intents recorded (or last handed out) at or before
    /// `before_ms` on the ledger's clock, oldest first. Each one handed out is due again only
    /// after the same age.
    async fn claim_payments(
        &self,
        sale_id: &SaleId,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<DuePayment>, StoreError>;

    /// Settles the order's payment intent: its charge was refunded, or never made. Idempotent.
    async fn settle_payment(&self, order_id: &OrderId) -> Result<(), StoreError>;

    /// How many of the sale's payment intents are not settled yet (a read: nothing moves).
    async fn open_payments(&self, sale_id: &SaleId) -> Result<u64, StoreError>;
}

/// The outbox and the publication of its events: what the publisher records as acknowledged,
/// what the relay hands out and the reconciler re-publishes, and what a consumer asks about an
/// order whose row is not stored yet.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Up to `limit` of the sale's transition events due for publishing: recorded and not yet
    /// handed out, or handed out `redeliver_after` ago without an acknowledgement. Each one
    /// handed out is due again only after `redeliver_after`.
    async fn due_transitions(
        &self,
        sale_id: &SaleId,
        limit: usize,
        redeliver_after: Duration,
    ) -> Result<Vec<DueTransition>, StoreError>;

    /// Removes transition events the broker acknowledged from their sales' outboxes.
    async fn mark_transitions_published(&self, events: &[TransitionId]) -> Result<(), StoreError>;

    /// Removes one transition event from the sale's outbox by its outbox id, published or
    /// not: for an entry that is no event at all, which would otherwise keep the sale from
    /// settling for good.
    async fn discard_transition(&self, sale_id: &SaleId, event_id: &str) -> Result<(), StoreError>;

    /// Records the broker's acknowledgement of these orders' events: from now on the
    /// reconciler waits for them as long as any backlog takes, not merely as long as a publish.
    async fn mark_published(&self, orders: &[OrderId]) -> Result<(), StoreError>;

    /// Up to `limit` outbox entries of one sale in the `publication` state, stamped (reserved,
    /// acknowledged, or last deferred) at or before `before_ms` on the ledger's clock, oldest
    /// first.
    async fn stale_entries(
        &self,
        sale_id: &SaleId,
        publication: Publication,
        before_ms: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Moves these orders' stamps to `at_ms`, in whichever state they are, so the reconciler
    /// does not publish them again before their next age has passed. Never changes an order's
    /// state (an acknowledged order stays acknowledged) nor brings back a completed one.
    async fn defer(&self, orders: &[OrderId], at_ms: i64) -> Result<(), StoreError>;

    /// Sizes of one sale's outbox and of its unacknowledged part.
    async fn outbox_sizes(&self, sale_id: &SaleId) -> Result<OutboxSizes, StoreError>;

    /// The outbox of one sale: order id → event JSON. A full read, as large as the sale's
    /// backlog: for checks and tests, never on a hot path (see [`Outbox::in_outbox`]).
    async fn outbox(&self, sale_id: &SaleId) -> Result<HashMap<OrderId, String>, StoreError>;

    /// Which of `orders` (all of `sale_id`) are still in the sale's outbox: locked, their
    /// order row not stored yet. Costs what `orders` costs, whatever the backlog.
    async fn in_outbox(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<HashSet<OrderId>, StoreError>;
}

/// The ends of an order's life that happen behind the queue: created or failed (the order
/// worker), expired (the reconciler's sweep).
#[async_trait]
pub trait OrderLifecycle: Send + Sync {
    /// Expires up to `limit` of the sale's orders whose pay-by time has passed on the ledger's
    /// clock, returning each one's unit to stock; returns them. An order is expired (and its
    /// unit returned) once, however often this runs.
    async fn expire_due(&self, sale_id: &SaleId, limit: usize) -> Result<Vec<OrderId>, StoreError>;

    /// Removes orders of one sale from the outbox and marks the processing ones created (a
    /// paid or expired one keeps its status); returns how many outbox entries were removed.
    /// Idempotent.
    async fn complete_orders(
        &self,
        sale_id: &SaleId,
        orders: &[&OrderId],
    ) -> Result<u64, StoreError>;

    /// Marks orders of one sale as failed (their events went to the dead-letter topic, where an
    /// operator finds them) and compensates: each one's unit returns to stock, once, and it
    /// leaves the outbox and the reconciler's reach. Only an order still in the outbox and
    /// still processing, or paid while processing, is compensated; a paid one's payment is
    /// opened again, due at once, for the payment resolver to refund. Any other id (never
    /// locked here, expired meanwhile, reported twice) changes nothing but leaving the outbox.
    async fn fail_orders(&self, sale_id: &SaleId, orders: &[&OrderId]) -> Result<(), StoreError>;
}
