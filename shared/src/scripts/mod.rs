//! The Lua scripts of the Redis backends, one per step that must be atomic, each loaded once
//! and run with EVALSHA (the redis crate loads it again on NOSCRIPT). KEYS and ARGV are
//! documented at the top of each file; every key a script touches shares one hash tag, so it
//! runs unchanged on Redis Cluster.

use std::sync::LazyLock;

use redis::Script;

/// The stock lock: the whole purchase decision (`reserve.lua`).
pub static RESERVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("reserve.lua")));

/// A new sale and its stock counter, unless the id is taken.
pub static CREATE_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("create_sale.lua")));

/// The source of a script that handles a batch, after the prelude that cuts it into slices
/// one command can take (`slices.lua`).
macro_rules! with_slices {
    ($file:literal) => {
        concat!(include_str!("slices.lua"), include_str!($file))
    };
}

/// A script (its files in order) that reads Redis's clock, after the prelude that defines
/// `clock_ms` (`clock.lua`).
macro_rules! with_clock {
    ($($file:literal),+) => {
        LazyLock::new(|| Script::new(concat!(include_str!("clock.lua"), $(include_str!($file)),+)))
    };
}

/// A script (its files in order) that changes orders' statuses, after the preludes that read
/// the clock, record each change's transition event (`transition.lua`) and slice its batch.
macro_rules! with_transitions {
    ($($file:literal),+) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("clock.lua"),
                with_slices!("transition.lua"),
                $(include_str!($file)),+
            ))
        })
    };
}

/// Orders stored: status `created`, out of the outbox.
pub static COMPLETE_ORDER: LazyLock<Script> = with_transitions!("complete_order.lua");

/// The source of `acknowledge.lua`, for a pipeline that loads it before running it.
pub const ACKNOWLEDGE_SOURCE: &str = with_slices!("acknowledge.lua");

/// Broker acknowledgements recorded: unpublished → acknowledged.
pub static ACKNOWLEDGE: LazyLock<Script> = LazyLock::new(|| Script::new(ACKNOWLEDGE_SOURCE));

/// Orders that could not be stored: failed, their units returned.
pub static FAIL_ORDERS: LazyLock<Script> = with_transitions!("fail_orders.lua");

/// An order paid, or found too late to pay (and expired on the spot).
pub static PAY: LazyLock<Script> = with_transitions!("payment_refusal.lua", "pay.lua");

/// A payment intent recorded before the charge, or the reason there is nothing to charge (the
/// refusals `pay.lua` shares, `payment_refusal.lua`).
pub static BEGIN_PAYMENT: LazyLock<Script> =
    with_clock!("payment_refusal.lua", "begin_payment.lua");

/// The clock of the node that holds a key (`read_clock.lua`).
pub static READ_CLOCK: LazyLock<Script> = with_clock!("read_clock.lua");

/// A sale's payment intents due for the resolver's look, each with its buyer and status.
pub static CLAIM_PAYMENTS: LazyLock<Script> = with_clock!("claim_payments.lua");

/// A sale's orders past their pay-by time expired, their units returned.
pub static EXPIRE_DUE: LazyLock<Script> = with_transitions!("expire_due.lua");

/// A sale's transition events due for publishing, handed to the relay.
pub static CLAIM_TRANSITIONS: LazyLock<Script> =
    LazyLock::new(|| Script::new(with_slices!("claim_transitions.lua")));

/// A sale whose work is done left to expire.
pub static SETTLE_SALE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("settle_sale.lua")));

/// The source of `stats_apply.lua`, for a pipeline that loads it before running it.
pub const STATS_APPLY_SOURCE: &str = concat!(
    include_str!("expire_with_sale.lua"),
    include_str!("stats_apply.lua")
);

/// An event counted in its sale's statistics, once.
pub static STATS_APPLY: LazyLock<Script> = LazyLock::new(|| Script::new(STATS_APPLY_SOURCE));

/// The source of `stats_transition.lua`, for a pipeline that loads it before running it.
pub const STATS_TRANSITION_SOURCE: &str = concat!(
    include_str!("expire_with_sale.lua"),
    include_str!("stats_transition.lua")
);

/// A transition counted in its sale's statistics, once.
pub static STATS_TRANSITION: LazyLock<Script> =
    LazyLock::new(|| Script::new(STATS_TRANSITION_SOURCE));

/// A lease acquired or renewed.
pub static LEASE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lease.lua")));

/// Counters added to, once per event id.
pub static COUNTERS_ADD_ONCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("counters_add_once.lua")));

/// An order's SMS claimed for one sender.
pub static SMS_CLAIM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sms_claim.lua")));

/// A sender's claim on an order's SMS given up.
pub static SMS_RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("sms_release.lua")));

/// A script's reply that is one word of `vocabulary`, as the value the word stands for; a
/// word outside it is a parse error that names it.
pub fn one_of<T: Copy>(
    reply: redis::Value,
    vocabulary: &[(&str, T)],
) -> Result<T, redis::ParsingError> {
    let word: String = redis::FromRedisValue::from_redis_value(reply)?;
    vocabulary
        .iter()
        .find(|(known, _)| *known == word)
        .map(|(_, value)| *value)
        .ok_or_else(|| format!("the script answered `{word}`, none of its replies").into())
}
