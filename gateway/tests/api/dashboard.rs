//! The dashboard's stream, `GET /api/v1/sales/{id}/live`: what a snapshot shows, and what it
//! costs. A snapshot is made once per sale and second at a gateway and fanned out to every
//! viewer, so viewers cost Redis nothing: the test counts every command the gateway sends to
//! Redis through a proxy in front of it.

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with, test_config};
use crate::redis_proxy::RedisProxy;
use crate::sse::EventStream;

async fn watch(app: &TestApp, sale_id: &str) -> reqwest::Response {
    app.http
        .get(app.url(&format!("/api/v1/sales/{sale_id}/live")))
        .send()
        .await
        .expect("live request")
}

#[tokio::test]
async fn the_live_view_pushes_the_sales_stock_and_this_gateways_purchases() {
    let app = spawn_app().await;
    let sale = app.create_open_sale(1).await;
    let mut live = EventStream::of(watch(&app, &sale).await);
    let first = live.next().await.expect("a first snapshot");
    assert_eq!(first.event, "snapshot");
    assert_eq!(first.data["sale"]["remaining"], 1);
    assert!(
        first.data["orders"].get("timeline").is_none(),
        "the counts without the timeline: {}",
        first.data
    );

    app.buy(&sale, &app.token("fay")).await;
    assert_eq!(app.purchase(&sale, &app.token("gus")).await.status(), 410);
    let snapshot = loop {
        let snapshot = live.next().await.expect("another snapshot").data;
        if snapshot["purchases"]["sold_out"] == 1 {
            break snapshot;
        }
    };
    assert_eq!(snapshot["sale"]["remaining"], 0);
    assert_eq!(snapshot["sale"]["state"], "sold_out");
    assert_eq!(snapshot["purchases"]["accepted"], 1);
    assert!(snapshot["consumers"].is_array(), "{snapshot}");

    assert_error(watch(&app, "no-such-sale").await, 404, "unknown_sale").await;
}

/// Snapshots a viewer receives between two readings of the Redis commands.
const SNAPSHOTS_MEASURED: u64 = 5;

#[tokio::test]
async fn a_thousand_viewers_of_a_sale_cost_redis_what_one_viewer_costs() {
    const VIEWERS: usize = 1_000;
    let redis = RedisProxy::start().await;
    let mut config = test_config();
    config.redis.redis_url = redis.url();
    // Nothing else of the gateway's talks to Redis while the test counts; and no consumer
    // group to ask the broker about, so a snapshot is sent as soon as its reads are answered.
    config.blacklist_sync_ms = std::num::NonZeroU64::new(3_600_000).expect("an hour > 0");
    config.readiness_check_ms = std::num::NonZeroU64::new(3_600_000).expect("an hour > 0");
    config.dashboard_groups.clear();
    config.max_dashboard_streams = VIEWERS.try_into().expect("> 0");
    config.max_dashboard_streams_per_ip = VIEWERS.try_into().expect("> 0");
    let app = spawn_app_with(config).await;
    let sale = app.create_open_sale(5).await;

    let mut first = EventStream::of(watch(&app, &sale).await);
    first.next().await.expect("a first snapshot");
    let one_viewer = commands_over(&redis, &mut first, SNAPSHOTS_MEASURED).await;

    let others = futures::future::join_all((1..VIEWERS).map(|_| async {
        let mut viewer = EventStream::of(watch(&app, &sale).await);
        viewer.next().await.expect("a viewer's first snapshot");
        viewer
    }))
    .await;
    first
        .next()
        .await
        .expect("a snapshot with every viewer watching");
    let thousand_viewers = commands_over(&redis, &mut first, SNAPSHOTS_MEASURED).await;

    assert!(one_viewer > 0, "the proxy sees the snapshots' reads");
    // A window's edge may fall among one snapshot's reads (they are a few commands, answered
    // one after the other); a thousand viewers reading for themselves would cost thousands.
    let one_snapshots_reads = one_viewer.div_ceil(SNAPSHOTS_MEASURED);
    assert!(
        thousand_viewers.abs_diff(one_viewer) <= one_snapshots_reads,
        "Redis commands over {SNAPSHOTS_MEASURED} snapshots: {thousand_viewers} with {VIEWERS} \
         viewers, {one_viewer} with one"
    );
    drop(others);
}

/// The commands sent through `proxy` while `viewer` receives `snapshots` more snapshots. Each
/// reading is taken just after a snapshot arrived, when the reads that made it are all sent
/// and the next ones about a second away.
async fn commands_over(proxy: &RedisProxy, viewer: &mut EventStream, snapshots: u64) -> u64 {
    let before = proxy.commands();
    for _ in 0..snapshots {
        viewer.next().await.expect("another snapshot");
    }
    proxy.commands() - before
}
