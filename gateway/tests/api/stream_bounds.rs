//! The bounds on open streams: order streams and dashboards each have their own, so a crowd
//! of one kind cannot take the other's places; past a gateway's bound the answer is 503
//! `unavailable`, past one client's share (a user's order streams, an address's dashboards)
//! 429 `rate_limited`, each saying which setting bounds it.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroUsize;

use gateway::Config;

use crate::helpers::{TestApp, assert_error, spawn_app_with, test_config};
use crate::sse::{EventStream, WAIT};

fn bound(most: usize) -> NonZeroUsize {
    most.try_into().expect("a bound > 0")
}

/// A buyer's order and their token.
async fn buyer(app: &TestApp, sale_id: &str, user_id: &str) -> (String, String) {
    let token = app.token(user_id);
    (app.buy(sale_id, &token).await, token)
}

async fn order_stream(app: &TestApp, (order_id, token): &(String, String)) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .bearer_auth(token)
        .send()
        .await
        .expect("order stream request")
}

async fn dashboard(http: &reqwest::Client, app: &TestApp, sale_id: &str) -> reqwest::Response {
    http.get(app.url(&format!("/api/v1/sales/{sale_id}/live")))
        .send()
        .await
        .expect("live request")
}

/// The refusal's message names the setting that bounds it.
async fn assert_refused(response: reqwest::Response, status: u16, code: &str, setting: &str) {
    let body = assert_error(response, status, code).await;
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains(setting), "{message}");
}

async fn spawn(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    spawn_app_with(config).await
}

#[tokio::test]
async fn order_streams_past_their_bound_are_refused_503_until_one_closes_and_dashboards_still_open()
{
    let app = spawn(|config| config.max_order_streams = bound(1)).await;
    let sale = app.create_open_sale(5).await;
    let (ann, ben) = (
        buyer(&app, &sale, "ann").await,
        buyer(&app, &sale, "ben").await,
    );

    let mut held = EventStream::of(order_stream(&app, &ann).await);
    held.next().await.expect("the order's status");
    let refused = order_stream(&app, &ben).await;
    assert_refused(refused, 503, "unavailable", "MAX_ORDER_STREAMS").await;
    EventStream::of(dashboard(&app.http, &app, &sale).await);

    drop(held);
    shared::testing::eventually("the closed stream's place", WAIT, async || {
        (order_stream(&app, &ben).await.status() == 200).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_user_past_their_share_of_order_streams_is_refused_429_and_another_user_is_not() {
    let app = spawn(|config| config.max_order_streams_per_user = bound(1)).await;
    let sale = app.create_open_sale(5).await;
    let (ann, ben) = (
        buyer(&app, &sale, "ann").await,
        buyer(&app, &sale, "ben").await,
    );

    let _held = EventStream::of(order_stream(&app, &ann).await);
    let second_tab = order_stream(&app, &ann).await;
    assert_refused(
        second_tab,
        429,
        "rate_limited",
        "MAX_ORDER_STREAMS_PER_USER",
    )
    .await;
    EventStream::of(order_stream(&app, &ben).await);
}

#[tokio::test]
async fn dashboards_past_their_bound_are_refused_503_and_order_streams_still_open() {
    let app = spawn(|config| config.max_dashboard_streams = bound(1)).await;
    let sale = app.create_open_sale(5).await;
    let ann = buyer(&app, &sale, "ann").await;

    let _held = EventStream::of(dashboard(&app.http, &app, &sale).await);
    let refused = dashboard(&app.http, &app, &sale).await;
    assert_refused(refused, 503, "unavailable", "MAX_DASHBOARD_STREAMS").await;
    EventStream::of(order_stream(&app, &ann).await);
}

#[tokio::test]
async fn an_address_past_its_share_of_dashboards_is_refused_429_and_another_address_is_not() {
    let app = spawn(|config| config.max_dashboard_streams_per_ip = bound(1)).await;
    let sale = app.create_open_sale(5).await;

    let _held = EventStream::of(dashboard(&app.http, &app, &sale).await);
    let refused = dashboard(&app.http, &app, &sale).await;
    assert_refused(refused, 429, "rate_limited", "MAX_DASHBOARD_STREAMS_PER_IP").await;
    // Every address of 127.0.0.0/8 is this machine: another client, as the gateway sees it.
    let elsewhere = reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)))
        .build()
        .expect("a client on 127.0.0.2");
    EventStream::of(dashboard(&elsewhere, &app, &sale).await);
}
