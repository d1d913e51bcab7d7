//! What the gateway and every worker share, so that none of them owns a private copy.
//!
//! | module | concern |
//! | --- | --- |
//! | [`event`] | the messages of the reservation and order-event topics: schemas, versions, decoding |
//! | [`ids`] | sale, user and order ids, parsed once at the edge; an order id carries its sale |
//! | [`order_status`] | where an order stands: processing, created, paid, expired, failed |
//! | [`sale`] | a sale's attributes, validation and state |
//! | [`error`] | [`error::StoreError`], the one error of every store trait |
//! | [`stock`] | the stock ledger: the atomic purchase decision, payment and expiry, outboxes, order status |
//! | [`stats`] | per-sale statistics, counted exactly once per event |
//! | [`blacklist`] | the blacklist every gateway copies, with its version |
//! | [`lease`] | leases, so one instance at a time runs a job (the reconciler) |
//! | [`payment`] | the payment provider (charge, refund, ask), and the simulated one with its books |
//! | [`journal`] | a JSON-lines file several processes append to under a lock: the stand-in providers' memory |
//! | [`sms_records`] | which SMS (per order and kind) were sent, shared by every SMS worker |
//! | [`counters`] | counters that add once per event id: the primitive for a consumer's own effect |
//! | [`expiring_map`] | a map whose entries expire: the memory twin of keys with a time to live |
//! | [`backends`] | Redis or in-process memory behind every store trait, chosen by `REDIS_URL` |
//! | [`keys`] | the Redis key layout; every key of a sale shares one hash tag |
//! | [`scripts`] | the Lua scripts, one per atomic step of a Redis backend |
//! | [`redis_client`] | one multiplexed, self-reconnecting connection to a Redis node or cluster, with a deadline on every call |
//! | [`kafka`] | the event bus (brokers, topics, client settings; `mock:` embedded), trace headers |
//! | [`publisher`] | the idempotent producer of an outbox and the recording of the broker's acknowledgements |
//! | [`consumer`] | the one consumer loop: handler contract, retry policy, dead letters, offsets, lag, starts without an offset |
//! | [`front_door`] | how every service listens: a listen queue for a crowd, a header deadline, a connection cap |
//! | [`worker`] | what every worker is around its handler: build, serve, `/healthz`, `/metrics` |
//! | [`config`] | clap argument groups every binary flattens, and [`config::defaults`] |
//! | [`weak_secrets`] | the secrets a deployment refuses: short, published placeholders, guessable |
//! | [`redact`] | URLs with their passwords hidden, for logs and error messages |
//! | [`poll`] | waiting for what another process brings about: a check polled until a deadline |
//! | [`shutdown`] | the SIGINT/SIGTERM token every binary stops on |
//! | [`telemetry`] | tracing subscriber and the Prometheus recorder, installed once per process |
//! | `testing` | (feature `testing`) per-test namespaces on the real or embedded backends, probes, `conformance!` |
//!
//! Dependencies point one way: the store traits import [`error`], [`ids`] and [`keys`];
//! [`backends`] imports the stores; services import [`backends`]. The design these modules
//! implement is described in `docs/architecture.md`.

pub mod backends;
pub mod blacklist;
pub mod config;
pub mod consumer;
pub mod counters;
pub mod error;
pub mod event;
pub mod expiring_map;
pub mod front_door;
pub mod ids;
pub mod journal;
pub mod kafka;
pub mod keys;
pub mod lease;
pub mod order_status;
pub mod payment;
pub mod poll;
pub mod publisher;
pub mod redact;
pub mod redis_client;
pub mod sale;
pub mod scripts;
pub mod shutdown;
pub mod sms_records;
pub mod stats;
pub mod stock;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod weak_secrets;
pub mod worker;
