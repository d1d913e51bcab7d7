//! `POST /api/v1/sales/{id}/orders`: the purchase, decided synchronously.
//!
//! Cheapest refusals first, so abuse costs the least. A sold-out sale (the local flag of the
//! cached sale) answers 410 before anything else, because after the first second of a flash
//! sale nearly every attempt meets it. Then the token, the user's rate limit, the body, the
//! blacklist copy, the sale and its window; only then the one Redis round trip that decides
//! (and, should its answer be lost, one question that finds out what it decided). The event
//! is enqueued for Kafka after the lock and the answer goes out at once: a failed publish is
//! logged and counted, never retried here, because the outbox entry the script wrote is what
//! the reconciler re-publishes.

use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, RawPathParamsRejection};
use axum::extract::{FromRequest, RawPathParams, Request, State};
use axum::http::StatusCode;
use metrics::counter;
use serde::{Deserialize, Serialize};
use shared::error::StoreError;
use shared::event::ReservationEvent;
use shared::ids::{OrderId, SaleId};
use shared::kafka::{TRACEPARENT_HEADER, traceparent_for};
use shared::order_status::OrderStatus;
use shared::stock::Reservation;
use utoipa::ToSchema;

use crate::config::{LOST_ANSWER_PATIENCE, LOST_ANSWER_RETRY};
use crate::error::{ApiError, ErrorBody, LOCK_UNCONFIRMED, NOTHING_LOCKED};
use crate::extract::BodyLimit;
use crate::outcome::PurchaseOutcome;
use crate::state::AppState;

/// Stock locks whose answer was lost, by what the ledger then said (`locked`, `nothing`).
pub const LOST_ANSWERS_TOTAL: &str = "seckill_lost_lock_answers_total";

/// The optional body. One unit per buyer, so the only accepted quantity is 1.
#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest {
    #[schema(minimum = 1, maximum = 1)]
    quantity: Option<u32>,
}

/// A unit is locked for the buyer; the order is created behind the queue.
#[derive(Serialize, ToSchema)]
pub struct Accepted {
    order_id: OrderId,
    /// Always `processing`: follow `GET /api/v1/orders/{order_id}` (or its event stream) for
    /// what follows.
    status: OrderStatus,
}

#[utoipa::path(
    post,
    path = "/api/v1/sales/{sale_id}/orders",
    tag = "purchase",
    params(("sale_id" = SaleId, Path, description = "The sale to buy in")),
    request_body(
        content = Option<PurchaseRequest>,
        description = "Optional: no body, `null`, `{}` or `{\"quantity\": 1}` (one unit per buyer)"
    ),
    security(("user_token" = [])),
    responses(
        (status = 202, description = "A unit is locked for the buyer; the order follows through the queue", body = Accepted),
        (status = 400, description = "`invalid_request`: the body is not a purchase request", body = ErrorBody),
        (status = 401, description = "`unauthenticated`: no valid user token", body = ErrorBody),
        (status = 403, description = "`blacklisted`, or `sale_not_open`: before its start or after its end", body = ErrorBody),
        (status = 404, description = "`unknown_sale`: no sale has this id", body = ErrorBody),
        (status = 409, description = "`already_purchased`: the buyer holds an order in this sale (`order_id`)", body = ErrorBody),
        (status = 410, description = "`sold_out`: no unit left (answered before the token is looked at: a sale's stock is public)", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the limit", body = ErrorBody),
        (status = 429, description = "`rate_limited`: a limit was reached; see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: overloaded, or the stock ledger did not answer, or (on Redis Cluster) the lock was taken but no replica confirmed it in time; the message says whether anything was locked", body = ErrorBody),
    )
)]
pub async fn purchase(
    State(state): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    request: Request,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let started = Instant::now();
    // A segment that is not even UTF-8 names no sale: decided as an unknown sale.
    let sale_id = path
        .as_ref()
        .ok()
        .and_then(|params| params.iter().next())
        .map(|(_, sale_id)| sale_id);
    let entry = sale_id.and_then(|sale_id| state.catalog.cached(sale_id));
    let result = match &entry {
        // The flood's answer, so nothing else first: a sale's stock is public, so a sold-out
        // sale answers before the token is verified, without a span, its body rendered once.
        Some(entry) if entry.is_sold_out() => Err(ApiError::SoldOut),
        _ => decide(&state, sale_id, request).await,
    };
    let outcome = match &result {
        Ok(_) => PurchaseOutcome::Accepted,
        Err(error) => PurchaseOutcome::Refused(error.code()),
    };
    state.purchase_metrics.record(outcome, started.elapsed());
    // A sale met for the first time is in the catalog now.
    let entry = entry.or_else(|| sale_id.and_then(|sale_id| state.catalog.cached(sale_id)));
    if let Some(entry) = entry {
        entry.purchases.record(outcome);
    }
    result.map(|accepted| (StatusCode::ACCEPTED, Json(accepted)))
}

