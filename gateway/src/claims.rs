//! What a user token must say about itself, beyond a valid signature and an unexpired `exp`.
//!
//! A signature only proves that someone with the secret signed; the claims say for whom and
//! for how long. A token must name the issuer the gateway trusts (`iss`, `JWT_ISSUER`) and
//! its audience (`aud`, `JWT_AUDIENCE`), so a token another service of the same login
//! service was given does not buy here; it must say when it was issued (`iat`), and live no
//! longer than `JWT_MAX_LIFETIME_SECS`, so a leaked token is worth a bounded time. Demo
//! sign-in mints tokens for [`DEMO_AUDIENCE`], which only a gateway in demo mode accepts:
//! a demo sharing a deployment's secret cannot hand out tokens the deployment takes.
//!
//! [`TokenRules::check`] is a pure function of the claims and the clock; `crate::auth`
//! verifies the signature and expiry first, then asks it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::config::Mode;

/// The audience of the tokens demo sign-in mints; only a gateway in demo mode accepts it.
pub const DEMO_AUDIENCE: &str = "seckill-demo";

/// Seconds a token's clock may be ahead of the gateway's (its `iat`, `nbf`, `exp`).
pub const LEEWAY_SECS: u64 = 5;

/// A user token's claims, as signed and as read.
#[derive(Serialize, Deserialize)]
pub(crate) struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
}

/// `aud`: one audience or several (RFC 7519 allows both).
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Audience {
    One(String),
    Several(Vec<String>),
}

impl Audience {
    fn names(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Several(several) => several.iter().any(|one| one == audience),
        }
    }
}

/// What every accepted token must say, from the gateway's settings.
#[derive(Clone, Debug)]
pub struct TokenRules {
    /// The `iss` every token names (`JWT_ISSUER`).
    pub issuer: String,
    /// The `aud` every token names (`JWT_AUDIENCE`), and the audience admin-minted tokens carry.
    pub audience: String,
    /// The longest `exp - iat` accepted (`JWT_MAX_LIFETIME_SECS`).
    pub max_lifetime: Duration,
    /// In a demo, tokens for [`DEMO_AUDIENCE`] are accepted too.
    pub mode: Mode,
}

impl TokenRules {
    /// The claims of a token for `user_id` in `audience`, issued `now` (seconds since the
    /// epoch) for `ttl`.
    pub(crate) fn claims(&self, user_id: &str, audience: &str, now: u64, ttl: Duration) -> Claims {
        Claims {
            sub: user_id.to_owned(),
            exp: now + ttl.as_secs(),
            iat: Some(now),
            iss: Some(self.issuer.clone()),
            aud: Some(Audience::One(audience.to_owned())),
        }
    }

    /// The audience of the tokens this gateway mints: its own, or in demo mode the demo's.
    pub fn minting_audience(&self) -> &str {
        match self.mode {
            Mode::Deployment => &self.audience,
            Mode::Demo => DEMO_AUDIENCE,
        }
    }

    /// Why a token with `claims` (signature and expiry already checked) is refused at `now`,
    /// as the sentence of its 401; `Ok` when it is accepted.
    pub(crate) fn check(&self, claims: &Claims, now: u64) -> Result<(), &'static str> {
        match &claims.iss {
            None => return Err("the token names no issuer (iss)"),
            Some(issuer) if *issuer != self.issuer => {
                return Err("the token's issuer (iss) is not the one this gateway trusts");
            }
            Some(_) => {}
        }
        let Some(audience) = &claims.aud else {
            return Err("the token names no audience (aud)");
        };
        if !audience.names(&self.audience) {
            if !audience.names(DEMO_AUDIENCE) {
                return Err("the token is for another audience (aud)");
            }
            if self.mode != Mode::Demo {
                return Err(
                    "the token is a demo token, and this gateway does not run in demo mode",
                );
            }
        }
        let Some(issued_at) = claims.iat else {
            return Err("the token has no issue time (iat)");
        };
        if issued_at > now + LEEWAY_SECS {
            return Err("the token's issue time (iat) is in the future");
        }
        if claims.exp.saturating_sub(issued_at) > self.max_lifetime.as_secs() {
            return Err("the token lives longer (exp - iat) than this gateway accepts");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn rules(mode: Mode) -> TokenRules {
        TokenRules {
            issuer: "seckill".into(),
            audience: "shop".into(),
            max_lifetime: Duration::from_hours(1),
            mode,
        }
    }

    fn minted(audience: &str) -> Claims {
        rules(Mode::Deployment).claims("ann", audience, NOW, Duration::from_mins(10))
    }

    fn refusal(claims: &Claims) -> &'static str {
        rules(Mode::Deployment)
            .check(claims, NOW)
            .expect_err("refused")
    }

    #[test]
    fn a_minted_token_passes() {
        assert_eq!(rules(Mode::Deployment).check(&minted("shop"), NOW), Ok(()));
        let mut several = minted("shop");
        several.aud = Some(Audience::Several(vec!["other".into(), "shop".into()]));
        assert_eq!(rules(Mode::Deployment).check(&several, NOW), Ok(()));
    }

    #[test]
    fn a_missing_or_foreign_issuer_is_refused() {
        let mut claims = minted("shop");
        claims.iss = None;
        assert_eq!(refusal(&claims), "the token names no issuer (iss)");
        claims.iss = Some("elsewhere".into());
        assert_eq!(
            refusal(&claims),
            "the token's issuer (iss) is not the one this gateway trusts"
        );
    }

    #[test]
    fn a_missing_or_foreign_audience_is_refused() {
        let mut claims = minted("other");
        assert_eq!(refusal(&claims), "the token is for another audience (aud)");
        claims.aud = None;
        assert_eq!(refusal(&claims), "the token names no audience (aud)");
    }

    #[test]
    fn a_demo_token_passes_only_in_a_demo() {
        let demo = minted(DEMO_AUDIENCE);
        assert_eq!(
            refusal(&demo),
            "the token is a demo token, and this gateway does not run in demo mode"
        );
        assert_eq!(rules(Mode::Demo).check(&demo, NOW), Ok(()));
        assert_eq!(rules(Mode::Demo).check(&minted("shop"), NOW), Ok(()));
    }

    #[test]
    fn a_token_without_an_issue_time_or_issued_in_the_future_is_refused() {
        let mut claims = minted("shop");
        claims.iat = None;
        assert_eq!(refusal(&claims), "the token has no issue time (iat)");
        claims.iat = Some(NOW + LEEWAY_SECS + 1);
        assert_eq!(
            refusal(&claims),
            "the token's issue time (iat) is in the future"
        );
        claims.iat = Some(NOW + LEEWAY_SECS);
        assert_eq!(rules(Mode::Deployment).check(&claims, NOW), Ok(()));
    }

    #[test]
    fn a_token_that_lives_longer_than_the_maximum_is_refused() {
        let rules = rules(Mode::Deployment);
        let longest = rules.claims("ann", "shop", NOW, Duration::from_hours(1));
        assert_eq!(rules.check(&longest, NOW), Ok(()));
        let longer = rules.claims("ann", "shop", NOW, Duration::from_secs(3601));
        assert_eq!(
            rules.check(&longer, NOW),
            Err("the token lives longer (exp - iat) than this gateway accepts")
        );
    }
}
