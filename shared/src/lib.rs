//! What the gateway and the three workers share, so that none of them owns a private copy.
//!
//! | module | concern |
//! | --- | --- |
//! | [`event`] | the `seckill.reservations` message: schema, version, (de)serialisation |
//! | [`ids`] | sale and order ids; an order id carries its sale, so a lookup finds the sale's Redis slot |
//! | [`sale`] | a sale's attributes, validation and state |
//! | [`keys`] | the Redis key layout; every key of a sale shares one hash tag |
//! | [`backends`] | Redis or in-process memory behind the three store traits, chosen by `REDIS_URL` |
//! | [`stock`] | the stock ledger: the atomic purchase decision, outbox, order status |
//! | [`coordination`] | what instances agree on: blacklist, reconciler lease, SMS records |
//! | [`consumer`] | the one consumer loop of all workers: batches, retries, dead letters, offsets, lag |
//! | [`config`] | clap argument groups every binary flattens (`RedisArgs`, `KafkaArgs`, `TelemetryArgs`) |
//! | [`redis_client`] | one multiplexed, self-reconnecting Redis connection with a deadline on every call |
//! | [`kafka`] | producer and admin settings, topic creation, trace headers; `mock:` for the embedded bus |
//! | [`publisher`] | the idempotent producer and the recording of the broker's acknowledgements |
//! | [`shutdown`] | the SIGINT/SIGTERM future every binary stops on |
//! | [`stats`] | per-sale statistics, counted exactly once per event |
//! | [`telemetry`] | tracing subscriber and the Prometheus recorder, installed once per process |
//! | `testing` | (feature `testing`) per-test namespaces on the real or embedded backends, probes, `conformance!` |
//! | [`worker`] | what runs around every worker's handler: the loop plus `/healthz` and `/metrics` |

pub mod backends;
pub mod config;
pub mod consumer;
pub mod coordination;
pub mod event;
pub mod ids;
pub mod kafka;
pub mod keys;
pub mod publisher;
pub mod redis_client;
pub mod sale;
pub mod shutdown;
pub mod stats;
pub mod stock;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod worker;
