//! Micro-benchmarks of what every purchase does on the gateway, so a change that costs
//! microseconds shows before it ships (`cargo bench -p gateway`): the token's verification,
//! the per-user limiter check, the event's serialisation and the stock script's reply read.
//!
//! They measure pieces alone, warm, on one core; `scripts/bench` measures the whole path.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::Duration;

use chrono::Utc;
use criterion::{Criterion, criterion_group, criterion_main};
use gateway::auth::TokenKeys;
use gateway::risk::limits::RateLimits;
use redis::FromRedisValue;
use shared::event::ReservationEvent;
use shared::ids::{OrderId, SaleId, UserId};
use shared::stock::ReserveReply;

const SECRET: &str = "a-benchmark-secret-of-32-bytes!!";

fn token_verification(c: &mut Criterion) {
    let config: gateway::Config = shared::config::defaults();
    let keys = TokenKeys::new(SECRET, Duration::from_hours(1), config.token_rules());
    let token = keys
        .mint(&"buyer-42".parse().expect("a user id"))
        .expect("a token");
    c.bench_function("token verification (HS256)", |b| {
        b.iter(|| keys.verify(black_box(&token)).expect("valid"));
    });
}

fn limiter_check(c: &mut Criterion) {
    let limits = RateLimits::new(None, NonZeroU32::new(1_000_000), None);
    // A crowd: every check a user the limiter has seen among many, as in a flash sale.
    let users: Vec<UserId> = (0..10_000)
        .map(|i| format!("buyer-{i}").parse().expect("a user id"))
        .collect();
    let mut next = users.iter().cycle();
    c.bench_function("per-user limiter check, 10,000 users", |b| {
        b.iter(|| {
            let user = next.next().expect("cycles forever");
            limits.check_user(black_box(user)).expect("under the limit");
        });
    });
}

fn event_serialisation(c: &mut Criterion) {
    let sale: SaleId = "bench-sale".parse().expect("a sale id");
    let user: UserId = "buyer-42".parse().expect("a user id");
    c.bench_function("reservation event: made and serialised", |b| {
        b.iter(|| {
            let now = Utc::now();
            let event = ReservationEvent::new(
                OrderId::generate(&sale),
                black_box(&user),
                1999,
                now,
                now + chrono::Duration::minutes(15),
            );
            black_box(event.to_json())
        });
    });
}

fn lua_reply(c: &mut Criterion) {
    let reply = redis::Value::Array(vec![
        redis::Value::BulkString(b"reserved".to_vec()),
        redis::Value::Int(41),
        redis::Value::BulkString(Vec::new()),
    ]);
    c.bench_function("reserve.lua reply read", |b| {
        b.iter(|| ReserveReply::from_redis_value(black_box(reply.clone())).expect("a reply"));
    });
}

criterion_group!(
    hot_path,
    token_verification,
    limiter_check,
    event_serialisation,
    lua_reply
);
criterion_main!(hot_path);
