//! The order stream's credential in a URL: a stream token, good for one order's stream for a
//! minute.
//!
//! A browser's `EventSource` cannot set headers, so `GET /api/v1/orders/{id}/events` also
//! takes a credential in its query string, and a URL lands in proxies' access logs. A user
//! token there would hand whoever reads the log an hour of the buyer's account, payment
//! included. So the query string takes only a stream token, which
//! `POST /api/v1/orders/{order_id}/stream-token` gives the order's owner:
//! - it names one order (and its owner) and opens that order's stream only;
//! - it lives [`STREAM_TOKEN_LIFETIME`], checked when a stream opens (an open stream
//!   outlives it; `EventSource`'s reconnects within the minute reuse it, and a page asks for
//!   another after that);
//! - it is signed with a key of its own, derived from `JWT_SECRET`, the issuer and the audience
//!   this gateway mints for, and carries no `sub`: no check of a user token can take it for
//!   one, so every other route refuses it, and neither a demo nor another API sharing the
//!   secret can mint one this gateway takes;
//! - the query string refuses a user token, with a message saying what to send instead.
//!
//! The `Authorization` header keeps taking the user token, for every client that can set it.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use shared::ids::{OrderId, UserId};

use super::TokenKeys;
use crate::claims::TokenRules;
use crate::error::ApiError;
use crate::extract::PathId;

/// How long a stream token opens its stream.
pub const STREAM_TOKEN_LIFETIME: Duration = Duration::from_mins(1);

/// The audience of every stream token.
const AUDIENCE: &str = "seckill-order-stream";

/// What the signing key is derived for: `HMAC(JWT_SECRET, label, issuer, audience)` is a
/// key no other token is signed with.
const KEY_LABEL: &str = "seckill order-stream token signing key";

#[derive(Serialize, Deserialize)]
struct StreamClaims {
    /// The order whose stream it opens, and its owner.
    order: String,
    user: String,
    aud: String,
    exp: u64,
}

/// Mints and checks stream tokens.
pub struct StreamTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl StreamTokens {
    /// Keys derived from `secret` (`JWT_SECRET`) and what `rules` mint for, so every gateway
    /// of a deployment accepts the tokens any of them minted, and only those.
    pub fn new(secret: &str, rules: &TokenRules) -> Self {
        let label = format!(
            "{KEY_LABEL}\n{}\n{}",
            rules.issuer,
            rules.minting_audience()
        );
        let key = jsonwebtoken::crypto::sign(
            label.as_bytes(),
            &EncodingKey::from_secret(secret.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HMAC-SHA256 takes a key of any length");
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "aud"]);
        Self {
            encoding: EncodingKey::from_secret(key.as_bytes()),
            decoding: DecodingKey::from_secret(key.as_bytes()),
            validation,
        }
    }

    /// A token that opens `order_id`'s stream as `user_id` for [`STREAM_TOKEN_LIFETIME`].
    pub fn mint(&self, order_id: &OrderId, user_id: &UserId) -> Result<String, ApiError> {
        let claims = StreamClaims {
            order: order_id.to_string(),
            user: user_id.to_string(),
            aud: AUDIENCE.to_owned(),
            exp: jsonwebtoken::get_current_timestamp() + STREAM_TOKEN_LIFETIME.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(
            |error| ApiError::Internal {
                during: "signing a stream token",
                source: Box::new(error),
            },
        )
    }

    /// The user a valid, unexpired stream token for `order_id` was minted for.
    pub fn verify(&self, token: &str, order_id: &OrderId) -> Result<UserId, ApiError> {
        let claims = jsonwebtoken::decode::<StreamClaims>(token, &self.decoding, &self.validation)
            .map_err(|error| match error.kind() {
                ErrorKind::ExpiredSignature => ApiError::Unauthenticated(
                    "the stream token has expired; POST /api/v1/orders/{order_id}/stream-token gives another",
                ),
                _ => ApiError::Unauthenticated(NOT_A_STREAM_TOKEN),
            })?
            .claims;
        if claims.order != order_id.as_str() {
            return Err(ApiError::Unauthenticated(
                "the stream token opens another order's stream",
            ));
        }
        claims
            .user
            .parse()
            .map_err(|_| ApiError::Unauthenticated(NOT_A_STREAM_TOKEN))
    }
}

const NOT_A_STREAM_TOKEN: &str = "access_token takes a stream token from POST /api/v1/orders/{order_id}/stream-token, never a user token (send that in the Authorization header)";

/// Who opens an order's stream, and which order: the user token in the `Authorization`
/// header, or else a stream token for this very order in `?access_token=`.
pub struct StreamUser {
    pub user_id: UserId,
    pub order_id: OrderId,
}

#[derive(Deserialize)]
struct AccessToken {
    access_token: String,
}

impl<S> FromRequestParts<S> for StreamUser
where
    Arc<TokenKeys>: FromRef<S>,
    Arc<StreamTokens>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let PathId(order_id) = PathId::<OrderId>::from_request_parts(parts, state).await?;
        let user_id = if parts.headers.contains_key(AUTHORIZATION) {
            Arc::<TokenKeys>::from_ref(state).user(&parts.headers)?
        } else {
            let Query(AccessToken { access_token }) = Query::try_from_uri(&parts.uri)
                .map_err(|_| {
                    ApiError::Unauthenticated(
                        "the Authorization header (a user token) or the access_token query parameter (a stream token) is missing",
                    )
                })?;
            Arc::<StreamTokens>::from_ref(state).verify(&access_token, &order_id)?
        };
        Ok(Self { user_id, order_id })
    }
}

