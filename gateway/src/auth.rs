//! Who is calling: users by JWT (HS256, `sub` = user id), admins by a bearer token.
//!
//! In production a login service mints the user tokens; here `POST /api/v1/admin/tokens`
//! stands in for it, with the same secret and claims. What a token must say besides its
//! signature (issuer, audience, issue time, lifetime) is `crate::claims`.
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
use shared::config::Secret;
use shared::ids::UserId;

use crate::claims::{Claims, LEEWAY_SECS, TokenRules};
use crate::error::ApiError;

/// Signs and checks user tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    rules: TokenRules,
}

impl TokenKeys {
    /// Keys for tokens signed with `secret`, minted for `ttl`, accepted when they follow
    /// `rules`. A token used before its `nbf` is refused too.
    pub fn new(secret: &str, ttl: Duration, rules: TokenRules) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // The audience, the issuer and the issue time are `TokenRules::check`'s, which says
        // which one is wrong.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
            rules,
        }
    }

    /// A token for `user_id`, valid for the configured lifetime: in the configured audience,
    /// or, in demo mode, in the demo audience, so that nothing a demo mints (demo sign-in,
    /// or the admin call with the demo's published admin token) buys at a deployment that
    /// shares its secret.
    pub fn mint(&self, user_id: &UserId) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let audience = self.rules.minting_audience();
        let claims = self.rules.claims(user_id.as_str(), audience, now, self.ttl);
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(
            |error| ApiError::Internal {
                during: "signing a token",
                source: Box::new(error),
            },
        )
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
        self.rules
            .check(&data.claims, jsonwebtoken::get_current_timestamp())
            .map_err(ApiError::Unauthenticated)?;
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
    use shared::config::Mode;

    use super::*;

    pub(super) const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// The rules of a gateway with the default issuer and audience, in `mode`.
    pub(super) fn rules(mode: Mode) -> TokenRules {
        TokenRules {
            issuer: "seckill".into(),
            audience: "seckill".into(),
            max_lifetime: Duration::from_hours(1),
            mode,
        }
    }

    fn keys(secret: &str, mode: Mode) -> TokenKeys {
        TokenKeys::new(secret, Duration::from_mins(1), rules(mode))
    }

    /// A token with `claims` (JSON) signed with the test secret.
    fn signed(claims: &serde_json::Value) -> String {
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::default(), claims, &key).unwrap()
    }

    /// Claims the test keys accept, for `sub`, issued now and expiring in a minute.
    fn good_claims(sub: &str) -> serde_json::Value {
        let now = jsonwebtoken::get_current_timestamp();
        serde_json::json!({"sub": sub, "iat": now, "exp": now + 60, "iss": "seckill", "aud": "seckill"})
    }

    #[test]
    fn a_minted_token_verifies_to_its_user() {
        let keys = keys(SECRET, Mode::Deployment);
        let token = keys.mint(&"alice".parse().unwrap()).unwrap();
        assert_eq!(keys.verify(&token).unwrap().as_str(), "alice");
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let other_keys = keys("another-secret-another-secret-xx", Mode::Deployment);
        let token = other_keys.mint(&"mallory".parse().unwrap()).unwrap();
        let err = keys(SECRET, Mode::Deployment).verify(&token).unwrap_err();
        assert!(matches!(
            err,
            ApiError::Unauthenticated("the token is not valid")
        ));
    }

    #[test]
    fn an_expired_token_is_refused_as_expired() {
        let mut claims = good_claims("bob");
        claims["iat"] = serde_json::json!(jsonwebtoken::get_current_timestamp() - 3700);
        claims["exp"] = serde_json::json!(jsonwebtoken::get_current_timestamp() - 3600);
        let err = keys(SECRET, Mode::Deployment)
            .verify(&signed(&claims))
            .unwrap_err();
        assert!(matches!(
            err,
            ApiError::Unauthenticated("the token has expired")
        ));
    }

    #[test]
    fn every_token_a_demo_mints_is_refused_by_a_deployment_sharing_the_secret() {
        let demo = keys(SECRET, Mode::Demo);
        let token = demo.mint(&"carol".parse().unwrap()).unwrap();
        assert_eq!(demo.verify(&token).unwrap().as_str(), "carol");
        assert!(matches!(
            keys(SECRET, Mode::Deployment).verify(&token),
            Err(ApiError::Unauthenticated(
                "the token is a demo token, and this gateway does not run in demo mode"
            ))
        ));
    }

    #[test]
    fn a_token_without_the_claims_the_rules_require_is_refused_saying_which() {
        let mut claims = good_claims("dave");
        claims.as_object_mut().unwrap().remove("iat");
        assert!(matches!(
            keys(SECRET, Mode::Deployment).verify(&signed(&claims)),
            Err(ApiError::Unauthenticated(
                "the token has no issue time (iat)"
            ))
        ));
    }

    #[test]
    fn a_token_used_before_its_not_before_time_is_refused() {
        let now = jsonwebtoken::get_current_timestamp();
        let mut early = good_claims("erin");
        early["nbf"] = serde_json::json!(now + 600);
        let keys = keys(SECRET, Mode::Deployment);
        assert!(matches!(
            keys.verify(&signed(&early)),
            Err(ApiError::Unauthenticated("the token is not valid yet"))
        ));
        let mut ripe = good_claims("erin");
        ripe["nbf"] = serde_json::json!(now - 1);
        assert!(keys.verify(&signed(&ripe)).is_ok());
    }

    #[test]
    fn garbage_is_not_a_token() {
        assert!(keys(SECRET, Mode::Deployment).verify("not.a.jwt").is_err());
    }

    #[test]
    fn a_token_whose_subject_is_no_user_id_is_refused() {
        let token = signed(&good_claims(""));
        assert!(matches!(
            keys(SECRET, Mode::Deployment).verify(&token),
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
