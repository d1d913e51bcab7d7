//! One producer per key, shared by every subscriber of that key: what a dashboard's snapshot
//! needs, where a thousand viewers of one sale must cost the stores what one viewer costs.
//!
//! The first subscriber of a key starts its producer, a task that makes a value every period
//! and publishes it on a `watch` channel; later subscribers join that channel and receive the
//! latest value at once, then each new one. The producer stops when its last subscriber has
//! gone (or when the gateway shuts down), so a sale nobody watches costs nothing.
//!
//! Stopping races with subscribing: the producer decides to stop, and removes its channel,
//! under the same lock a subscriber takes to join, and only when nobody joined meanwhile.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

/// The latest value of each key's producer; `None` until its first value.
type Channels<K, T> = HashMap<K, watch::Sender<Option<T>>>;

pub struct Fanout<K, T> {
    channels: Arc<Mutex<Channels<K, T>>>,
    period: Duration,
    closing: CancellationToken,
}

impl<K, T> Fanout<K, T>
where
    K: Hash + Eq + Clone + Send + 'static,
    T: Clone + Send + Sync + 'static,
{
    /// Producers that make a value every `period` until their last subscriber goes or
    /// `closing` is cancelled.
    pub fn new(period: Duration, closing: CancellationToken) -> Self {
        Self {
            channels: Arc::default(),
            period,
            closing,
        }
    }

    /// A subscription to `key`'s values. When nobody subscribes to `key` yet, its producer
    /// starts: `produce` is called at once and then every period; a `None` (the value could
    /// not be made) keeps the last value. The receiver's first `changed()` returns at once
    /// when a value exists already.
    pub fn subscribe<P, F>(&self, key: &K, mut produce: P) -> watch::Receiver<Option<T>>
    where
        P: FnMut() -> F + Send + 'static,
        F: Future<Output = Option<T>> + Send,
    {
        let mut channels = self.lock();
        if let Some(sender) = channels.get(key) {
            let mut receiver = sender.subscribe();
            receiver.mark_changed();
            return receiver;
        }
        let (sender, receiver) = watch::channel(None);
        channels.insert(key.clone(), sender.clone());
        let (key, channels, period, closing) = (
            key.clone(),
            Arc::clone(&self.channels),
            self.period,
            self.closing.clone(),
        );
        tokio::spawn(async move {
            // However the producer ends (its last subscriber gone, the gateway closing, a
            // panic while making a value), its channel leaves the map: a later subscriber
            // starts a new producer instead of waiting on a dead one.
            let leaves = Leaves {
                key,
                channels,
                sender: sender.clone(),
            };
            let mut every = tokio::time::interval(period);
            every.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = closing.cancelled() => return,
                    () = sender.closed() => {
                        // Under the lock a subscriber joins through: nobody can join between
                        // the count and the removal.
                        let mut channels = leaves.channels.lock().expect("fan-out lock poisoned");
                        if sender.receiver_count() == 0 {
                            channels.remove(&leaves.key);
                            return;
                        }
                        continue;
                    }
                }
                if let Some(value) = produce().await {
                    sender.send_replace(Some(value));
                }
            }
        });
        receiver
    }

    /// How many keys have a producer now.
    #[cfg(test)]
    pub fn producers(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels<K, T>> {
        self.channels.lock().expect("fan-out lock poisoned")
    }
}

/// Removes a producer's channel from the map when the producer ends, unless a newer
/// producer's channel took its place.
struct Leaves<K: Hash + Eq, T> {
    key: K,
    channels: Arc<Mutex<Channels<K, T>>>,
    sender: watch::Sender<Option<T>>,
}

impl<K: Hash + Eq, T> Drop for Leaves<K, T> {
    fn drop(&mut self) {
        let mut channels = self
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if channels
            .get(&self.key)
            .is_some_and(|current| current.same_channel(&self.sender))
        {
            channels.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A fan-out whose producer counts its calls in `made` and publishes the count.
    fn counting(made: Arc<AtomicU32>) -> impl FnMut() -> std::future::Ready<Option<u32>> {
        move || std::future::ready(Some(made.fetch_add(1, Ordering::SeqCst) + 1))
    }

    #[tokio::test(start_paused = true)]
    async fn every_subscriber_of_a_key_shares_one_producer_which_stops_with_the_last() {
        let fanout = Fanout::new(Duration::from_secs(1), CancellationToken::new());
        let made = Arc::new(AtomicU32::new(0));
        let mut first = fanout.subscribe(&"sale", counting(Arc::clone(&made)));
        first.changed().await.expect("a first value");
        let subscribers: Vec<_> = (0..100)
            .map(|_| fanout.subscribe(&"sale", counting(Arc::clone(&made))))
            .collect();
        for mut subscriber in subscribers.clone() {
            subscriber
                .changed()
                .await
                .expect("the latest value at once");
            assert_eq!(*subscriber.borrow(), Some(1));
        }
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        assert_eq!(
            made.load(Ordering::SeqCst),
            3,
            "one value a period, whatever the number of subscribers"
        );
        assert_eq!(fanout.producers(), 1);

        drop((first, subscribers));
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(fanout.producers(), 0, "the producer stopped with the last");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(made.load(Ordering::SeqCst), 3, "and makes nothing more");
    }

    #[tokio::test(start_paused = true)]
    async fn producers_stop_when_the_gateway_closes() {
        let closing = CancellationToken::new();
        let fanout = Fanout::new(Duration::from_secs(1), closing.clone());
        let mut subscriber = fanout.subscribe(&"sale", counting(Arc::default()));
        subscriber.changed().await.expect("a first value");
        closing.cancel();
        assert!(
            subscriber.changed().await.is_err(),
            "the channel closes, and with it every stream"
        );
        assert_eq!(fanout.producers(), 0);
    }
}
