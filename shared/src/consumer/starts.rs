//! Where a newly assigned partition starts, and the loud warning when a group starts without
//! its offset on a topic whose history was trimmed.
//!
//! A group without a committed offset starts at the oldest event the partition still holds
//! (`auto.offset.reset=earliest`: a worker's first start must see what was published before
//! it). That is right for a new group, and it is also what happens, without a word from
//! librdkafka, when a group's committed offsets expired (Kafka forgets the offsets of a group
//! that stayed empty for `offsets.retention.minutes`, 7 days by default): the group replays
//! everything the topic still keeps. The replay is absorbed by the dedupe records, which
//! outlive the topic's events (`KafkaArgs::require_outlives_topics`); what must not happen is
//! that it goes unnoticed. So each assignment is checked: a partition with no committed
//! offset whose low watermark is above 0 is logged at `warn` and counted
//! ([`super::PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL`]).
//!
//! The decision is the pure [`start_of`]; [`check_assignment`] only gathers its inputs. It
//! runs in librdkafka's rebalance callback, before the loop has handled (or stored) anything
//! of the new partitions, so the offsets it reads are the ones the group started from. Its
//! broker calls are blocking, so they share one short deadline, and any failure is logged and
//! ignored: the check never stops consuming.

use std::time::{Duration, Instant};

use metrics::counter;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL;

/// How long one assignment's check may hold up the rebalance callback, all calls together.
const CHECK_DEADLINE: Duration = Duration::from_secs(3);

/// Where a newly assigned partition starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The group committed an offset: it resumes there.
    Resumes,
    /// No committed offset, and the partition still holds every event ever written to it: a
    /// new group reading a topic from its beginning. Nothing to say.
    FromTheBeginning,
    /// No committed offset, and the partition's first events were deleted: the group replays
    /// what the topic still keeps from `low_watermark` on. A new group on a long-lived topic,
    /// or a group whose committed offsets expired; either way an operator should know.
    WithoutOffset { low_watermark: i64 },
}

/// The start of a partition from the group's committed offset (`Offset::Invalid` when it has
/// none) and the partition's low watermark (its oldest offset still kept).
pub fn start_of(committed: Offset, low_watermark: i64) -> Start {
    match committed {
        Offset::Offset(offset) if offset >= 0 => Start::Resumes,
        _ if low_watermark > 0 => Start::WithoutOffset { low_watermark },
        _ => Start::FromTheBeginning,
    }
}

/// Checks each partition of `assignment` (just assigned to `group`), warning and counting
/// the ones that start without an offset on trimmed history.
pub fn check_assignment<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    assignment: &TopicPartitionList,
    group: &str,
) {
    let give_up_at = Instant::now() + CHECK_DEADLINE;
    let committed = match consumer.committed_offsets(assignment.clone(), CHECK_DEADLINE) {
        Ok(committed) => committed,
        Err(error) => {
            tracing::warn!(group, %error, "could not read the committed offsets of the new assignment; not checking where it starts");
            return;
        }
    };
    for element in committed.elements() {
        let (topic, partition) = (element.topic(), element.partition());
        if let Err(error) = element.error() {
            tracing::warn!(group, topic, partition, %error, "could not read a partition's committed offset; not checking where it starts");
            continue;
        }
        if start_of(element.offset(), 0) == Start::Resumes {
            continue; // no need to ask for the watermarks
        }
        let remaining = give_up_at.saturating_duration_since(Instant::now());
        let low_watermark = match consumer.fetch_watermarks(topic, partition, remaining) {
            Ok((low, _high)) => low,
            Err(error) => {
                tracing::warn!(group, topic, partition, %error, "could not read the low watermark of a partition starting without an offset; not checking the rest");
                return;
            }
        };
        if let Start::WithoutOffset { low_watermark } = start_of(element.offset(), low_watermark) {
            counter!(PARTITIONS_STARTED_WITHOUT_OFFSET_TOTAL, "group" => group.to_owned())
                .increment(1);
            tracing::warn!(
                group,
                topic,
                partition,
                low_watermark,
                "partition assigned without a committed offset on a topic whose oldest events were deleted: the group replays what the topic still keeps (a new group, or one whose committed offsets expired); the dedupe records absorb the replay, but events older than the low watermark were never read by this group"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_offset_resumes_whatever_the_topic_deleted() {
        assert_eq!(start_of(Offset::Offset(0), 0), Start::Resumes);
        assert_eq!(start_of(Offset::Offset(42), 1_000), Start::Resumes);
    }

    #[test]
    fn no_committed_offset_on_untrimmed_history_is_a_quiet_start_from_the_beginning() {
        assert_eq!(start_of(Offset::Invalid, 0), Start::FromTheBeginning);
    }

    #[test]
    fn no_committed_offset_on_trimmed_history_is_a_start_without_offset() {
        assert_eq!(
            start_of(Offset::Invalid, 7),
            Start::WithoutOffset { low_watermark: 7 }
        );
    }
}