/// The checks in order, cheapest first. The token comes before the sale id, so an
/// unauthenticated caller learns nothing about which sales exist (beyond the stock of those
/// that sold out, which is public).
///
/// A debug-level span: on the hot path an info span would cost an allocation per request even
/// when nothing is logged; failures log their own order id and trace id.
#[tracing::instrument(level = "debug", skip_all, fields(sale_id, user_id, trace_id))]
async fn decide(
    state: &AppState,
    sale_id: Option<&str>,
    request: Request,
) -> Result<Accepted, ApiError> {
    let user_id = state.tokens.user(request.headers())?;
    let span = tracing::Span::current();
    span.record("user_id", user_id.as_str());
    state.limits.check_user(&user_id)?;
    // Kept past the body's read, which takes the request: a shared handle, not a copy.
    let incoming_trace = request.headers().get(TRACEPARENT_HEADER).cloned();
    let body = Bytes::from_request(request, state)
        .await
        .map_err(|rejection| body_refusal(&rejection, state.body_limit))?;
    check_body(&body)?;
    if state.blacklist.contains(&user_id) {
        return Err(ApiError::Blacklisted);
    }
    // A segment that is no sale id names no sale.
    let sale_id: SaleId = sale_id
        .and_then(|sale_id| sale_id.parse().ok())
        .ok_or(ApiError::UnknownSale)?;
    span.record("sale_id", sale_id.as_str());
    let entry = state
        .catalog
        .get(&sale_id)
        .await?
        .ok_or(ApiError::UnknownSale)?;
    // One clock for the sale's window and the order's deadline: the ledger's, which decides
    // payment and expiry (usually no round trip: the stock lock reads it too).
    let now = state.ledger.now(&sale_id).await?;
    if !entry.sale.is_open_at(now) {
        return Err(ApiError::SaleNotOpen(entry.sale.state(now, 1)));
    }
    // The sold-out flag was asked before anything else (`purchase`); past its recheck delay
    // every attempt reaches the script, whose answer renews or clears it.

    let event = ReservationEvent::new(
        OrderId::generate(&sale_id),
        &user_id,
        entry.sale.price_cents,
        now,
        entry.sale.pay_by(now),
    );
    let payload = event.to_json();
    let decided = match state.ledger.reserve(&event, &payload).await {
        Ok(decided) => decided,
        // The lock stands but may not survive a failover: neither a 202 nor "nothing locked".
        Err(StoreError::Unconfirmed(_)) => return Err(ApiError::Unavailable(LOCK_UNCONFIRMED)),
        Err(error) => lost_answer(state, &event, error).await?,
    };
    match decided {
        Reservation::Reserved { remaining } => {
            if remaining == 0 {
                entry.mark_sold_out();
            } else {
                entry.mark_available();
            }
        }
        Reservation::SoldOut => {
            entry.mark_sold_out();
            return Err(ApiError::SoldOut);
        }
        Reservation::AlreadyPurchased { order_id } => {
            return Err(ApiError::AlreadyPurchased { order_id });
        }
        Reservation::UnknownSale => return Err(ApiError::UnknownSale),
    }

    let (traceparent, trace_id) = traceparent_for(
        incoming_trace
            .as_ref()
            .and_then(|value| value.to_str().ok()),
    );
    span.record("trace_id", &trace_id);
    if let Err(error) = state.publisher.publish(&event, &payload, &traceparent) {
        tracing::warn!(%error, order_id = %event.order_id, trace_id,
            "event not enqueued; the outbox keeps it for the reconciler");
    }
    tracing::debug!(order_id = %event.order_id, "reserved");
    Ok(Accepted {
        order_id: event.order_id,
        status: OrderStatus::Processing,
    })
}

