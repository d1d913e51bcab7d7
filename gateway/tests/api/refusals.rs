//! Every refusal of the API table answers its status and code, and writes nothing: Redis and
//! the topic are exactly as they were before the refused request.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use jsonwebtoken::{EncodingKey, Header};
use redis::AsyncCommands;
use serde_json::json;

use crate::helpers::{
    JWT_SECRET, TestApp, assert_error, claims, spawn_app, spawn_app_with, test_config,
};

/// What a refusal must leave unchanged.
struct Snapshot {
    redis: BTreeMap<String, Vec<u8>>,
    messages: i64,
}

async fn snapshot(app: &mut TestApp) -> Snapshot {
    Snapshot {
        redis: app.redis_fingerprint().await,
        messages: app.topic_message_count(),
    }
}

async fn assert_untouched(app: &mut TestApp, before: &Snapshot) {
    let after = snapshot(app).await;
    assert_eq!(after.redis, before.redis, "a refusal changed Redis");
    assert_eq!(
        after.messages, before.messages,
        "a refusal published an event"
    );
}

/// Buys one unit and waits until its event is on the topic and acknowledged, so later
/// snapshots are not disturbed by that purchase's asynchronous tail.
async fn buy_and_settle(app: &mut TestApp, sale: &str, user: &str) {
    let before = app.topic_message_count();
    assert_eq!(app.purchase(sale, &app.token(user)).await.status(), 202);
    app.wait_for_message_count(before + 1, Duration::from_secs(30))
        .await;
    assert_eq!(
        app.wait_for_acknowledgements(sale).await,
        0,
        "the event was acknowledged"
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_are_unauthenticated() {
    let mut app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let before = snapshot(&mut app).await;
    let url = app.url(&format!("/api/v1/sales/{sale}/orders"));
    let now = jsonwebtoken::get_current_timestamp();

    let missing = app.http.post(&url).send().await.unwrap();
    assert_error(missing, 401, "unauthenticated").await;

    let garbage = app
        .http
        .post(&url)
        .bearer_auth("not-a-jwt")
        .send()
        .await
        .unwrap();
    assert_error(garbage, 401, "unauthenticated").await;

    let forged = jsonwebtoken::encode(
        &Header::default(),
        &claims("mallory", now, now + 600),
        &EncodingKey::from_secret(b"not-the-secret-not-the-secret-!!"),
    )
    .unwrap();
    assert_error(app.purchase(&sale, &forged).await, 401, "unauthenticated").await;

    let expired = jsonwebtoken::encode(
        &Header::default(),
        &claims("late", now - 1200, now - 600),
        &EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let body = assert_error(app.purchase(&sale, &expired).await, 401, "unauthenticated").await;
    assert!(
        body["message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    assert_untouched(&mut app, &before).await;
}

#[tokio::test]
async fn a_blacklisted_user_is_refused_until_the_ban_is_lifted() {
    let mut app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let ban = app
        .admin_post("/api/v1/admin/blacklist")
        .json(&json!({"user_id": "bot-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(ban.status(), 204);

    let before = snapshot(&mut app).await;
    assert_error(
        app.purchase(&sale, &app.token("bot-1")).await,
        403,
        "blacklisted",
    )
    .await;
    assert_untouched(&mut app, &before).await;

    let unban = app
        .http
        .delete(app.url("/api/v1/admin/blacklist/bot-1"))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(unban.status(), 204);
    assert_eq!(app.purchase(&sale, &app.token("bot-1")).await.status(), 202);
}

#[tokio::test]
async fn a_user_banned_before_the_gateway_started_is_refused_from_its_first_request() {
    let config = test_config();
    let banned = "eve".parse().unwrap();
    shared::backends::Backends::open(&config.redis)
        .unwrap()
        .blacklist()
        .set_banned(&banned, true)
        .await
        .unwrap();
    let app = spawn_app_with(config).await;
    let sale = app.create_open_sale(10).await;
    assert_error(
        app.purchase(&sale, &app.token("eve")).await,
        403,
        "blacklisted",
    )
    .await;
}

#[tokio::test]
async fn a_sale_outside_its_window_is_not_open() {
    let mut app = spawn_app().await;
    let now = Utc::now();
    let upcoming = app
        .create_sale(
            10,
            now + ChronoDuration::hours(1),
            now + ChronoDuration::hours(2),
        )
        .await;
    let ended = app
        .create_sale(
            10,
            now - ChronoDuration::hours(2),
            now - ChronoDuration::hours(1),
        )
        .await;
    let before = snapshot(&mut app).await;
    let token = app.token("early-bird");
    let body = assert_error(app.purchase(&upcoming, &token).await, 403, "sale_not_open").await;
    assert!(
        body["message"].as_str().unwrap().contains("not open yet"),
        "{body}"
    );
    let body = assert_error(app.purchase(&ended, &token).await, 403, "sale_not_open").await;
    assert!(body["message"].as_str().unwrap().contains("over"), "{body}");
    assert_untouched(&mut app, &before).await;
}

#[tokio::test]
async fn an_unknown_sale_is_not_found() {
    let mut app = spawn_app().await;
    let before = snapshot(&mut app).await;
    let token = app.token("alice");
    assert_error(
        app.purchase("no-such-sale", &token).await,
        404,
        "unknown_sale",
    )
    .await;
    assert_error(app.purchase("bad%20id", &token).await, 404, "unknown_sale").await;
    let view = app
        .http
        .get(app.url("/api/v1/sales/no-such-sale"))
        .send()
        .await
        .unwrap();
    assert_error(view, 404, "unknown_sale").await;
    assert_untouched(&mut app, &before).await;
}

#[tokio::test]
async fn a_second_purchase_by_the_same_buyer_is_refused() {
    let mut app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    buy_and_settle(&mut app, &sale, "alice").await;
    let before = snapshot(&mut app).await;
    let body = assert_error(
        app.purchase(&sale, &app.token("alice")).await,
        409,
        "already_purchased",
    )
    .await;
    assert_untouched(&mut app, &before).await;
    // The answer names the order the buyer already holds, so a client whose first attempt
    // timed out can still find its purchase.
    let buyers: std::collections::HashMap<String, String> = app
        .redis
        .hgetall(app.sale_keys(&sale).buyers)
        .await
        .unwrap();
    assert_eq!(body["order_id"], buyers["alice"].as_str());
}

#[tokio::test]
async fn a_sold_out_sale_refuses_with_gone() {
    let mut app = spawn_app().await;
    let sale = app.create_open_sale(1).await;
    buy_and_settle(&mut app, &sale, "first").await;
    let before = snapshot(&mut app).await;
    // Both the script's answer and, after it, the local sold-out flag.
    assert_error(
        app.purchase(&sale, &app.token("second")).await,
        410,
        "sold_out",
    )
    .await;
    assert_error(
        app.purchase(&sale, &app.token("third")).await,
        410,
        "sold_out",
    )
    .await;
    // A sale's stock is public, so the flag answers before any token is looked at: the flood
    // costs no signature check. A sale that is not sold out still asks for the token first.
    assert_error(app.purchase(&sale, "not-a-token").await, 410, "sold_out").await;
    let anonymous = app
        .http
        .post(app.url(&format!("/api/v1/sales/{sale}/orders")))
        .send()
        .await
        .expect("a purchase without a token");
    assert_error(anonymous, 410, "sold_out").await;
    assert_untouched(&mut app, &before).await;
    let open = app.create_open_sale(1).await;
    assert_error(
        app.purchase(&open, "not-a-token").await,
        401,
        "unauthenticated",
    )
    .await;
}

#[tokio::test]
async fn each_rate_limit_answers_429_with_retry_after() {
    for (limiter, set_limit) in [
        (
            "user",
            (|c| c.rate_limit_user_per_sec = 1) as fn(&mut gateway::Config),
        ),
        ("ip", |c| c.rate_limit_ip_per_sec = 1),
        ("global", |c| c.rate_limit_global_per_sec = 1),
    ] {
        let mut config = test_config();
        set_limit(&mut config);
        let mut app = spawn_app_with(config).await;
        let before = snapshot(&mut app).await;
        let token = app.token("eager");
        // The first attempt spends the one request per second (on an unknown sale, so it writes
        // nothing either); the second is refused by the limiter.
        assert_error(
            app.purchase("no-such-sale", &token).await,
            404,
            "unknown_sale",
        )
        .await;
        let refused = app.purchase("no-such-sale", &token).await;
        let retry_after = refused
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
        let body = assert_error(refused, 429, "rate_limited").await;
        assert!(
            body["message"].as_str().unwrap().contains(limiter),
            "{body}"
        );
        assert!(
            matches!(retry_after, Some(1..=2)),
            "{limiter}: Retry-After {retry_after:?}"
        );
        assert_untouched(&mut app, &before).await;
    }
}

#[tokio::test]
#[expect(
    clippy::too_many_lines,
    reason = "one table of cases reads best in one place"
)]
async fn bad_admin_input_gets_a_clear_4xx_and_writes_nothing() {
    let mut app = spawn_app().await;
    let existing = app.create_open_sale(10).await;
    let before = snapshot(&mut app).await;
    let now = Utc::now();
    let valid = json!({
        "id": "fresh-sale", "name": "Phone", "price_cents": 100, "stock": 5,
        "starts_at": now, "ends_at": now + ChronoDuration::hours(1),
    });
    let with = |field: &str, value: serde_json::Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };

    let cases = [
        (
            "malformed JSON",
            app.admin_post("/api/v1/admin/sales")
                .header("content-type", "application/json")
                .body("{\"id\":"),
            400,
            "invalid_request",
        ),
        (
            "unknown field",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("colour", json!("red"))),
            400,
            "invalid_request",
        ),
        (
            "wrong type",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("stock", json!("many"))),
            400,
            "invalid_request",
        ),
        (
            "zero stock",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("stock", json!(0))),
            400,
            "invalid_request",
        ),
        (
            "bad id",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("id", json!("no spaces"))),
            400,
            "invalid_request",
        ),
        (
            "window reversed",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("ends_at", json!(now - ChronoDuration::hours(1)))),
            400,
            "invalid_request",
        ),
        (
            "no JSON content type",
            app.admin_post("/api/v1/admin/sales")
                .body(valid.to_string()),
            415,
            "unsupported_media_type",
        ),
        (
            "huge body",
            app.admin_post("/api/v1/admin/sales")
                .header("content-type", "application/json")
                .body(format!("{{\"name\":\"{}\"}}", "x".repeat(1 << 20))),
            413,
            "payload_too_large",
        ),
        (
            "duplicate id",
            app.admin_post("/api/v1/admin/sales")
                .json(&with("id", json!(existing))),
            409,
            "sale_exists",
        ),
        (
            "no admin token",
            app.http.post(app.url("/api/v1/admin/sales")).json(&valid),
            401,
            "unauthenticated",
        ),
        (
            "wrong admin token",
            app.http
                .post(app.url("/api/v1/admin/sales"))
                .bearer_auth("guess")
                .json(&valid),
            401,
            "unauthenticated",
        ),
        (
            "token for an empty user",
            app.admin_post("/api/v1/admin/tokens")
                .json(&json!({"user_id": ""})),
            400,
            "invalid_request",
        ),
        (
            "ban without user",
            app.admin_post("/api/v1/admin/blacklist").json(&json!({})),
            400,
            "invalid_request",
        ),
    ];
    for (case, request, status, code) in cases {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), status, "{case}");
        let body: serde_json::Value = response
            .json()
            .await
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(body["error"], code, "{case}: {body}");
    }
    assert_untouched(&mut app, &before).await;
}

#[tokio::test]
async fn a_malformed_purchase_body_is_refused_and_writes_nothing() {
    let mut app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let before = snapshot(&mut app).await;
    let url = app.url(&format!("/api/v1/sales/{sale}/orders"));
    for body in ["{", r#"{"quantity": 3}"#, r#"{"coupon": "FREE"}"#] {
        let response = app
            .http
            .post(&url)
            .bearer_auth(app.token("alice"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_error(response, 400, "invalid_request").await;
    }
    let huge = app
        .http
        .post(&url)
        .bearer_auth(app.token("alice"))
        .body("x".repeat(1 << 20))
        .send()
        .await
        .unwrap();
    assert_error(huge, 413, "payload_too_large").await;
    assert_untouched(&mut app, &before).await;
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(app.url("/api/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert_error(response, 404, "not_found").await;
    let response = app
        .http
        .delete(app.url("/api/v1/sales/x/orders"))
        .send()
        .await
        .unwrap();
    assert_error(response, 405, "method_not_allowed").await;
}
