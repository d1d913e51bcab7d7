//! A strict JSON body extractor whose every rejection is an [`ApiError`] with a JSON body.
//!
//! axum's own `Json` answers rejections in plain text and with 422 for type errors; a client
//! of this API always gets `{"error", "message"}` and 400, 413 or 415. Unknown fields are
//! refused by `#[serde(deny_unknown_fields)]` on the request types.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(&rejection, state.body_limit_bytes)),
        }
    }
}

fn rejection_to_error(rejection: &JsonRejection, body_limit_bytes: usize) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(body_limit_bytes),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest(rejection.body_text()),
    }
}
