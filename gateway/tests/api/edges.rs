//! The edges of input: tokens with claims a login service may add, path segments that are not
//! even text, bodies that break on the way in, and backends a lone gateway must not use. Each
//! answers as the API table says, with the JSON error body, and writes nothing.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{ADMIN_TOKEN, JWT_SECRET, assert_error, spawn_app, test_config};

fn signed(claims: &Value) -> String {
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&Header::default(), claims, &key).expect("signing")
}

#[tokio::test]
async fn a_token_with_an_audience_buys_and_one_not_yet_valid_is_refused() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let now = jsonwebtoken::get_current_timestamp();
    let with_audience = signed(&json!({"sub": "ann", "exp": now + 600, "aud": "shop"}));
    assert_eq!(app.purchase(&sale, &with_audience).await.status(), 202);
    let not_yet = signed(&json!({"sub": "ben", "exp": now + 600, "nbf": now + 300}));
    let body = assert_error(app.purchase(&sale, &not_yet).await, 401, "unauthenticated").await;
    assert!(
        body["message"].as_str().unwrap().contains("not valid yet"),
        "{body}"
    );
}

#[tokio::test]
async fn a_path_segment_that_is_not_text_gets_the_json_error_of_its_route() {
    let app = spawn_app().await;
    let get = |path: &str| app.http.get(app.url(path)).bearer_auth(app.token("cid"));
    let sale = get("/api/v1/sales/%FF").send().await.unwrap();
    assert_error(sale, 404, "unknown_sale").await;
    let order = get("/api/v1/orders/%FF").send().await.unwrap();
    assert_error(order, 404, "not_found").await;
    let purchase = app
        .http
        .post(app.url("/api/v1/sales/%FF/orders"))
        .bearer_auth(app.token("cid"))
        .send()
        .await
        .unwrap();
    assert_error(purchase, 404, "unknown_sale").await;
    let unban = app
        .http
        .delete(app.url("/api/v1/admin/blacklist/%FF"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_error(unban, 400, "invalid_request").await;
}

#[tokio::test]
async fn a_body_broken_on_the_way_in_is_a_bad_request_not_too_large() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let token = app.token("dee");
    // A chunked body whose chunk size is not hexadecimal: the body cannot be read at all.
    let request = format!(
        "POST /api/v1/sales/{sale}/orders HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\nZZ\r\n{{}}\r\n0\r\n\r\n"
    );
    let mut stream = tokio::net::TcpStream::connect(app.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer).await;
    let status_line = answer.lines().next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"error\":\"invalid_request\""), "{answer}");
}

#[tokio::test]
async fn a_gateway_started_alone_refuses_in_process_stores_and_says_why() {
    let mut config = test_config();
    config.redis.redis_url = "memory:".into();
    let error = gateway::build(&config).err().expect("memory: is refused");
    assert!(
        format!("{error:#}").contains("each sell the whole stock"),
        "{error:#}"
    );
    let mut config = test_config();
    config.kafka.kafka_brokers = "mock:".into();
    let error = gateway::build(&config).err().expect("mock: is refused");
    assert!(
        format!("{error:#}").contains("KAFKA_BROKERS=mock:"),
        "{error:#}"
    );
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address_never_on_the_public_port() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(1).await;
    assert_eq!(app.purchase(&sale, &app.token("meg")).await.status(), 202);
    let public = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_error(public, 404, "not_found").await;
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("seckill_purchases_total"),
        "the operator's address serves the series: {metrics}"
    );
}
