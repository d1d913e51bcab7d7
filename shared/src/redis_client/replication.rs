//! A replica's confirmation of writes on Redis Cluster, shared by concurrent writers: group
//! commit for `WAIT` (docs/architecture.md, "What a 202 survives").
//!
//! `WAIT 1 <ms>` blocks the connection it is sent on until a replica holds every earlier write
//! of that connection, or the time is up. The cluster client sends all of a process's commands
//! for one node over one connection, so a `WAIT` after each write would hold every other command
//! for that master behind a replica's round trip: under a crowd the locks queue and miss their
//! deadline. So writers share: a `WAIT` sent after a writer's write was answered covers that
//! write (same connection, later in it), and every writer that asks while one `WAIT` is in
//! flight is covered by the next. One `WAIT` per replica round trip, however many locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{RedisError, RedisResult};
use tokio::sync::oneshot;

use super::Connection;

/// How many replicas confirmed: what each waiting writer is told.
type Confirmed = Result<u32, RedisError>;

/// The writers waiting for a confirmation, per slot.
#[derive(Default)]
pub struct ReplicaConfirmations {
    slots: Mutex<HashMap<u16, Waiting>>,
}

#[derive(Default)]
struct Waiting {
    /// A `WAIT` is on its way to the slot's master.
    in_flight: bool,
    /// Writers the next `WAIT` answers.
    next: Vec<oneshot::Sender<Confirmed>>,
}

impl ReplicaConfirmations {
    /// How many replicas (0 or 1) hold every write to `key`'s slot that was answered before
    /// this call, waiting at most `wait` for one.
    pub async fn confirm(
        self: &Arc<Self>,
        connection: &Connection,
        key: &str,
        wait: Duration,
    ) -> RedisResult<u32> {
        let slot = slot_of(key);
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut slots = self.slots();
            let waiting = slots.entry(slot).or_default();
            waiting.next.push(answer);
            !std::mem::replace(&mut waiting.in_flight, true)
        };
        if start {
            let (confirmations, connection) = (Arc::clone(self), connection.clone());
            tokio::spawn(async move { confirmations.send_waits(connection, slot, wait).await });
        }
        answered
            .await
            .map_err(|_| RedisError::from(std::io::Error::other("the WAIT was dropped")))?
    }

    /// Sends `WAIT`s to the slot's master until no writer is left waiting.
    async fn send_waits(&self, mut connection: Connection, slot: u16, wait: Duration) {
        loop {
            let waiters = {
                let mut slots = self.slots();
                let Some(waiting) = slots.get_mut(&slot) else {
                    return;
                };
                if waiting.next.is_empty() {
                    slots.remove(&slot);
                    return;
                }
                std::mem::take(&mut waiting.next)
            };
            let confirmed = wait_for_replica(&mut connection, slot, wait).await;
            for waiter in waiters {
                // A writer that gave up (its deadline passed) no longer listens.
                let _ = waiter.send(confirmed.clone());
            }
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<u16, Waiting>> {
        self.slots.lock().expect("confirmations lock poisoned")
    }
}

/// `WAIT 1 <wait>` on the master of `slot`.
async fn wait_for_replica(connection: &mut Connection, slot: u16, wait: Duration) -> Confirmed {
    let mut command = redis::cmd("WAIT");
    command.arg(1).arg(wait.as_millis() as u64);
    let Connection::Cluster(cluster) = connection else {
        return command.query_async(connection).await;
    };
    let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::new(
        slot,
        SlotAddr::Master,
    )));
    let reply = cluster.route_command(command, master).await?;
    redis::from_redis_value(reply).map_err(RedisError::from)
}

/// The cluster slot of `key`: CRC16 of its hash tag (the text between the first `{` and the
/// next `}`, when not empty) or of the whole key, modulo 16384.
fn slot_of(key: &str) -> u16 {
    let tagged = key
        .split_once('{')
        .and_then(|(_, rest)| rest.split_once('}'))
        .map(|(tag, _)| tag)
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key);
    crc16::State::<crc16::XMODEM>::calculate(tagged.as_bytes()) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_those_redis_computes() {
        // The examples of the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(slot_of("123456789"), 12739);
        assert_eq!(slot_of("foo"), 12182);
        assert_eq!(slot_of("{user1000}.following"), slot_of("user1000"));
        assert_eq!(slot_of("foo{}{bar}"), slot_of("foo{}{bar}"));
        assert_ne!(slot_of("foo{}{bar}"), slot_of("bar"));
        assert_eq!(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    }
}
