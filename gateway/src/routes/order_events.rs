//! `GET /api/v1/orders/{id}/events`: an order's transitions pushed to its owner as
//! Server-Sent Events, so a buyer's page shows "processing" and then the result without
//! polling (`docs/architecture.md`, "Push").
//!
//! Each event is the order as `GET /api/v1/orders/{id}` shows it, named `status`, with the
//! status as its `id`. A status only moves forward, so the id says how far a client got: a
//! client that reconnects with `Last-Event-ID` receives the order's state if it has moved on
//! since, and nothing it saw already. The stream ends after a final status; a reconnect
//! after that answers 204, which tells `EventSource` to stop reconnecting.
//!
//! The stream subscribes to this gateway's transition feed before it reads the order, so no
//! transition falls between the two; and it reads the ledger again every resync interval,
//! so a transition whose event never reached this gateway (a broker outage) shows within it.
//!
//! Who may open it: the owner, by the user token in the `Authorization` header or by a stream
//! token in `?access_token=` (`crate::auth::stream`); how many: `crate::push::bounds`.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use shared::ids::{OrderId, UserId};
use shared::stock::OrderStatus;
use tokio::sync::mpsc;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;
use utoipa::{PartialSchema, ToSchema};

use super::orders::OrderView;
use crate::auth::stream::StreamUser;
use crate::error::{ApiError, ErrorBody};
use crate::push::bounds::StreamPlace;
use crate::push::schema::{self, EventKind};
use crate::push::watchers::Watch;
use crate::state::AppState;

/// The body of an order's stream, as the OpenAPI document declares it.
pub struct OrderEvents;

/// Each event of an order's stream.
const STATUS_EVENT: EventKind = EventKind {
    name: "status",
    id: Some("the order's status, which a client that reconnects sends back as Last-Event-ID"),
    when: "The order as it stands at once (with Last-Event-ID: only if it moved on since), then \
           the order each time its status moves on; a final status (paid, expired, failed) \
           ends the stream.",
};

impl PartialSchema for OrderEvents {
    fn schema() -> RefOr<Schema> {
        schema::stream_of::<OrderView>(&STATUS_EVENT)
    }
}

impl ToSchema for OrderEvents {
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schema::data_schemas::<OrderView>(schemas);
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/orders/{order_id}/events",
    tag = "orders",
    params(
        ("order_id" = OrderId, Path, description = "The order, as the purchase answered it"),
        ("access_token" = Option<String>, Query, description = "A stream token from `POST /api/v1/orders/{order_id}/stream-token`, for clients that cannot set the Authorization header (a browser's EventSource). A user token here is refused."),
        ("Last-Event-ID" = Option<String>, Header, description = "The last status received: a resumed stream sends only what came after it"),
    ),
    security(("user_token" = []), ("stream_token" = [])),
    responses(
        (status = 200, description = "The order's `status` events until a final status, as Server-Sent Events", content_type = "text/event-stream", body = OrderEvents),
        (status = 204, description = "The client has seen the order's final status already (its Last-Event-ID): nothing more will come, and EventSource stops reconnecting"),
        (status = 401, description = "`unauthenticated`: neither a valid user token in the Authorization header nor a valid stream token for this order in `access_token`", body = ErrorBody),
        (status = 404, description = "`not_found`: no such order of this user", body = ErrorBody),
        (status = 429, description = "`rate_limited`: this user holds MAX_ORDER_STREAMS_PER_USER streams at this gateway already (close one), or too many requests in all or from this address (see Retry-After)", body = ErrorBody),
        (status = 503, description = "`unavailable`: this gateway serves MAX_ORDER_STREAMS order streams already (poll `GET /api/v1/orders/{order_id}` instead), or the ledger did not answer", body = ErrorBody),
    )
)]
pub async fn order_events(
    StreamUser { user_id, order_id }: StreamUser,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let seen = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(OrderStatus::named);
    let place = state.push.order_streams.admit(user_id.clone())?;
    let watch = state.push.watchers.watch(&order_id);
    let view = OrderView::of(&state, order_id, user_id.clone())
        .await?
        .ok_or(ApiError::NotFound)?;
    if seen.is_some_and(|seen| seen >= view.status && seen.is_final()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let (events, received) = mpsc::channel(2);
    let heartbeat = state.push.heartbeat;
    tokio::spawn(
        Follow {
            state,
            user_id,
            seen,
            watch,
            events,
            _place: place,
        }
        .run(view),
    );
    Ok(Sse::new(receiver_stream(received))
        .keep_alive(KeepAlive::new().interval(heartbeat))
        .into_response())
}

/// One open stream: sends the order's state each time it moves on, until a final one or
/// until the client goes.
struct Follow {
    state: AppState,
    user_id: UserId,
    seen: Option<OrderStatus>,
    watch: Watch,
    events: mpsc::Sender<Event>,
    /// The stream's place under the gateway's bound, given back when the stream ends.
    _place: StreamPlace<UserId>,
}

impl Follow {
    async fn run(mut self, mut view: OrderView) {
        let mut resync = tokio::time::interval(self.state.push.resync);
        resync.reset();
        loop {
            if self.seen.is_none_or(|seen| view.status > seen) {
                if self.events.send(status_event(&view)).await.is_err() {
                    return;
                }
                self.seen = Some(view.status);
            }
            if view.status.is_final() {
                return;
            }
            tokio::select! {
                () = self.watch.changed() => {}
                _ = resync.tick() => {}
                () = self.events.closed() => return,
                () = self.state.push.closing.cancelled() => return,
            }
            let order_id = view.order_id.clone();
            match OrderView::of(&self.state, order_id, self.user_id.clone()).await {
                Ok(Some(now)) => view = now,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "an order stream could not read the ledger; trying again at the next notice");
                }
            }
        }
    }
}

fn status_event(view: &OrderView) -> Event {
    Event::default()
        .event(STATUS_EVENT.name)
        .id(view.status.as_str())
        .json_data(view)
        .expect("an order view always serialises")
}

/// The events as the body's stream.
fn receiver_stream(
    received: mpsc::Receiver<Event>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(received, async |mut received| {
        received.recv().await.map(|event| (Ok(event), received))
    })
}
