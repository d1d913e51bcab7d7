//! The consumer's context: what librdkafka reports besides messages. Its statistics become
//! the lag gauges; each new assignment is checked for a start without a committed offset
//! ([`super::starts`]).

use metrics::gauge;
use rdkafka::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;

use super::LAG_MESSAGES;
use super::starts::check_assignment;

/// The context of one group's consumer.
pub struct LoopContext {
    group: String,
}

impl LoopContext {
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
        }
    }
}

impl ClientContext for LoopContext {
    fn stats(&self, statistics: Statistics) {
        for topic in statistics.topics.values() {
            for (partition, stats) in &topic.partitions {
                // Skip librdkafka's pseudo-partition -1. A partition this instance no longer
                // owns (after a rebalance) reports 0, so the group's sum counts each lag once;
                // -1 means "not known yet".
                if *partition >= 0 {
                    let lag = if stats.desired {
                        stats.consumer_lag.max(0)
                    } else {
                        0
                    };
                    gauge!(LAG_MESSAGES, "group" => self.group.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for LoopContext {
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(assignment) = rebalance
            && assignment.count() > 0
        {
            check_assignment(consumer, assignment, &self.group);
        }
    }
}
