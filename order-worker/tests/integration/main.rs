//! The order worker against real PostgreSQL, Redis and Kafka-protocol broker.

use std::num::NonZeroU64;
use std::time::Duration;

use order_worker::Config;
use order_worker::handler::OrderHandler;
use order_worker::store::DatabaseSettings;
use shared::consumer::{DLQ_REASON_HEADER, Delivery, Handler, HandlerError};
use shared::event::{ReservationEvent, TransitionEvent};
use shared::ids::OrderId;
use shared::stock::{OrderStatus, OutboxSizes};
use shared::testing::{RunningService, TestEnv, eventually, header, reservation, spawn_service};
use sqlx::PgPool;

const WAIT: Duration = Duration::from_secs(30);

/// Two connections (plenty for a test, and parallel tests stay under PostgreSQL's limit).
fn small() -> DatabaseSettings {
    DatabaseSettings::default()
}

fn config(env: &TestEnv) -> Config {
    let mut config: Config = shared::config::defaults();
    config.database_url.clone_from(&env.database_url);
    config.worker.consumer_group = Some(env.group("orders"));
    config.reconcile_interval_ms = NonZeroU64::new(100).expect("100 > 0");
    // Long enough for a first publish to be acknowledged (a new producer's first send includes
    // its metadata and producer-id round trips), short enough for a quick test.
    config.reconcile_min_age_ms = 2000;
    config
}

async fn start(env: &TestEnv, config: Config) -> RunningService {
    env.create_topics().await;
    let orders =
        order_worker::store::open(&config.database_url, small()).expect("DATABASE_URL parses");
    let worker = order_worker::build_on(
        &config,
        &env.backends(),
        &env.bus(),
        orders,
        env.payment_provider(),
    )
    .expect("the test configuration builds");
    spawn_service(|http, shutdown| order_worker::serve(worker, http, shutdown)).await
}

/// A migrated PostgreSQL, and a pool to look at it directly.
async fn pool(env: &TestEnv) -> PgPool {
    let store = order_worker::store::open(&env.database_url, small()).expect("DATABASE_URL parses");
    store
        .migrate()
        .await
        .expect("PostgreSQL is reachable (run scripts/services up)");
    PgPool::connect(&env.database_url).await.expect("connects")
}

/// Inserts `event`'s order row (`created`) in `transaction`, as another worker would.
async fn insert_row(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    event: &ReservationEvent,
) {
    sqlx::query(
        "INSERT INTO orders (order_id, event_id, sale_id, user_id, price_cents, quantity, reserved_at)
         VALUES ($1, $2, $3, $4, 1, 1, now())",
    )
    .bind(event.order_id.as_str())
    .bind(event.event_id)
    .bind(event.sale_id.as_str())
    .bind(event.user_id.as_str())
    .execute(&mut **transaction)
    .await
    .expect("the row is inserted");
}

async fn status_of(pool: &PgPool, event: &ReservationEvent) -> String {
    sqlx::query_scalar("SELECT status FROM orders WHERE order_id = $1")
        .bind(event.order_id.as_str())
        .fetch_one(pool)
        .await
        .expect("the row exists")
}

async fn rows_for_order(pool: &PgPool, event: &ReservationEvent) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM orders WHERE order_id = $1")
        .bind(event.order_id.as_str())
        .fetch_one(pool)
        .await
        .expect("count query")
}

