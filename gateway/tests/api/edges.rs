//! The edges of input: tokens whose claims break one rule each, path segments that are not
//! even text, bodies that break on the way in, and backends a lone gateway must not use. Each
//! answers as the API table says, with the JSON error body, and writes nothing.

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    ADMIN_TOKEN, JWT_SECRET, assert_error, claims, spawn_app, spawn_app_with, test_config,
};

fn signed(claims: &Value) -> String {
    let key = EncodingKey::from_secret(JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&Header::default(), claims, &key).expect("signing")
}

#[tokio::test]
async fn a_token_must_name_its_issuer_audience_and_issue_time_and_live_briefly() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(10).await;
    let now = jsonwebtoken::get_current_timestamp();
    let lifetime = app.config.jwt_max_lifetime_secs.get();
    let without = |claim: &str| {
        let mut claims = claims("ann", now, now + 600);
        claims.as_object_mut().unwrap().remove(claim);
        claims
    };
    let with = |claim: &str, value: Value| {
        let mut claims = claims("ann", now, now + 600);
        claims[claim] = value;
        claims
    };
    let refused = [
        (
            with("iss", json!("elsewhere")),
            "issuer (iss) is not the one",
        ),
        (without("iss"), "names no issuer (iss)"),
        (
            with("aud", json!("another-api")),
            "for another audience (aud)",
        ),
        (without("aud"), "names no audience (aud)"),
        (
            with("aud", json!("seckill-demo")),
            "does not run in demo mode",
        ),
        (without("iat"), "has no issue time (iat)"),
        (
            with("iat", json!(now + 300)),
            "issue time (iat) is in the future",
        ),
        (
            claims("ann", now, now + lifetime + 1),
            "lives longer (exp - iat)",
        ),
        (with("nbf", json!(now + 300)), "not valid yet"),
    ];
    for (claims, message) in refused {
        let response = app.purchase(&sale, &signed(&claims)).await;
        let body = assert_error(response, 401, "unauthenticated").await;
        assert!(
            body["message"].as_str().unwrap().contains(message),
            "{claims}: {body}"
        );
    }
    let several_audiences = with("aud", json!(["another-api", "seckill"]));
    assert_eq!(
        app.purchase(&sale, &signed(&several_audiences))
            .await
            .status(),
        202
    );
}

#[tokio::test]
async fn a_demo_token_buys_on_a_demo_gateway_and_not_on_one_sharing_its_secret() {
    let mut demo_config = test_config();
    demo_config.demo = true;
    let demo = spawn_app_with(demo_config).await;
    let deployment = spawn_app().await;
    let signed_in = demo
        .http
        .post(demo.url("/api/v1/demo/sign-in"))
        .json(&json!({"user_id": "dora"}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 200);
    let token = signed_in.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();

    let demo_sale = demo.create_open_sale(10).await;
    assert_eq!(demo.purchase(&demo_sale, &token).await.status(), 202);
    let sale = deployment.create_open_sale(10).await;
    let body = assert_error(
        deployment.purchase(&sale, &token).await,
        401,
        "unauthenticated",
    )
    .await;
    assert_eq!(
        body["message"],
        "the token is a demo token, and this gateway does not run in demo mode"
    );
    let sign_in = deployment
        .http
        .post(deployment.url("/api/v1/demo/sign-in"))
        .json(&json!({"user_id": "dora"}))
        .send()
        .await
        .unwrap();
    assert_error(sign_in, 404, "not_found").await;
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
