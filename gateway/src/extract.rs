//! Extractors whose every rejection is an [`ApiError`] with a JSON body.
//!
//! axum's own `Json` and `Path` answer rejections in plain text (and `Json` with 422 for a
//! type error); a client of this API always gets `{"error", "message"}`. [`ApiJson`] answers
//! 400, 413 or 415; unknown fields are refused by `#[serde(deny_unknown_fields)]` on the
//! request types. [`PathId`] parses an id in the path once, here.

use std::str::FromStr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use shared::ids::{OrderId, SaleId, UserId};

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

/// An id in the request path, parsed. A segment that cannot be such an id (not even UTF-8,
/// as `%FF`) gets the JSON answer its kind of id calls for ([`IdInPath::refusal`]).
pub struct PathId<T>(pub T);

/// How the API answers a path segment that is not a valid id of this kind.
pub trait IdInPath: FromStr {
    fn refusal() -> ApiError;
}

/// It names no sale, exactly like a valid id of a sale that does not exist: 404 `unknown_sale`.
impl IdInPath for SaleId {
    fn refusal() -> ApiError {
        ApiError::UnknownSale
    }
}

/// It names no order: 404 `not_found`, as for anyone else's order.
impl IdInPath for OrderId {
    fn refusal() -> ApiError {
        ApiError::NotFound
    }
}

/// A user id is the caller's input (an admin names the user): 400 saying what a valid one is.
impl IdInPath for UserId {
    fn refusal() -> ApiError {
        ApiError::BadRequest(format!("the path must end in a user id: {}", UserId::RULE))
    }
}

impl<S, T> FromRequestParts<S> for PathId<T>
where
    T: IdInPath,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| T::refusal())?;
        raw.parse().map(Self).map_err(|_| T::refusal())
    }
}