async fn wait_until_created(env: &TestEnv, event: &ReservationEvent) {
    let ledger = env.ledger();
    eventually("the order to be created", WAIT, async || {
        let status = ledger
            .order_status(&event.order_id, &event.user_id)
            .await
            .ok()??;
        (status == OrderStatus::Created).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_redelivered_event_yields_exactly_one_order() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale(10).await;
    let (first, payload) = env.reserve(&sale, "alice").await;
    let (second, second_payload) = env.reserve(&sale, "bob").await;
    // Same key, so one partition and this order: the duplicate is handled before `second`.
    env.publish_raw("k", payload.as_bytes()).await;
    env.publish_raw("k", payload.as_bytes()).await;
    env.publish_raw("k", second_payload.as_bytes()).await;

    wait_until_created(&env, &second).await;
    wait_until_created(&env, &first).await;
    assert_eq!(rows_for_order(&pool, &first).await, 1);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE sale_id = $1")
        .bind(sale.id.as_str())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    assert!(
        env.ledger().outbox(&sale.id).await.unwrap().is_empty(),
        "outbox cleared"
    );
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_group_moves_on() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale(10).await;
    let (event, payload) = env.reserve(&sale, "carol").await;
    env.publish_raw("k", b"{this is not an event").await;
    env.publish_raw("k", payload.as_bytes()).await;

    wait_until_created(&env, &event).await;
    assert_eq!(rows_for_order(&pool, &event).await, 1);
    let dead = env.read_topic(&env.kafka.kafka_dlq_topic, 1, 1, WAIT).await;
    assert_eq!(dead.len(), 1, "one message in the dead-letter topic");
    assert_eq!(
        rdkafka::Message::payload(&dead[0]),
        Some(&b"{this is not an event"[..])
    );
    let reason = header(&dead[0], DLQ_REASON_HEADER).expect("a reason header");
    assert!(reason.contains("not a valid event"), "{reason}");
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn the_reconciler_republishes_a_lock_whose_publish_was_lost() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale(10).await;
    // The gateway died between the lock and the publish: the outbox entry is all there is.
    let (event, _) = env.reserve(&sale, "dave").await;

    wait_until_created(&env, &event).await;
    assert_eq!(rows_for_order(&pool, &event).await, 1);
    let ledger = env.ledger();
    eventually("the re-publish to be acknowledged", WAIT, async || {
        let sizes = ledger.outbox_sizes(&sale.id).await.ok()?;
        (sizes == OutboxSizes::default()).then_some(())
    })
    .await;
    // Published once: the reconciler does not repeat an acknowledged entry.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let published = env.topic_message_count(
        &env.kafka.kafka_topic,
        env.kafka.kafka_topic_partitions.get().into(),
    );
    assert_eq!(published, 1);
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn with_postgres_unreachable_a_batch_is_retried_not_dropped() {
    let env = TestEnv::on_services();
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "erin").await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = order_worker::store::open(
        &format!("postgres://postgres@127.0.0.1:{closed_port}/x"),
        small(),
    )
    .unwrap();
    let handler = OrderHandler::new(store, env.ledger());
    let result = handler
        .handle(&[Delivery {
            event: event.clone(),
            traceparent: None,
        }])
        .await;
    assert!(
        matches!(result, Err(HandlerError::Unavailable(_))),
        "{result:?}"
    );
    let status = env
        .ledger()
        .order_status(&event.order_id, &event.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        status,
        OrderStatus::Processing,
        "nothing was marked created"
    );
}

#[tokio::test]
async fn a_second_order_for_the_same_buyer_is_refused_permanently_and_returns_nothing() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let sale = env.create_sale(10).await;
    let (original, _) = env.reserve(&sale, "frank").await;
    // A forged second order for the same buyer, which the stock script would never allow.
    let forged = reservation(
        shared::ids::OrderId::generate(&sale.id),
        &original.user_id,
        sale.price_cents,
    );
    let store = order_worker::store::open(&env.database_url, small()).unwrap();
    let handler = OrderHandler::new(store, env.ledger());
    let deliver = |event: &ReservationEvent| Delivery {
        event: event.clone(),
        traceparent: None,
    };
    handler
        .handle(&[deliver(&original)])
        .await
        .expect("the real order is stored");
    let result = handler.handle(&[deliver(&forged)]).await;
    match result {
        Err(HandlerError::Permanent { event_ids, .. }) => assert_eq!(event_ids, [forged.event_id]),
        other => panic!("expected a permanent failure, got {other:?}"),
    }
    assert_eq!(rows_for_order(&pool, &forged).await, 0);
    // The sale never locked a unit for it, so failing it gives nothing back and records no
    // status (only the owner may read one through the ledger; so look at the key itself).
    assert_eq!(env.ledger().remaining(&sale.id).await.unwrap(), Some(9));
    let mut redis = env.redis_connection().await;
    let status: Option<String> = redis::AsyncCommands::hget(
        &mut redis,
        &env.keys().sale(&sale.id).status,
        forged.order_id.as_str(),
    )
    .await
    .unwrap();
    assert_eq!(status, None);
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The race a fresh-clone e2e run lost 37 transitions to: a batch of transitions met a row that
/// another worker committed while the batch was being applied. Whatever the batch reports as
/// having a row must have had the transition applied, or its event is acknowledged and lost.
#[tokio::test]
async fn a_row_committed_while_transitions_are_applied_is_not_reported_done() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let sale = env.create_sale(10).await;
    let (stored, _) = env.reserve(&sale, "kim").await;
    let (arriving, _) = env.reserve(&sale, "lee").await;
    let mut setup = pool.begin().await.unwrap();
    insert_row(&mut setup, &stored).await;
    setup.commit().await.unwrap();

    // One session holds `stored`'s row, so applying the batch waits on it midway; another has
    // inserted `arriving`'s row and commits it while the batch waits.
    let mut holder = pool.begin().await.unwrap();
    sqlx::query("SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE")
        .bind(stored.order_id.as_str())
        .execute(&mut *holder)
        .await
        .unwrap();
    let holder_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&mut *holder)
        .await
        .unwrap();
    let mut inserter = pool.begin().await.unwrap();
    insert_row(&mut inserter, &arriving).await;

    let store = order_worker::store::open(&env.database_url, small()).unwrap();
    let paid = |event: &ReservationEvent| {
        TransitionEvent::new(
            &event.order_id,
            &event.user_id,
            1,
            OrderStatus::Paid,
            1_795_000_000_000,
        )
    };
    let batch = [paid(&stored), paid(&arriving)];
    let applying = tokio::spawn(async move { store.apply_transitions(&batch).await });
    eventually("the batch to wait on the held row", WAIT, async || {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))",
        )
        .bind(holder_pid)
        .fetch_one(&pool)
        .await
        .ok()?;
        (waiting > 0).then_some(())
    })
    .await;
    inserter.commit().await.unwrap();
    holder.rollback().await.unwrap();

    let present = applying.await.unwrap().expect("the batch is applied");
    assert_eq!(status_of(&pool, &stored).await, "paid");
    let arriving_status = status_of(&pool, &arriving).await;
    assert!(
        arriving_status == "paid" || !present.contains(&arriving.order_id),
        "the batch reported {} done though its row stayed {arriving_status}",
        arriving.order_id
    );
}

