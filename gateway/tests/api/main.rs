//! Integration tests of the gateway against real Redis and a real Kafka-protocol broker
//! (start them with `scripts/services up`; `scripts/test` does). Each test gets its own key
//! prefix and topic, so tests run in parallel without seeing each other.

mod dashboard;
mod document;
mod edges;
mod faults;
mod front_door;
mod generated;
mod headers;
mod help;
mod helpers;
mod lifecycle;
mod purchase;
mod push;
mod redis_proxy;
mod refusals;
mod sse;
mod stream_bounds;
mod stream_schemas;