#[cfg(test)]
mod tests {
    use shared::config::Mode;

    use super::*;
    use crate::auth::tests::{SECRET, rules};

    /// A deployment's stream tokens, signed with `secret`.
    fn tokens(secret: &str) -> StreamTokens {
        StreamTokens::new(secret, &rules(Mode::Deployment))
    }

    fn order(sale: &str) -> OrderId {
        OrderId::generate(&sale.parse().expect("a sale id"))
    }

    #[test]
    fn a_stream_token_opens_its_order_only() {
        let tokens = tokens(SECRET);
        let (mine, other) = (order("s1"), order("s1"));
        let token = tokens.mint(&mine, &"ada".parse().unwrap()).unwrap();
        assert_eq!(tokens.verify(&token, &mine).unwrap().as_str(), "ada");
        assert!(matches!(
            tokens.verify(&token, &other),
            Err(ApiError::Unauthenticated(
                "the stream token opens another order's stream"
            ))
        ));
    }

    #[test]
    fn a_stream_token_is_no_user_token_and_a_user_token_no_stream_token() {
        let users = TokenKeys::new(SECRET, Duration::from_hours(1), rules(Mode::Deployment));
        let streams = tokens(SECRET);
        let order_id = order("s1");
        let ada: UserId = "ada".parse().unwrap();
        let stream_token = streams.mint(&order_id, &ada).unwrap();
        assert!(users.verify(&stream_token).is_err());
        let user_token = users.mint(&ada).unwrap();
        assert!(matches!(
            streams.verify(&user_token, &order_id),
            Err(ApiError::Unauthenticated(NOT_A_STREAM_TOKEN))
        ));
    }

    #[test]
    fn a_stream_token_lives_a_minute_and_is_then_refused_as_expired() {
        let streams = tokens(SECRET);
        let order_id = order("s1");
        let token = streams.mint(&order_id, &"ada".parse().unwrap()).unwrap();
        let claims = jsonwebtoken::dangerous::insecure_decode::<StreamClaims>(&token)
            .unwrap()
            .claims;
        let lifetime = claims.exp - jsonwebtoken::get_current_timestamp();
        assert!((59..=60).contains(&lifetime), "{lifetime} s");

        let expired = StreamClaims {
            exp: jsonwebtoken::get_current_timestamp() - 60,
            ..claims
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &streams.encoding).unwrap();
        let Err(ApiError::Unauthenticated(message)) = streams.verify(&token, &order_id) else {
            panic!("an expired stream token was accepted");
        };
        assert!(message.contains("expired"), "{message}");
    }

    #[test]
    fn gateways_sharing_a_secret_accept_each_others_stream_tokens_and_no_one_elses() {
        let order_id = order("s1");
        let token = tokens(SECRET)
            .mint(&order_id, &"ada".parse().unwrap())
            .unwrap();
        assert!(tokens(SECRET).verify(&token, &order_id).is_ok());
        let elsewhere = tokens("another-secret-another-secret-xx");
        assert!(elsewhere.verify(&token, &order_id).is_err());
    }

    #[test]
    fn a_demo_sharing_the_secret_mints_no_stream_token_a_deployment_takes() {
        let order_id = order("s1");
        let demo = StreamTokens::new(SECRET, &rules(Mode::Demo));
        let token = demo.mint(&order_id, &"ada".parse().unwrap()).unwrap();
        assert!(demo.verify(&token, &order_id).is_ok());
        assert!(tokens(SECRET).verify(&token, &order_id).is_err());
    }
}