#[tokio::test]
async fn the_reconciler_republishes_while_the_database_is_down() {
    let env = TestEnv::on_services();
    let mut config = config(&env);
    config.database_url = format!("postgres://postgres@127.0.0.1:{}/x", closed_port());
    let worker = start(&env, config).await;
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "ivy").await;

    // No order row can be written, but the event reaches the topic for the other groups.
    let partitions = env.kafka.kafka_topic_partitions.get().into();
    let published = env
        .read_topic(&env.kafka.kafka_topic, partitions, 1, WAIT)
        .await;
    assert_eq!(published.len(), 1, "re-published with PostgreSQL down");
    let republished =
        ReservationEvent::from_json(rdkafka::Message::payload(&published[0]).unwrap());
    assert_eq!(republished.unwrap().order_id, event.order_id);
    worker
        .stop()
        .await
        .expect("a worker stopped before its database answered exits cleanly");
}

#[tokio::test]
async fn a_statement_stuck_behind_a_lock_gives_up_as_unavailable() {
    let env = TestEnv::on_services();
    let pool = pool(&env).await;
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "jay").await;
    // Another session inserts the same order and holds its transaction open: our insert of
    // that order waits on the row's lock.
    let mut blocker = pool.begin().await.unwrap();
    insert_row(&mut blocker, &event).await;

    let settings = DatabaseSettings {
        timeout: Duration::from_secs(1),
        ..small()
    };
    let store = order_worker::store::open(&env.database_url, settings).unwrap();
    let handler = OrderHandler::new(store, env.ledger());
    let delivery = Delivery {
        event: event.clone(),
        traceparent: None,
    };
    let result = tokio::time::timeout(Duration::from_secs(20), handler.handle(&[delivery]))
        .await
        .expect("the handler gives up instead of hanging");
    assert!(
        matches!(result, Err(HandlerError::Unavailable(_))),
        "{result:?}"
    );
    blocker.rollback().await.unwrap();
}

