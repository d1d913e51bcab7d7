//! The event bus: consumer-group fan-out, a group splitting the partitions, redelivery of what
//! was not committed, dead letters. Both backends speak the Kafka protocol, so these cases
//! drive the workers' own consumer loop (`shared::consumer`) against each.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::num::{NonZeroU32, NonZeroUsize};

use shared::consumer::{
    ConsumerLoop, DLQ_REASON_HEADER, Delivery, Handler, HandlerError, LoopSettings, RetryPolicy,
};
use shared::event::ReservationEvent;
use shared::ids::OrderId;
use shared::testing::{TestEnv, eventually, header, reservation};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

shared::conformance!(
    every_group_receives_every_event,
    a_group_divides_the_partitions_among_its_members,
    a_failed_batch_is_retried_and_only_committed_events_are_not_redelivered,
    an_undecodable_message_is_dead_lettered_and_the_group_moves_on,
);

const WAIT: Duration = Duration::from_mins(1);

/// Cases only the real broker can answer (the embedded cluster has no topic configuration).
mod real_broker {
    use std::collections::HashSet;
    use std::time::Duration;

    use metrics_exporter_prometheus::PrometheusHandle;
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{Offset, TopicPartitionList};
    use shared::consumer::PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL;
    use shared::ids::OrderId;
    use shared::testing::{TestEnv, eventually, reservation};
    use uuid::Uuid;

    use super::{Member, Recorder, WAIT};

