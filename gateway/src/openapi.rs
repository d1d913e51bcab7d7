//! The API's OpenAPI 3.1 document, served at `GET /api/v1/openapi.json`.
//!
//! Each handler carries its own `#[utoipa::path]` (method, path, parameters, body, every
//! answer) and is registered through `utoipa_axum::routes!`, which adds the route and its
//! description together: a route cannot exist without its entry, nor the other way round.
//! This module holds what belongs to the document as a whole: its title, the shared error
//! body and the two kinds of credentials.

use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;

/// The security scheme of a buyer's JWT.
pub const USER_TOKEN: &str = "user_token";
/// The security scheme of the operator's admin token.
pub const ADMIN_TOKEN: &str = "admin_token";
/// The security scheme of an order stream's URL (`crate::auth::stream`).
pub const STREAM_TOKEN: &str = "stream_token";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "seckill gateway",
        description = "A flash sale decided synchronously at the gateway and fulfilled through Kafka. Every refusal answers a JSON ErrorBody; see docs/architecture.md, \"The HTTP API\"."
    ),
    components(schemas(ErrorBody)),
    modifiers(&Credentials)
)]
pub struct ApiDoc;

/// Declares the credentials the operations refer to: two bearer tokens, and the stream token
/// of an order stream's URL.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut user = Http::new(HttpAuthScheme::Bearer);
        user.bearer_format = Some("JWT".into());
        user.description = Some(
            "A buyer's token from the login service (HS256; `sub` is the user id; `exp`, `iat`, `iss` (JWT_ISSUER) and `aud` (JWT_AUDIENCE) required; `exp - iat` at most JWT_MAX_LIFETIME_SECS)."
                .into(),
        );
        components.add_security_scheme(USER_TOKEN, SecurityScheme::Http(user));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some("The operator's ADMIN_TOKEN.".into());
        components.add_security_scheme(ADMIN_TOKEN, SecurityScheme::Http(admin));
        let stream = ApiKeyValue::with_description(
            "access_token",
            "A stream token from `POST /api/v1/orders/{order_id}/stream-token`: opens that order's event stream for a minute, and nothing else.",
        );
        components.add_security_scheme(STREAM_TOKEN, SecurityScheme::ApiKey(ApiKey::Query(stream)));
    }
}

/// The rendered document, answered as is on every request.
#[derive(Clone)]
pub struct Document(Bytes);

impl Document {
    pub fn render(openapi: &utoipa::openapi::OpenApi) -> Self {
        let json = openapi
            .to_json()
            .expect("the OpenAPI document is plain data and always serialises");
        Self(Bytes::from(json))
    }
}

impl IntoResponse for Document {
    fn into_response(self) -> axum::response::Response {
        ([(header::CONTENT_TYPE, "application/json")], self.0).into_response()
    }
}