/// The stock lock gave no answer in time, or failed on the way back: it may have run all the
/// same, and then a unit is locked for this very order. The buyer's entry tells (asked on the
/// same connection, so after the lock if it ran at all): the order is theirs, and the purchase
/// is answered 202 and published like any other (on Redis Cluster once a replica confirms it,
/// else 503 says it is recorded but unconfirmed); or nothing was locked, and 503 says so. Only
/// when Redis does not answer that either, for [`LOST_ANSWER_PATIENCE`], does the 503 say it
/// cannot tell. A lock still queued somewhere by then (behind a paused Redis) will not lock
/// anything when it runs: it carries its own deadline, long past (`shared::stock`'s clock).
async fn lost_answer(
    state: &AppState,
    event: &ReservationEvent,
    error: StoreError,
) -> Result<Reservation, ApiError> {
    tracing::warn!(%error, order_id = %event.order_id, "the stock lock's answer was lost; asking the ledger");
    let give_up_at = Instant::now() + LOST_ANSWER_PATIENCE;
    let holding = loop {
        match state
            .ledger
            .order_status(&event.order_id, &event.user_id)
            .await
        {
            Ok(holding) => break holding,
            Err(_) if Instant::now() < give_up_at => {
                tokio::time::sleep(LOST_ANSWER_RETRY).await;
            }
            Err(_) => return Err(ApiError::from(error)),
        }
    };
    if holding.is_none() {
        counter!(LOST_ANSWERS_TOTAL, "found" => "nothing").increment(1);
        return Err(ApiError::Unavailable(NOTHING_LOCKED));
    }
    counter!(LOST_ANSWERS_TOTAL, "found" => "locked").increment(1);
    // Its replica's confirmation was lost with the answer (on Redis Cluster): asked again.
    if state.ledger.confirm_written(&event.sale_id).await.is_err() {
        return Err(ApiError::Unavailable(LOCK_UNCONFIRMED));
    }
    let remaining = state
        .ledger
        .remaining(&event.sale_id)
        .await
        .ok()
        .flatten()
        .unwrap_or(1);
    Ok(Reservation::Reserved { remaining })
}

/// Why the body could not be read: too large (413), or broken on the way in (400).
fn body_refusal(rejection: &BytesRejection, BodyLimit(limit_bytes): BodyLimit) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(limit_bytes)
    } else {
        ApiError::BadRequest(format!(
            "the request body could not be read: {}",
            rejection.body_text()
        ))
    }
}

/// An empty body is fine, and so is `null`; otherwise it must be `{"quantity": 1}` or `{}`.
///
/// `null` is a purchase because it says nothing, as no body does and as `"quantity": null`
/// does one level down; a client that serialises an absent optional body as `null` must not
/// be told its request is malformed. The document declares it so (the body's schema is
/// `oneOf: [null, PurchaseRequest]`, and a fuzzer following it sends `null`).
fn check_body(body: &[u8]) -> Result<(), ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    let request: Option<PurchaseRequest> = serde_json::from_slice(body).map_err(|error| {
        ApiError::BadRequest(format!("the body is not a purchase request: {error}"))
    })?;
    match request.unwrap_or_default().quantity {
        None | Some(1) => Ok(()),
        Some(other) => Err(ApiError::BadRequest(format!(
            "quantity must be 1 (one unit per buyer), not {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_or_null_body_or_a_quantity_of_one_is_a_purchase() {
        for body in [
            "",
            "  ",
            "null",
            "{}",
            r#"{"quantity":1}"#,
            r#"{"quantity":null}"#,
        ] {
            assert!(check_body(body.as_bytes()).is_ok(), "{body:?}");
        }
    }

    #[test]
    fn other_bodies_are_refused_with_a_sentence() {
        for body in [
            "{",
            r#"{"quantity":2}"#,
            r#"{"qty":1}"#,
            r#"{"quantity":"1"}"#,
            "[]",
        ] {
            match check_body(body.as_bytes()) {
                Err(ApiError::BadRequest(message)) => assert!(!message.is_empty()),
                other => panic!("{body:?} gave {other:?}"),
            }
        }
    }
}
