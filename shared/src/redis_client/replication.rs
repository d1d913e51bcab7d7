//! A replica's confirmation of writes on Redis Cluster, shared by concurrent writers: group
//! commit for `WAIT` (docs/architecture.md, "What a 202 survives").
//!
//! `WAIT 1 <ms>` blocks the connection it is sent on until a replica holds every earlier write
//! of that connection, or the time is up. The cluster client sends all of a process's commands
//! for one node over one connection, so a `WAIT` after each write would hold every other command
//! for that master behind a replica's round trip: under a crowd the locks queue and miss their
//! deadline. So writers share: a `WAIT` sent after a writer's write was answered covers that
//! write (same connection, later in it), and every writer that asks while one `WAIT` is in
//! flight is covered by the next. One `WAIT` per replica round trip, however many writes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{RedisError, RedisResult};
use tokio::sync::oneshot;

/// How many replicas confirmed: what each waiting writer is told.
type Confirmed = Result<u32, RedisError>;

/// The writers waiting for a confirmation, per slot.
#[derive(Default)]
pub struct ReplicaConfirmations {
    slots: Mutex<HashMap<Slot, Waiting>>,
}

#[derive(Default)]
struct Waiting {
    /// A task is sending `WAIT`s to the slot's master.
    in_flight: bool,
    /// Writers the next `WAIT` answers.
    next: Vec<oneshot::Sender<Confirmed>>,
}

impl ReplicaConfirmations {
    /// How many replicas (0 or 1) hold every write to `key`'s slot that was answered before
    /// this call, waiting at most `wait` for one.
    pub async fn confirm(
        self: &Arc<Self>,
        cluster: &ClusterConnection,
        key: &str,
        wait: Duration,
    ) -> RedisResult<u32> {
        let slot = Slot::for_key(key);
        let (answer, answered) = oneshot::channel();
        let start = {
            let mut slots = self.slots();
            let waiting = slots.entry(slot).or_default();
            waiting.next.push(answer);
            !std::mem::replace(&mut waiting.in_flight, true)
        };
        if start {
            let sender = Sender {
                confirmations: Arc::clone(self),
                slot,
                freed: false,
            };
            tokio::spawn(sender.send_waits(cluster.clone(), wait));
        }
        answered
            .await
            .map_err(|_| RedisError::from(std::io::Error::other("the WAIT was dropped")))?
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, HashMap<Slot, Waiting>> {
        self.slots.lock().expect("confirmations lock poisoned")
    }
}

/// The task that sends one slot's `WAIT`s. It frees the slot when its queue is empty (in the
/// same step that finds it empty, so no writer is left behind); dropped before that (the
/// runtime shutting down mid-`WAIT`), it frees the slot too, so the next writer starts another.
struct Sender {
    confirmations: Arc<ReplicaConfirmations>,
    slot: Slot,
    freed: bool,
}

impl Sender {
    /// Sends `WAIT`s to the slot's master until no writer is left waiting.
    async fn send_waits(mut self, mut cluster: ClusterConnection, wait: Duration) {
        loop {
            let waiters = {
                let mut slots = self.confirmations.slots();
                // Only this sender frees its slot, so the entry is there while it runs.
                let waiting = slots
                    .get_mut(&self.slot)
                    .expect("a sender's slot stays until it frees it");
                if waiting.next.is_empty() {
                    slots.remove(&self.slot);
                    self.freed = true;
                    return;
                }
                std::mem::take(&mut waiting.next)
            };
            let confirmed = wait_for_replica(&mut cluster, self.slot, wait).await;
            for waiter in waiters {
                // A writer that gave up (its deadline passed) no longer listens.
                let _ = waiter.send(confirmed.clone());
            }
        }
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if !self.freed {
            // Writers still queued are answered by their channel's closing (an error: they
            // count as unconfirmed).
            self.confirmations.slots().remove(&self.slot);
        }
    }
}

/// `WAIT 1 <wait>` on the master of `slot`.
async fn wait_for_replica(
    cluster: &mut ClusterConnection,
    slot: Slot,
    wait: Duration,
) -> Confirmed {
    let mut command = redis::cmd("WAIT");
    command.arg(1).arg(wait.as_millis() as u64);
    let master = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
        slot,
        SlotAddr::Master,
    )));
    let reply = cluster.route_command(command, master).await?;
    redis::from_redis_value(reply).map_err(RedisError::from)
}
