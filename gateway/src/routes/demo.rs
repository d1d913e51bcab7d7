//! `POST /api/v1/demo/sign-in`: a user token for a typed user name, with no password, so the
//! buyer's page can be tried without a login service. It mints exactly what the admin call
//! `POST /api/v1/admin/tokens` mints (which stands in for a login service the same way), but
//! needs no admin token, so the gateway offers it only when started with `--demo-sign-in`
//! (`DEMO_SIGN_IN=true`); without the flag the path does not exist (404).

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
        (status = 200, description = "A token for the user (only with `--demo-sign-in`)", body = TokenResponse),
        (status = 400, description = "`invalid_request`: not a valid user name", body = ErrorBody),
        (status = 404, description = "`not_found`: the gateway runs without `--demo-sign-in`", body = ErrorBody),
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
