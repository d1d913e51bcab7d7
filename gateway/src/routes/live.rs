//! `GET /api/v1/sales/{id}/live`: a sale as the dashboard shows it, pushed every second as
//! Server-Sent Events, from this one gateway: its stock, the purchase attempts this gateway
//! answered, the statistics the stats worker counted, and how far each consumer group trails
//! (the SMS worker's lag is the SMS backlog). The page computes rates from two snapshots.
//!
//! Like `GET /api/v1/sales/{id}/stats` it needs no token: it shows counts, never a buyer. So
//! anyone may open it, many times: a snapshot is made once a second per sale at this gateway
//! and sent to every viewer of the sale (`crate::push::fanout`), never read per viewer, and
//! the dashboards have a bound of their own, per client address too (`crate::push::bounds`).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::Serialize;
use shared::ids::SaleId;
use shared::stats::SaleCounts;
use tokio::sync::watch;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use super::sales::SaleView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::push::bounds::StreamPlace;
use crate::push::lag::GroupLag;
use crate::push::schema::{self, EventKind};
use crate::push::tally::Outcomes;
use crate::state::AppState;

/// The sale at one moment, as the dashboard draws it.
#[derive(Serialize, ToSchema)]
pub struct Snapshot {
    at: DateTime<Utc>,
    sale: SaleView,
    /// Purchase attempts this gateway answered, by outcome (`accepted` or the error code),
    /// since it started.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    purchases: Outcomes,
    /// The stats worker's counts: reserved (`sold`), created, paid, expired, failed (without
    /// the timeline, which `GET /api/v1/sales/{id}/stats` has: it grows with the sale).
    orders: SaleCounts,
    /// Each consumer group's lag.
    consumers: Vec<GroupLag>,
    /// The group among `consumers` whose lag is the SMS backlog.
    sms_group: String,
}

impl Snapshot {
    async fn of(state: &AppState, sale_id: &SaleId) -> Result<Option<Self>, ApiError> {
        let Some(sale) = SaleView::of(state, sale_id).await? else {
            return Ok(None);
        };
        Ok(Some(Self {
            at: Utc::now(),
            sale,
            purchases: state
                .catalog
                .cached(sale_id.as_str())
                .map(|entry| entry.purchases.outcomes())
                .unwrap_or_default(),
            orders: state.stats.counts(sale_id).await?,
            consumers: state.push.lags.read().await,
            sms_group: state.push.sms_group.clone(),
        }))
    }

    /// The snapshot as an event, serialised once for every viewer.
    async fn event_of(state: &AppState, sale_id: &SaleId) -> Option<Event> {
        match Self::of(state, sale_id).await {
            Ok(snapshot) => snapshot.map(|snapshot| {
                Event::default()
                    .event(SNAPSHOT_EVENT.name)
                    .json_data(snapshot)
                    .expect("a snapshot always serialises")
            }),
            Err(error) => {
                tracing::warn!(%error, "a dashboard snapshot failed; trying again");
                None
            }
        }
    }
}

/// The body of a sale's live view, as the OpenAPI document declares it.
pub struct SnapshotEvents;

/// Each event of a sale's live view.
const SNAPSHOT_EVENT: EventKind = EventKind {
    name: "snapshot",
    id: None,
    when: "The sale's latest snapshot at once, then one every second.",
};

impl PartialSchema for SnapshotEvents {
    fn schema() -> RefOr<Schema> {
        schema::stream_of::<Snapshot>(&SNAPSHOT_EVENT)
    }
}

impl ToSchema for SnapshotEvents {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schema::data_schemas::<Snapshot>(schemas);
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}/live",
    tag = "sales",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses(
        (status = 200, description = "The sale's `snapshot` events, as Server-Sent Events", content_type = "text/event-stream", body = SnapshotEvents),
        (status = 404, description = "`unknown_sale`: no sale has this id", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this address holds MAX_DASHBOARD_STREAMS_PER_IP dashboards at this gateway already (close one), or too many requests in all or from this address (see Retry-After)", body = ErrorBody),
        (status = 503, description = "`unavailable`: this gateway serves MAX_DASHBOARD_STREAMS dashboards already, or the stores did not answer; try again later", body = ErrorBody),
    )
)]
pub async fn sale_live(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Response, ApiError> {
    let place = state.push.dashboard_streams.admit(peer.ip())?;
    if state.catalog.get(&sale_id).await?.is_none() {
        return Err(ApiError::UnknownSale);
    }
    let snapshots = state.push.snapshots.subscribe(&sale_id, {
        let (state, sale_id) = (state.clone(), sale_id.clone());
        move || {
            let (state, sale_id) = (state.clone(), sale_id.clone());
            async move { Snapshot::event_of(&state, &sale_id).await }
        }
    });
    Ok(Sse::new(each_snapshot(snapshots, place))
        .keep_alive(KeepAlive::new().interval(state.push.heartbeat))
        .into_response())
}

/// Each snapshot of the sale as the body's stream, holding the viewer's place until the viewer
/// goes; it ends when the sale's producer stops (the gateway shuts down).
fn each_snapshot(
    snapshots: watch::Receiver<Option<Event>>,
    place: StreamPlace<IpAddr>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold((snapshots, place), async |(mut snapshots, place)| {
        loop {
            snapshots.changed().await.ok()?;
            let latest = snapshots.borrow_and_update().clone();
            if let Some(event) = latest {
                return Some((Ok(event), (snapshots, place)));
            }
        }
    })
}
