//! The seckill gateway: the synchronous half of a purchase.
//!
//! A purchase has five steps; the gateway does the two that decide the outcome — risk control
//! and the stock lock — and answers at once. It then enqueues an event on Kafka for the
//! workers. Find any concern in one hop:
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | every flag and environment variable, and the refusal to start half-wired |
//! | [`startup`] | build (dependencies from the configuration), then serve (until shutdown) |
//! | [`routes`] | the HTTP API, overload protection, health and metrics |
//! | [`readiness`] | the dependencies checked in the background, which `/readyz` answers with |
//! | [`auth`] | user JWTs, the admin token, an order stream's stream token; their extractors |
//! | [`claims`] | what a user token must say: issuer, audience, issue time, lifetime, demo |
//! | [`extract`] | JSON bodies and path ids, rejected with the API's JSON errors |
//! | [`risk`] | rate limits and the blacklist copy |
//! | [`push`] | what the event streams share: the transition feed, the snapshots, the bounds |
//! | [`pages`] | the buyer's page and the dashboard, compiled in |
//! | [`catalog`] | the sale cache and the local sold-out flag |
//! | [`error`] | every failure's status and JSON body |
//! | [`outcome`] | the answers' vocabulary: refusal codes, a purchase attempt's outcome |
//! | [`state`] | what handlers share |
//!
//! The stock lock itself, the event and the producer live in `shared`, because the workers
//! and the reconciler use them too. The API is described in `docs/architecture.md`.

pub mod auth;
pub mod catalog;
pub mod claims;
pub mod config;
pub mod error;
pub mod extract;
pub mod openapi;
pub mod outcome;
pub mod pages;
pub mod push;
pub mod readiness;
pub mod risk;
pub mod routes;
pub mod startup;
pub mod state;

pub use crate::config::Config;
pub use crate::startup::{Gateway, build, build_on, serve};