    /// The `retention.ms` and `segment.ms` the broker reports for `topic`.
    async fn topic_retention(
        admin: &AdminClient<DefaultClientContext>,
        topic: &str,
    ) -> (String, String) {
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let described = admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &options)
            .await
            .expect("the broker answers DescribeConfigs");
        let resource = described[0].as_ref().expect("the topic's configuration");
        let value = |name: &str| {
            let entry = resource.get(name).expect("an entry");
            entry.value.clone().expect(name)
        };
        (value("retention.ms"), value("segment.ms"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn created_topics_carry_the_configured_retention_in_segments_of_half_of_it_and_dead_letters_keep_four_times_it()
     {
        let env = TestEnv::on_services();
        env.create_topics().await;
        let admin: AdminClient<DefaultClientContext> =
            env.bus().client_config().create().expect("an admin client");
        let three_days_ms = 72 * 3600 * 1000;
        let retention = |ms: u64| (ms.to_string(), (ms / 2).to_string());
        for topic in [&env.kafka.kafka_topic, &env.kafka.kafka_order_events_topic] {
            assert_eq!(
                topic_retention(&admin, topic).await,
                retention(three_days_ms),
                "{topic}"
            );
        }
        assert_eq!(
            topic_retention(&admin, &env.kafka.kafka_dlq_topic).await,
            retention(4 * three_days_ms)
        );
    }

    /// Publishes one event to `partition` of the test's reservation topic; returns its id.
    async fn publish_to(env: &TestEnv, partition: i32) -> Uuid {
        let producer: FutureProducer = env.bus().producer_config().create().unwrap();
        let event = reservation(
            OrderId::generate(&"bus-sale".parse().unwrap()),
            &"k".parse().unwrap(),
            100,
        );
        let payload = event.to_json();
        producer
            .send(
                FutureRecord::to(&env.kafka.kafka_topic)
                    .partition(partition)
                    .key("k")
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();
        event.event_id
    }

    /// The group's count of partitions started without an offset on trimmed history.
    fn started_without_offset(prometheus: &PrometheusHandle, group: &str) -> Option<u64> {
        let series = format!("{PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL}{{group=\"{group}\"}} ");
        prometheus
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(&series)?.parse().ok())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_group_without_offsets_on_trimmed_history_replays_what_is_kept_and_counts_each_trimmed_partition()
     {
        let prometheus = shared::telemetry::install_metrics();
        let env = TestEnv::on_services();
        env.create_topics().await;
        let mut published = Vec::new();
        for partition in [0, 0, 0, 1] {
            published.push(publish_to(&env, partition).await);
        }
        // Partition 0 loses its first two events, as the topic's retention would delete them;
        // partition 1 keeps its history whole.
        let admin: AdminClient<DefaultClientContext> = env.bus().client_config().create().unwrap();
        let mut trim = TopicPartitionList::new();
        trim.add_partition_offset(&env.kafka.kafka_topic, 0, Offset::Offset(2))
            .unwrap();
        admin
            .delete_records(&trim, &AdminOptions::new())
            .await
            .expect("the broker deletes records");

        let recorder = Recorder::default();
        let member = Member::join(&env, "trimmed", &recorder);
        let kept: HashSet<Uuid> = published[2..].iter().copied().collect();
        eventually("the events the topic still keeps", WAIT, async || {
            (recorder.distinct() == kept).then_some(())
        })
        .await;
        let group = format!("{}-trimmed", env.kafka.kafka_topic);
        assert_eq!(
            started_without_offset(&prometheus, &group),
            Some(1),
            "partition 0 started without an offset on trimmed history; partition 1 from its beginning"
        );
        member.stop().await;

        // The same group again resumes from its committed offsets: nothing more to count.
        let member = Member::join(&env, "trimmed", &recorder);
        let later = publish_to(&env, 0).await;
        eventually("the event published after the restart", WAIT, async || {
            recorder.distinct().contains(&later).then_some(())
        })
        .await;
        assert_eq!(started_without_offset(&prometheus, &group), Some(1));
        member.stop().await;
    }
}

/// Records every event it is handed and every event it handled; fails the first attempt of
/// a batch holding an event of `fail_once`.
#[derive(Clone, Default)]
struct Recorder {
    attempted: Arc<Mutex<Vec<Uuid>>>,
    handled: Arc<Mutex<Vec<Uuid>>>,
    fail_once: Arc<Mutex<HashSet<Uuid>>>,
}

impl Recorder {
    fn handled(&self) -> Vec<Uuid> {
        self.handled.lock().unwrap().clone()
    }

    fn distinct(&self) -> HashSet<Uuid> {
        self.handled().into_iter().collect()
    }
}

impl Handler for Recorder {
    type Event = ReservationEvent;

    async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
        let ids = batch.iter().map(|d| d.event.event_id);
        self.attempted.lock().unwrap().extend(ids.clone());
        let mut fail_once = self.fail_once.lock().unwrap();
        if batch.iter().any(|d| fail_once.remove(&d.event.event_id)) {
            return Err(HandlerError::Retryable("failing once, as asked".into()));
        }
        self.handled.lock().unwrap().extend(ids);
        Ok(())
    }
}

/// A running consumer loop of `group`, stopped (with its final commit) by [`Member::stop`].
struct Member {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Member {
    fn join(env: &TestEnv, group: &str, recorder: &Recorder) -> Self {
        let settings = LoopSettings {
            group: format!("{}-{group}", env.kafka.kafka_topic),
            batch_size: NonZeroUsize::new(10).unwrap(),
            batch_wait: Duration::from_millis(10),
            retry: RetryPolicy {
                max_attempts: NonZeroU32::new(5),
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            },
        };
        let consumer =
            ConsumerLoop::new(&env.bus(), settings, recorder.clone()).expect("a consumer");
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            consumer
                .run(stop)
                .await
                .expect("the loop ends without error");
        });
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.expect("the loop did not panic");
    }
}

/// Publishes `count` events with distinct keys (so they spread over the partitions).
async fn publish(env: &TestEnv, count: usize) -> HashSet<Uuid> {
    let mut ids = HashSet::new();
    for _ in 0..count {
        let user = format!("user-{}", Uuid::new_v4().simple());
        let event = reservation(
            OrderId::generate(&"bus-sale".parse().unwrap()),
            &user.parse().unwrap(),
            100,
        );
        env.publish_raw(&user, event.to_json().as_bytes()).await;
        ids.insert(event.event_id);
    }
    ids
}

async fn every_group_receives_every_event(env: TestEnv) {
    env.create_topics().await;
    let published = publish(&env, 12).await;
    let (orders, stats) = (Recorder::default(), Recorder::default());
    let members = [
        Member::join(&env, "orders", &orders),
        Member::join(&env, "stats", &stats),
    ];
    for recorder in [&orders, &stats] {
        eventually("every event in each group", WAIT, async || {
            (recorder.distinct() == published).then_some(())
        })
        .await;
    }
    for member in members {
        member.stop().await;
    }
}

async fn a_group_divides_the_partitions_among_its_members(env: TestEnv) {
    env.create_topics().await;
    let (first, second) = (Recorder::default(), Recorder::default());
    let members = [
        Member::join(&env, "split", &first),
        Member::join(&env, "split", &second),
    ];
    // Publish in rounds until both members have had a share: whoever joins first may own
    // every partition until the other's join rebalances the group.
    let mut published = HashSet::new();
    eventually("both members to receive events", WAIT, async || {
        published.extend(publish(&env, 4).await);
        (!first.handled().is_empty() && !second.handled().is_empty()).then_some(())
    })
    .await;
    eventually("every event handled by the group", WAIT, async || {
        let handled: HashSet<Uuid> = first
            .distinct()
            .union(&second.distinct())
            .copied()
            .collect();
        (handled == published).then_some(())
    })
    .await;
    for member in members {
        member.stop().await;
    }
}

async fn a_failed_batch_is_retried_and_only_committed_events_are_not_redelivered(env: TestEnv) {
    env.create_topics().await;
    let published = publish(&env, 6).await;
    let recorder = Recorder::default();
    let flaky = *published.iter().next().unwrap();
    recorder.fail_once.lock().unwrap().insert(flaky);
    let member = Member::join(&env, "retry", &recorder);
    eventually("every event handled", WAIT, async || {
        (recorder.distinct() == published).then_some(())
    })
    .await;
    let attempts = recorder
        .attempted
        .lock()
        .unwrap()
        .iter()
        .filter(|id| **id == flaky)
        .count();
    assert!(
        attempts >= 2,
        "the failed event was retried ({attempts} attempts)"
    );
    member.stop().await;

    // A new member of the same group resumes after the committed offsets.
    let successor = Recorder::default();
    let member = Member::join(&env, "retry", &successor);
    let later = publish(&env, 2).await;
    eventually("the new events", WAIT, async || {
        later.is_subset(&successor.distinct()).then_some(())
    })
    .await;
    assert!(
        successor.distinct().is_disjoint(&published),
        "committed events are not delivered again"
    );
    member.stop().await;
}

async fn an_undecodable_message_is_dead_lettered_and_the_group_moves_on(env: TestEnv) {
    env.create_topics().await;
    env.publish_raw("k", b"{not an event").await;
    let event = reservation(
        OrderId::generate(&"bus-sale".parse().unwrap()),
        &"k".parse().unwrap(),
        100,
    );
    env.publish_raw("k", event.to_json().as_bytes()).await;
    let recorder = Recorder::default();
    let member = Member::join(&env, "dlq", &recorder);
    eventually("the good event after the poison one", WAIT, async || {
        recorder.distinct().contains(&event.event_id).then_some(())
    })
    .await;
    member.stop().await;
    let dead = env.read_topic(&env.kafka.kafka_dlq_topic, 1, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(
        rdkafka::Message::payload(&dead[0]),
        Some(&b"{not an event"[..])
    );
    assert!(header(&dead[0], DLQ_REASON_HEADER).is_some());
}
