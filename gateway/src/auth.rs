//! Who is calling: users by JWT (HS256, `sub` = user id, `exp`), admins by a bearer token.
//!
//! In production a login service mints the user tokens; here `POST /api/v1/admin/tokens`
//! stands in for it, with the same secret and claims.
//!
//! The extractors [`User`] and [`Admin`] ask the application state for what they need — the
//! [`TokenKeys`] or the [`AdminToken`] — through axum's `FromRef`, not for the whole state.
//! An order stream's URL takes a token of its own kind, in [`stream`].

pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::config::Secret;
use shared::ids::UserId;

use crate::error::ApiError;

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<String>,
}

/// Signs and checks user tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    audience: Option<String>,
}

impl TokenKeys {
    /// Keys for tokens signed with `secret`, minted for `ttl`. With an `audience`, a token must
    /// name it in `aud`; without one, `aud` is not looked at (a login service may set it for
    /// its own reasons). A token used before its `nbf` is refused either way.
    pub fn new(secret: &str, ttl: Duration, audience: Option<&str>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.validate_nbf = true;
        if let Some(audience) = audience {
            validation.set_audience(&[audience]);
            validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        } else {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp", "sub"]);
        }
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            audience: audience.map(str::to_owned),
        }
    }

    /// A token for `user_id`, valid for the configured lifetime.
    pub fn mint(&self, user_id: &UserId) -> Result<String, ApiError> {
        let exp = jsonwebtoken::get_current_timestamp() + self.ttl.as_secs();
        let claims = Claims {
            sub: user_id.to_string(),
            exp,
            aud: self.audience.clone(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|error| ApiError::Internal(format!("signing a token failed: {error}")))
    }

    /// The user whose token the `Authorization` header carries, for a handler that looks at
    /// the request before deciding whether to verify a token at all (the purchase).
    pub fn user(&self, headers: &HeaderMap) -> Result<UserId, ApiError> {
        self.verify(bearer_token(headers)?)
    }

    /// The user id inside a valid, unexpired token signed with our secret.
    pub fn verify(&self, token: &str) -> Result<UserId, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                    ApiError::Unauthenticated("the token has expired")
                }
                jsonwebtoken::errors::ErrorKind::ImmatureSignature => {
                    ApiError::Unauthenticated("the token is not valid yet")
                }
                _ => ApiError::Unauthenticated("the token is not valid"),
            })?;
        data.claims
            .sub
            .parse()
            .map_err(|_| ApiError::Unauthenticated("the token's subject is not a valid user id"))
    }
}

/// The admin API's bearer token.
#[derive(Clone)]
pub struct AdminToken(Arc<Secret>);

impl AdminToken {
    pub fn new(token: Secret) -> Self {
        Self(Arc::new(token))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, ApiError> {
    let value = headers.get(AUTHORIZATION).ok_or(ApiError::Unauthenticated(
        "the Authorization header is missing",
    ))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or(ApiError::Unauthenticated(
            "the Authorization header must be `Bearer <token>`",
        ))
}

/// The authenticated user of a request.
pub struct User(pub UserId);

impl<S> FromRequestParts<S> for User
where
    Arc<TokenKeys>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let keys = Arc::<TokenKeys>::from_ref(state);
        keys.user(&parts.headers).map(User)
    }
}

/// Proof that the request carries the admin token.
pub struct Admin;

impl<S> FromRequestParts<S> for Admin
where
    AdminToken: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        let AdminToken(expected) = AdminToken::from_ref(state);
        if constant_time_eq(token.as_bytes(), expected.expose().as_bytes()) {
            Ok(Admin)
        } else {
            Err(ApiError::Unauthenticated("the admin token is not valid"))
        }
    }
}

/// Compares without an early exit, so response timing does not reveal a prefix of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        let token = keys.mint(&"alice".parse().unwrap()).unwrap();
        assert_eq!(keys.verify(&token).unwrap().as_str(), "alice");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other_keys = TokenKeys::new(
            "another-secret-another-secret-xx",
            Duration::from_mins(1),
            None,
        );
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        let token = other_keys.mint(&"mallory".parse().unwrap()).unwrap();
        let err = keys.verify(&token).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Unauthenticated("the token is not valid")
        ));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        let claims = Claims {
            sub: "bob".into(),
            exp: jsonwebtoken::get_current_timestamp() - 3600,
            aud: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &keys.encoding).unwrap();
        let err = keys.verify(&token).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Unauthenticated("the token has expired")
        ));
    }

    /// A token with `claims` (JSON) signed with the test secret.
    fn signed(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
    }

    #[test]
    fn an_audience_is_ignored_unless_one_is_configured_and_then_required() {
        let exp = jsonwebtoken::get_current_timestamp() + 60;
        let for_shop = signed(&serde_json::json!({"sub": "carol", "exp": exp, "aud": "shop"}));
        let without = signed(&serde_json::json!({"sub": "carol", "exp": exp}));
        let any_audience = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        assert_eq!(any_audience.verify(&for_shop).unwrap().as_str(), "carol");
        let shop_only = TokenKeys::new(SECRET, Duration::from_mins(1), Some("shop"));
        assert_eq!(shop_only.verify(&for_shop).unwrap().as_str(), "carol");
        let for_other = signed(&serde_json::json!({"sub": "carol", "exp": exp, "aud": "other"}));
        assert!(shop_only.verify(&for_other).is_err());
        assert!(
            shop_only.verify(&without).is_err(),
            "the audience is required"
        );
        let minted = shop_only.mint(&"dave".parse().unwrap()).unwrap();
        assert_eq!(shop_only.verify(&minted).unwrap().as_str(), "dave");
    }

    #[test]
    fn a_token_used_before_its_not_before_time_is_refused() {
        let now = jsonwebtoken::get_current_timestamp();
        let early =
            signed(&serde_json::json!({"sub": "erin", "exp": now + 3600, "nbf": now + 600}));
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        assert!(matches!(
            keys.verify(&early),
            Err(ApiError::Unauthenticated("the token is not valid yet"))
        ));
        let ripe = signed(&serde_json::json!({"sub": "erin", "exp": now + 3600, "nbf": now - 1}));
        assert!(keys.verify(&ripe).is_ok());
    }

    #[test]
    fn garbage_is_not_a_token() {
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        assert!(keys.verify("not.a.jwt").is_err());
    }

    #[test]
    fn a_token_whose_subject_is_no_user_id_is_refused() {
        let keys = TokenKeys::new(SECRET, Duration::from_mins(1), None);
        let claims = Claims {
            sub: String::new(),
            exp: jsonwebtoken::get_current_timestamp() + 60,
            aud: None,
        };
        let token = jsonwebtoken::encode(&Header::default(), &claims, &keys.encoding).unwrap();
        assert!(matches!(
            keys.verify(&token),
            Err(ApiError::Unauthenticated(
                "the token's subject is not a valid user id"
            ))
        ));
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"token", b"token"));
        assert!(!constant_time_eq(b"token", b"tokex"));
        assert!(!constant_time_eq(b"token", b"token2"));
    }
}
