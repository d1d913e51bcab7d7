//! Pushing to the browser: an order's transitions as they happen, and a sale's live view.
//!
//! | module | concern |
//! | --- | --- |
//! | [`feed`] | every transition, read from the order-event topic by every gateway |
//! | [`watchers`] | which open stream waits for which order |
//! | [`fanout`] | one producer per sale, shared by all of its dashboard viewers |
//! | [`bounds`] | how many streams of each kind a gateway serves, in all and per client |
//! | [`schema`] | how the OpenAPI document describes an event stream |
//! | [`lag`] | each consumer group's lag, asked of the broker |
//! | [`tally`] | a sale's purchase attempts by outcome at this gateway |
//!
//! The streams themselves are routes (`routes/order_events.rs`, `routes/live.rs`); what they
//! share is here, in [`Push`]: the watchers, the snapshots, the probes, and the bounds on open
//! streams. A stream holds a connection for minutes, so a gateway serves at most
//! `MAX_ORDER_STREAMS` order streams and, apart from them, `MAX_DASHBOARD_STREAMS` dashboards,
//! each client its share ([`bounds`]).

pub mod bounds;
pub mod fanout;
pub mod feed;
pub mod lag;
pub mod schema;
pub mod tally;
pub mod watchers;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::Event;
use shared::ids::{SaleId, UserId};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use bounds::StreamBound;
use fanout::Fanout;
use lag::GroupLags;
use watchers::OrderWatchers;

/// How often a sale's dashboard snapshot is made: once per period and sale at a gateway,
/// however many watch it.
pub const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

/// What every stream of this gateway shares.
pub struct Push {
    pub watchers: Arc<OrderWatchers>,
    /// Each watched sale's latest dashboard snapshot, ready to send.
    pub snapshots: Fanout<SaleId, Event>,
    pub lags: GroupLags,
    /// The consumer group whose lag is the SMS backlog.
    pub sms_group: String,
    /// How often an idle stream sends a comment, so proxies keep it open.
    pub heartbeat: Duration,
    /// How often an order's stream reads the ledger even without a notice.
    pub resync: Duration,
    /// Cancelled when the gateway shuts down: every stream ends, so the graceful shutdown,
    /// which waits for open connections, does not wait for them.
    pub closing: CancellationToken,
    /// Buyers' order streams, per user.
    pub order_streams: StreamBound<UserId>,
    /// Dashboards, per client address.
    pub dashboard_streams: StreamBound<IpAddr>,
}

impl Push {
    pub fn new(config: &Config, lags: GroupLags) -> Self {
        let closing = CancellationToken::new();
        Self {
            watchers: Arc::default(),
            snapshots: Fanout::new(SNAPSHOT_EVERY, closing.clone()),
            lags,
            sms_group: config.dashboard_sms_group.clone(),
            heartbeat: config.stream_heartbeat(),
            resync: config.stream_resync(),
            closing,
            order_streams: StreamBound::new(
                config.max_order_streams.get(),
                config.max_order_streams_per_user.get(),
                ORDER_STREAMS_FULL,
                USER_STREAMS_FULL,
            ),
            dashboard_streams: StreamBound::new(
                config.max_dashboard_streams.get(),
                config.max_dashboard_streams_per_ip.get(),
                DASHBOARDS_FULL,
                ADDRESS_DASHBOARDS_FULL,
            ),
        }
    }
}

const ORDER_STREAMS_FULL: &str = "this gateway serves as many order streams as MAX_ORDER_STREAMS allows; poll GET /api/v1/orders/{order_id} instead";
const USER_STREAMS_FULL: &str = "this user holds as many order streams open at this gateway as MAX_ORDER_STREAMS_PER_USER allows; close one first";
const DASHBOARDS_FULL: &str = "this gateway serves as many dashboard streams as MAX_DASHBOARD_STREAMS allows; try again later";
const ADDRESS_DASHBOARDS_FULL: &str = "this address holds as many dashboard streams open at this gateway as MAX_DASHBOARD_STREAMS_PER_IP allows; close one first";
