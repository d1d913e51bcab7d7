//! `GET /api/v1/sales/{id}/live`: a sale as the dashboard shows it, pushed every second as
//! Server-Sent Events, from this one gateway: its stock, the purchase attempts this gateway
//! answered, the statistics the stats worker counted, and how far each consumer group trails
//! (the SMS worker's lag is the SMS backlog). The page computes rates from two snapshots.
//!
//! Like `GET /api/v1/sales/{id}/stats` it needs no token: it shows counts, never a buyer.

use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::ids::SaleId;
use shared::stats::SaleStats;
use tokio::sync::mpsc;
use utoipa::ToSchema;

use super::order_events::receiver_stream;
use super::sales::SaleView;
use crate::error::{ApiError, ErrorBody};
use crate::extract::PathId;
use crate::push::lag::GroupLag;
use crate::push::tally::Outcomes;
use crate::state::AppState;

/// How often a snapshot is sent.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(1);

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
    /// the timeline, which `GET /api/v1/sales/{id}/stats` has).
    orders: SaleStats,
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
        let mut orders = state.stats.read(sale_id).await?;
        // A point per second of selling, sent every second, would grow with the sale; the
        // page draws its rates from successive snapshots instead.
        orders.timeline.clear();
        Ok(Some(Self {
            at: Utc::now(),
            sale,
            purchases: state
                .catalog
                .cached(sale_id.as_str())
                .map(|entry| entry.purchases.outcomes())
                .unwrap_or_default(),
            orders,
            consumers: state.push.lags.read().await,
            sms_group: state.push.sms_group.clone(),
        }))
    }

    fn event(&self) -> Event {
        Event::default()
            .event("snapshot")
            .json_data(self)
            .expect("a snapshot always serialises")
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/sales/{sale_id}/live",
    tag = "sales",
    params(("sale_id" = SaleId, Path, description = "The sale")),
    responses(
        (status = 200, description = "`text/event-stream`: an event named `snapshot` every second", content_type = "text/event-stream", body = Snapshot),
        (status = 404, description = "`unknown_sale`: no sale has this id", body = ErrorBody),
        (status = 503, description = "`unavailable`: every stream this gateway serves is taken, or the stores did not answer", body = ErrorBody),
    )
)]
pub async fn sale_live(
    State(state): State<AppState>,
    PathId(sale_id): PathId<SaleId>,
) -> Result<Response, ApiError> {
    let slot = state.push.open_slot()?;
    let first = Snapshot::of(&state, &sale_id)
        .await?
        .ok_or(ApiError::UnknownSale)?;
    let (events, received) = mpsc::channel(2);
    let heartbeat = state.push.heartbeat;
    tokio::spawn(async move {
        let _slot = slot;
        let mut every = tokio::time::interval(SNAPSHOT_EVERY);
        every.reset();
        let mut snapshot = Some(first);
        loop {
            if let Some(snapshot) = snapshot.take()
                && events.send(snapshot.event()).await.is_err()
            {
                return;
            }
            tokio::select! {
                _ = every.tick() => {}
                () = events.closed() => return,
                () = state.push.closing.cancelled() => return,
            }
            match Snapshot::of(&state, &sale_id).await {
                Ok(now) => snapshot = now,
                Err(error) => tracing::warn!(%error, "a dashboard snapshot failed; trying again"),
            }
        }
    });
    Ok(Sse::new(receiver_stream(received))
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response())
}
