//! Who is waiting for which order: the open streams' subscriptions, keyed by order id.
//!
//! A stream subscribes before it reads the order's status from the ledger, so a transition
//! made after that read reaches it through [`OrderWatchers::notify`], and one made before is in
//! what it read. Each order has at most one channel however many streams watch it (a buyer
//! with two tabs), and the channel goes when its last stream closes: the map holds the orders
//! being watched, not every order of the sale.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use shared::ids::OrderId;
use shared::stock::OrderStatus;
use tokio::sync::watch;

/// The latest status each watched order was told to have.
type Channels = HashMap<OrderId, watch::Sender<Option<OrderStatus>>>;

#[derive(Default)]
pub struct OrderWatchers {
    channels: Arc<Mutex<Channels>>,
}

impl OrderWatchers {
    /// A subscription to `order_id`'s transitions, until it is dropped.
    pub fn watch(&self, order_id: &OrderId) -> Watch {
        let receiver = self
            .lock()
            .entry(order_id.clone())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        Watch {
            order_id: order_id.clone(),
            receiver,
            channels: Arc::clone(&self.channels),
        }
    }

    /// Tells the streams watching `order_id` that it moved to `status`; nobody watching
    /// costs one lookup.
    pub fn notify(&self, order_id: &OrderId, status: OrderStatus) {
        if let Some(sender) = self.lock().get(order_id) {
            sender.send_replace(Some(status));
        }
    }

    /// How many orders are watched now.
    pub fn watched(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Channels> {
        self.channels.lock().expect("watchers lock poisoned")
    }
}

/// One stream's subscription to one order.
pub struct Watch {
    order_id: OrderId,
    receiver: watch::Receiver<Option<OrderStatus>>,
    channels: Arc<Mutex<Channels>>,
}

impl Watch {
    /// Waits for the next transition notice. Never ends by itself: the channel's sender
    /// stays in the map while this subscription exists.
    pub async fn changed(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut channels = self.channels.lock().expect("watchers lock poisoned");
        // This subscription's receiver still counts until the fields drop after this body.
        if channels
            .get(&self.order_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            channels.remove(&self.order_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_notice_reaches_every_watcher_of_the_order_and_the_channel_goes_with_the_last() {
        let order = OrderId::generate(&"sale-1".parse().expect("a valid sale id"));
        let order = || order.clone();
        let watchers = OrderWatchers::default();
        let mut first = watchers.watch(&order());
        let mut second = watchers.watch(&order());
        assert_eq!(watchers.watched(), 1, "one channel per order");

        watchers.notify(&order(), OrderStatus::Created);
        for watch in [&mut first, &mut second] {
            tokio::time::timeout(Duration::from_secs(1), watch.changed())
                .await
                .expect("the notice arrives");
        }

        drop(first);
        assert_eq!(watchers.watched(), 1, "the second stream still watches");
        drop(second);
        assert_eq!(watchers.watched(), 0);
        watchers.notify(&order(), OrderStatus::Paid);
        assert_eq!(watchers.watched(), 0, "a notice for nobody creates nothing");
    }
}
