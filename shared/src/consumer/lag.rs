//! Consumer lag per group and partition, published from librdkafka's periodic statistics.

use metrics::gauge;
use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::statistics::Statistics;

use super::LAG_MESSAGES;

/// The consumer's context: turns each statistics report into the lag gauges.
pub struct LagReporter {
    group: String,
}

impl LagReporter {
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_owned(),
        }
    }
}

impl ClientContext for LagReporter {
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

impl ConsumerContext for LagReporter {}
