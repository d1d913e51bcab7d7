//! Rate limits with governor (GCRA): one global, one per user, one per client IP.
//!
//! Each is optional (0 in the config turns it off). The keyed limiters remember every key
//! they have seen, so a periodic [`RateLimits::retain_recent`] forgets idle keys and reports
//! how many are tracked; without it a crowd of one-off users would grow memory forever.
//!
//! A refusal is a [`RateLimited`] of this module's own; the API maps it to its 429 in one
//! place (`crate::error`).

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use metrics::{counter, gauge};
use shared::ids::UserId;

/// Requests refused by a rate limit, by limiter.
pub const RATE_LIMITED_TOTAL: &str = "seckill_rate_limited_total";
/// Keys a keyed limiter currently tracks, by limiter.
pub const RATE_LIMITER_KEYS: &str = "seckill_rate_limiter_keys";

/// A request over a limit: which limit, and when a retry may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    pub limiter: &'static str,
    pub retry_after: Duration,
}

pub struct RateLimits {
    clock: DefaultClock,
    global: Option<DefaultDirectRateLimiter>,
    per_user: Option<DefaultKeyedRateLimiter<UserId>>,
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl RateLimits {
    /// Limits in requests per second (each also the burst); `None` disables one.
    pub fn new(
        global: Option<NonZeroU32>,
        per_user: Option<NonZeroU32>,
        per_ip: Option<NonZeroU32>,
    ) -> Self {
        Self {
            clock: DefaultClock::default(),
            global: global.map(|rate| RateLimiter::direct(Quota::per_second(rate))),
            per_user: per_user.map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
            per_ip: per_ip.map(|rate| RateLimiter::keyed(Quota::per_second(rate))),
        }
    }

    pub fn check_global(&self) -> Result<(), RateLimited> {
        match &self.global {
            Some(limiter) => limiter
                .check()
                .map_err(|not_until| refusal("global", not_until.wait_time_from(self.clock.now()))),
            None => Ok(()),
        }
    }

    pub fn check_ip(&self, ip: IpAddr) -> Result<(), RateLimited> {
        self.check_keyed(self.per_ip.as_ref(), &ip, "ip")
    }

    pub fn check_user(&self, user_id: &UserId) -> Result<(), RateLimited> {
        self.check_keyed(self.per_user.as_ref(), user_id, "user")
    }

    fn check_keyed<K: Clone + Eq + Hash>(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<K>>,
        key: &K,
        name: &'static str,
    ) -> Result<(), RateLimited> {
        match limiter {
            Some(limiter) => limiter
                .check_key(key)
                .map_err(|not_until| refusal(name, not_until.wait_time_from(self.clock.now()))),
            None => Ok(()),
        }
    }

    /// Forgets keys whose limit has fully replenished and reports how many remain.
    pub fn retain_recent(&self) {
        if let Some(limiter) = &self.per_user {
            limiter.retain_recent();
            gauge!(RATE_LIMITER_KEYS, "limiter" => "user").set(limiter.len() as f64);
        }
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            gauge!(RATE_LIMITER_KEYS, "limiter" => "ip").set(limiter.len() as f64);
        }
    }
}

fn refusal(limiter: &'static str, retry_after: Duration) -> RateLimited {
    counter!(RATE_LIMITED_TOTAL, "limiter" => limiter).increment(1);
    RateLimited {
        limiter,
        retry_after,
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn rate(n: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(n)
    }

    fn user(name: &str) -> UserId {
        name.parse().unwrap()
    }

    #[test]
    fn a_user_is_refused_past_the_burst_and_told_when_to_retry() {
        let limits = RateLimits::new(None, rate(2), None);
        let alice = user("alice");
        assert!(limits.check_user(&alice).is_ok());
        assert!(limits.check_user(&alice).is_ok());
        match limits.check_user(&alice) {
            Err(RateLimited {
                limiter: "user",
                retry_after,
            }) => assert!(retry_after.as_millis() > 0 && retry_after.as_secs() <= 1),
            other => panic!("expected a user rate limit, got {other:?}"),
        }
    }

    #[test]
    fn users_do_not_share_a_limit() {
        let limits = RateLimits::new(None, rate(1), None);
        assert!(limits.check_user(&user("alice")).is_ok());
        assert!(limits.check_user(&user("bob")).is_ok());
        assert!(limits.check_user(&user("alice")).is_err());
    }

    #[test]
    fn the_global_and_ip_limits_refuse_by_name() {
        let limits = RateLimits::new(rate(1), None, rate(1));
        assert!(limits.check_global().is_ok());
        assert!(matches!(
            limits.check_global(),
            Err(RateLimited {
                limiter: "global",
                ..
            })
        ));
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(limits.check_ip(ip).is_ok());
        assert!(matches!(
            limits.check_ip(ip),
            Err(RateLimited { limiter: "ip", .. })
        ));
    }

    #[test]
    fn disabled_limits_never_refuse() {
        let limits = RateLimits::new(None, None, None);
        for _ in 0..1000 {
            assert!(limits.check_global().is_ok());
            assert!(limits.check_user(&user("alice")).is_ok());
            assert!(limits.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST)).is_ok());
        }
    }
}
