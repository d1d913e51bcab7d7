//! Extractors whose every rejection is an [`ApiError`] with a JSON body.
//!
//! axum's own `Json` and `Path` answer rejections in plain text (and `Json` with 422 for a
//! type error); a client of this API always gets `{"error", "message"}`. [`ApiJson`] answers
//! 400, 413 or 415; unknown fields are refused by `#[serde(deny_unknown_fields)]` on the
//! request types. [`SalePath`] and [`OrderPath`] parse the id in the path once, here: a string
//! that cannot be an id names nothing, so it is answered like an id that exists nowhere.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use shared::ids::{OrderId, SaleId};

use crate::error::ApiError;

/// The largest request body accepted, in bytes.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub usize);

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    BodyLimit: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(request, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(&rejection, BodyLimit::from_ref(state))),
        }
    }
}

fn rejection_to_error(rejection: &JsonRejection, BodyLimit(bytes): BodyLimit) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(bytes),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        _ => ApiError::BadRequest(rejection.body_text()),
    }
}

/// The `{sale_id}` of the path; anything that is not a sale id is an unknown sale (404).
pub struct SalePath(pub SaleId);

impl<S: Send + Sync> FromRequestParts<S> for SalePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::UnknownSale)?;
        raw.parse().map(Self).map_err(|_| ApiError::UnknownSale)
    }
}

/// The `{order_id}` of the path; anything that is not an order id is not found (404).
pub struct OrderPath(pub OrderId);

impl<S: Send + Sync> FromRequestParts<S> for OrderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::NotFound)?;
        raw.parse().map(Self).map_err(|_| ApiError::NotFound)
    }
}
