//! The refusals that come before an operation's own work (a rate limit, the concurrency
//! limit, a body too large or not JSON) can be answered by every operation they guard, so each
//! such operation must list them in the document. The generated requests rarely meet them (the
//! tests run without rate limits and far below capacity); here each one is provoked on
//! purpose, on every operation of the document, the demo's sign-in included.

use std::num::NonZeroUsize;
use std::time::Duration;

use shared::testing::eventually;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::document::{self, Credential, Operation};
use crate::helpers::{ADMIN_TOKEN, TestApp, spawn_app_with, test_config};

#[tokio::test]
async fn every_operation_lists_the_rate_limits_answer() {
    let mut config = test_config();
    config.demo = true;
    config.rate_limit_global_per_sec = 1;
    let app = spawn_app_with(config).await;
    let operations = operations_with_demo(&app).await;
    for operation in &operations {
        // One request a second passes: of two in a row, the second is over the limit.
        let mut status = send(&app, operation, None).await;
        for _ in 0..2 {
            if status == 429 {
                break;
            }
            assert_listed(operation, status);
            status = send(&app, operation, None).await;
        }
        assert_eq!(status, 429, "{} {}", operation.method, operation.path);
        assert_listed(operation, status);
    }
}

#[tokio::test]
async fn every_operation_lists_the_answers_to_a_body_too_large_or_not_json() {
    let mut config = test_config();
    config.demo = true;
    let app = spawn_app_with(config).await;
    let too_large = vec![b' '; app.config.body_limit_bytes + 1];
    let mut answered = Vec::new();
    for operation in operations_with_demo(&app).await {
        if operation.body.is_none() {
            continue;
        }
        let status = send(&app, &operation, Some((&too_large, "application/json"))).await;
        assert_eq!(status, 413, "{} {}", operation.method, operation.path);
        assert_listed(&operation, status);
        let status = send(&app, &operation, Some((b"{}", "text/plain"))).await;
        assert_listed(&operation, status);
        answered.push(status);
    }
    // The admin calls and the sign-in read JSON only (the purchase takes any body it can read).
    assert!(answered.contains(&415), "{answered:?}");
}

#[tokio::test]
async fn every_operation_lists_the_answer_of_a_gateway_at_capacity() {
    let mut config = test_config();
    config.demo = true;
    config.concurrency_limit = NonZeroUsize::new(1).expect("1 > 0");
    let app = spawn_app_with(config).await;
    let operations = operations_with_demo(&app).await;
    let _held = hold_the_only_slot(&app).await;
    for operation in &operations {
        let status = send(&app, operation, None).await;
        assert_listed(operation, status);
        // The streams have a bound of their own, outside the API's concurrency limit.
        if !operation.is_stream {
            assert_eq!(status, 503, "{} {}", operation.method, operation.path);
        }
    }
}

/// The document's operations; the demo's sign-in must be among them.
async fn operations_with_demo(app: &TestApp) -> Vec<Operation> {
    let operations = document::operations(&document::fetch(app).await);
    assert!(
        operations
            .iter()
            .any(|operation| operation.path == "/api/v1/demo/sign-in"),
        "the demo's sign-in is described when it is on"
    );
    operations
}

/// A request to `operation` with valid ids in its path, the credential it asks for, and
/// `body` (bytes and media type) if any; returns the status.
async fn send(app: &TestApp, operation: &Operation, body: Option<(&[u8], &str)>) -> u16 {
    let segments: Vec<String> = operation
        .parameters
        .iter()
        .map(|(name, _)| match name.as_str() {
            "sale_id" => "s1".to_owned(),
            "order_id" => "s1.0123456789abcdef0123456789abcdef".to_owned(),
            _ => "u1".to_owned(),
        })
        .collect();
    let url = app.url(&operation.path_with(&segments));
    let mut request = app.http.request(operation.method.clone(), url);
    request = match operation.credential {
        Some(Credential::Admin) => request.bearer_auth(ADMIN_TOKEN),
        Some(Credential::User) => request.bearer_auth(app.token("u1")),
        None => request,
    };
    if let Some((bytes, content_type)) = body {
        request = request
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes.to_vec());
    }
    let response = request.send().await.expect("an answer");
    response.status().as_u16()
}

fn assert_listed(operation: &Operation, status: u16) {
    assert!(
        operation.documented.contains(&status),
        "{} {} answered {status}, which the document does not list ({:?})",
        operation.method,
        operation.path,
        operation.documented
    );
}

/// Takes the gateway's one concurrency slot with a request whose body never comes, and waits
/// until another request is shed; the slot is held as long as the connection is.
async fn hold_the_only_slot(app: &TestApp) -> TcpStream {
    let mut held = TcpStream::connect(app.address).await.expect("connect");
    let request_head = format!(
        "POST /api/v1/admin/tokens HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/json\r\nContent-Length: 64\r\n\r\n",
        app.address
    );
    held.write_all(request_head.as_bytes()).await.expect("send");
    eventually(
        "another request to be shed",
        Duration::from_secs(5),
        async || {
            let response = app.http.get(app.url("/api/v1/sales")).send().await.ok()?;
            (response.status() == 503).then_some(())
        },
    )
    .await;
    held
}
