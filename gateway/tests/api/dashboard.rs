//! The dashboard's stream, `GET /api/v1/sales/{id}/live`: what a snapshot shows, and what it
//! costs. A snapshot is made once per sale and second at a gateway and fanned out to every
//! viewer, so viewers cost Redis nothing: the test counts every command the gateway sends to
//! Redis through a proxy in front of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with, test_config};
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
    let redis = CountingProxy::start().await;
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
    let one_viewer = redis.commands_over(&mut first, SNAPSHOTS_MEASURED).await;

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
    let thousand_viewers = redis.commands_over(&mut first, SNAPSHOTS_MEASURED).await;

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

/// A TCP proxy in front of the services' Redis that counts the commands sent through it.
struct CountingProxy {
    address: std::net::SocketAddr,
    commands: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start() -> Self {
        let upstream = std::env::var("REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("local addr");
        let commands = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&commands);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream)
                    .await
                    .expect("Redis is reachable");
                let (mut client_reads, mut client_writes) = client.into_split();
                let (mut server_reads, mut server_writes) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_reads, &mut client_writes).await;
                });
                let counted = Arc::clone(&counted);
                tokio::spawn(async move {
                    let (mut chunk, mut pending) = (vec![0; 64 * 1024], Vec::new());
                    while let Ok(read) = client_reads.read(&mut chunk).await {
                        if read == 0 {
                            break;
                        }
                        pending.extend_from_slice(&chunk[..read]);
                        counted.fetch_add(take_commands(&mut pending), Ordering::SeqCst);
                        if server_writes.write_all(&chunk[..read]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        Self { address, commands }
    }

    fn url(&self) -> String {
        format!("redis://{}", self.address)
    }

    /// The commands sent while `viewer` receives `snapshots` more snapshots. Each reading is
    /// taken just after a snapshot arrived, when the reads that made it are all sent and the
    /// next ones about a second away.
    async fn commands_over(&self, viewer: &mut EventStream, snapshots: u64) -> u64 {
        let before = self.commands.load(Ordering::SeqCst);
        for _ in 0..snapshots {
            viewer.next().await.expect("another snapshot");
        }
        self.commands.load(Ordering::SeqCst) - before
    }
}

/// Removes the whole commands at the head of `pending` (RESP arrays of bulk strings, the only
/// form a client library sends) and returns how many there were.
fn take_commands(pending: &mut Vec<u8>) -> u64 {
    let mut commands = 0;
    while let Some(length) = command_length(pending) {
        pending.drain(..length);
        commands += 1;
    }
    commands
}

/// The length of the command at the head of `bytes`, once all of it has arrived.
fn command_length(bytes: &[u8]) -> Option<usize> {
    let (arguments, mut at) = header(bytes, b'*')?;
    for _ in 0..arguments {
        let (length, body) = header(&bytes[at..], b'$')?;
        at += body + length + 2;
        if bytes.len() < at {
            return None;
        }
    }
    Some(at)
}

/// A `<kind><number>\r\n` line at the head of `bytes`: the number and the line's length.
fn header(bytes: &[u8], kind: u8) -> Option<(usize, usize)> {
    let end = bytes.windows(2).position(|pair| pair == b"\r\n")?;
    assert_eq!(bytes[0], kind, "a RESP command");
    let number = std::str::from_utf8(&bytes[1..end]).ok()?.parse().ok()?;
    Some((number, end + 2))
}

#[test]
fn commands_are_counted_once_they_have_fully_arrived() {
    let ping_and_get = b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
    let mut pending = ping_and_get[..20].to_vec();
    assert_eq!(take_commands(&mut pending), 1, "PING whole, GET cut short");
    pending.extend_from_slice(&ping_and_get[20..]);
    assert_eq!(take_commands(&mut pending), 1);
    assert!(pending.is_empty());
}
