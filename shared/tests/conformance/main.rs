//! One conformance suite per backend trait, each case run unchanged against both backends:
//! `embedded` (in-process memory, librdkafka's mock cluster) and `real` (Redis and the
//! Kafka-protocol broker of `scripts/services`). A backend that fails a case is not done.
//!
//! A case is an `async fn(TestEnv)`; `shared::conformance!` turns each into a module with one
//! test per backend, so a failure names both
//! (`ledger::a_stampede_sells_exactly_the_stock::embedded`). The order store's suite is in
//! `order-worker/tests/conformance`.

// The cases are plain functions (the macro makes the tests), so clippy does not see test code.
#![allow(clippy::unwrap_used)]

mod blacklist;
mod bus;
mod counters;
mod lease;
mod ledger;
mod sms_records;
mod stats;