#[tokio::test]
async fn a_lock_stamped_by_a_gateway_clock_an_hour_ahead_is_republished_on_redis_time() {
    let env = TestEnv::on_services();
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale(10).await;
    let buyer = "kim".parse().unwrap();
    let mut event = reservation(OrderId::generate(&sale.id), &buyer, sale.price_cents);
    event.reserved_at += chrono::Duration::hours(1); // the gateway's clock runs ahead
    let payload = event.to_json();
    env.ledger().reserve(&event, &payload).await.unwrap();

    wait_until_created(&env, &event).await;
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn an_event_the_broker_acknowledged_and_then_lost_is_republished() {
    let env = TestEnv::on_services();
    let mut config = config(&env);
    config.reconcile_lost_after_ms = 1000;
    let worker = start(&env, config).await;
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "lou").await;
    // The broker acknowledged the event, then lost it: no consumer will ever see it.
    env.ledger()
        .mark_published(std::slice::from_ref(&event.order_id))
        .await
        .unwrap();

    wait_until_created(&env, &event).await;
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn one_broken_sale_does_not_stop_the_sweep_of_the_others() {
    let env = TestEnv::on_services();
    let mut redis = env.redis_connection().await;
    // Sales whose outbox sets are not even sorted sets: every sweep of them fails.
    for _ in 0..8 {
        let broken = env.create_sale(1).await;
        let key = env.keys().sale(&broken.id).unpublished;
        redis::AsyncCommands::set::<_, _, ()>(&mut redis, key, "not a sorted set")
            .await
            .unwrap();
    }
    let sale = env.create_sale(10).await;
    let (event, _) = env.reserve(&sale, "mia").await;
    let worker = start(&env, config(&env)).await;

    wait_until_created(&env, &event).await;
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn an_order_left_unpaid_is_expired_by_the_sweep_and_its_unit_returns() {
    let env = TestEnv::on_services();
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale_paid_within(1, 1).await;
    let (event, payload) = env.reserve(&sale, "una").await;
    env.publish_raw("k", payload.as_bytes()).await;

    // The row is stored whether the sweep came first or not; the status only moves forward.
    let ledger = env.ledger();
    eventually("the order row to be stored", WAIT, async || {
        let sizes = ledger.outbox_sizes(&sale.id).await.ok()?;
        (sizes == OutboxSizes::default()).then_some(())
    })
    .await;
    eventually("the unpaid order to expire", WAIT, async || {
        let status = ledger
            .order_status(&event.order_id, &event.user_id)
            .await
            .ok()??;
        (status == OrderStatus::Expired).then_some(())
    })
    .await;
    assert_eq!(
        ledger.remaining(&sale.id).await.unwrap(),
        Some(1),
        "the unit is back on sale"
    );
    assert!(
        ledger.active_sale_ids().await.unwrap().contains(&sale.id),
        "with stock again, the open sale is not settled"
    );
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_settled_sale_leaves_the_sweep_and_its_keys_expire() {
    let env = TestEnv::on_services();
    let worker = start(&env, config(&env)).await;
    let sale = env.create_sale(1).await;
    let (event, payload) = env.reserve(&sale, "ned").await;
    env.publish_raw("k", payload.as_bytes()).await;
    wait_until_created(&env, &event).await;

    let ledger = env.ledger();
    // Paid: nothing can put its unit back on sale any more.
    ledger.pay(&event.order_id, &event.user_id).await.unwrap();
    eventually("the sold-out sale to settle", WAIT, async || {
        let active = ledger.active_sale_ids().await.ok()?;
        (!active.contains(&sale.id)).then_some(())
    })
    .await;
    let mut redis = env.redis_connection().await;
    let keys = env.keys().sale(&sale.id);
    for key in [&keys.info, &keys.stock, &keys.buyers, &keys.status] {
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut redis)
            .await
            .unwrap();
        let retention_ms = 8 * 24 * 3600 * 1000;
        assert!(ttl_ms > 0 && ttl_ms <= retention_ms, "{key}: {ttl_ms} ms");
    }
    worker.stop().await.expect("graceful shutdown returns Ok");
}

#[tokio::test]
async fn a_transition_outbox_entry_that_is_no_event_is_discarded_so_its_sale_settles() {
    let env = TestEnv::on_services();
    let sale = env.create_sale(1).await;
    let keys = env.keys().sale(&sale.id);
    let mut redis = env.redis_connection().await;
    let broken = format!("{}.0:paid", sale.id);
    let _: () = redis::pipe()
        .hset(&keys.transitions, &broken, "{not an event")
        .zadd(&keys.transitions_due, &broken, 0)
        .query_async(&mut redis)
        .await
        .unwrap();
    let worker = start(&env, config(&env)).await;

    eventually("the broken entry removed", WAIT, async || {
        let left: u64 = redis::AsyncCommands::hlen(&mut redis, &keys.transitions)
            .await
            .unwrap();
        (left == 0).then_some(())
    })
    .await;
    let due: u64 = redis::AsyncCommands::zcard(&mut redis, &keys.transitions_due)
        .await
        .unwrap();
    assert_eq!(due, 0, "nothing left to claim either");
    assert!(
        env.ledger()
            .settle_sale(&sale.id, true, Duration::from_mins(1))
            .await
            .unwrap(),
        "nothing keeps the sale from settling"
    );
    worker.stop().await.expect("graceful shutdown returns Ok");
}
