//! `POST /api/v1/demo/sign-in`: a user token for a typed user name, with no password, so the
//! buyer's page can be tried without a login service. It needs no admin token, so the
//! gateway offers it only in demo mode (`--demo`, `DEMO_MODE=true`); outside it the path does
//! not exist (404). Its tokens carry the demo audience (`crate::claims::DEMO_AUDIENCE`), so a
//! gateway outside demo mode refuses them even when it shares the secret.

use axum::Json;
use axum::extract::State;

use super::admin::{TokenResponse, UserRef};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

#[utoipa::path(
    post,
    path = "/api/v1/demo/sign-in",
    tag = "demo",
    request_body = UserRef,
    responses(
        (status = 200, description = "A token for the user, in the demo audience `seckill-demo` (only in demo mode)", body = TokenResponse),
        (status = 400, description = "`invalid_request`: not a valid user name", body = ErrorBody),
        (status = 404, description = "`not_found`: the gateway does not run in demo mode", body = ErrorBody),
        (status = 413, description = "`payload_too_large`: the body is over the limit", body = ErrorBody),
        (status = 415, description = "`unsupported_media_type`: the body is not JSON", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many requests (in all, or from this address); see Retry-After", body = ErrorBody),
        (status = 503, description = "`unavailable`: the gateway is at capacity; try again", body = ErrorBody),
    )
)]
pub async fn sign_in(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<UserRef>,
) -> Result<Json<TokenResponse>, ApiError> {
    let token = state.tokens.mint(&request.user_id)?;
    Ok(Json(TokenResponse { token }))
}
