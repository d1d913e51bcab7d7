//! How many streams of one kind a gateway serves: in all, and per client.
//!
//! A stream holds a connection for minutes, so each kind has a bound of its own (a crowd of
//! anonymous dashboards must not take the places of buyers' order streams), and each client a
//! share of it (one client must not take them all). The two refusals differ on purpose: past
//! the gateway's bound the gateway is full, 503 `unavailable` (poll instead, or try another
//! gateway); past a client's share the client asks too much, 429 `rate_limited` (close a
//! stream first). Each message names the setting that bounds it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

/// One kind of stream's bound, and what its refusals say.
pub struct StreamBound<C: Hash + Eq> {
    open: Arc<Mutex<Open<C>>>,
    most: usize,
    most_per_client: usize,
    full: &'static str,
    client_full: &'static str,
}

/// The streams open now, in all and by client (a client with none has no entry).
struct Open<C> {
    total: usize,
    by_client: HashMap<C, usize>,
}

impl<C: Hash + Eq + Clone> StreamBound<C> {
    /// At most `most` streams, `most_per_client` of them per client; `full` and `client_full`
    /// are the sentences of the 503 and the 429.
    pub fn new(
        most: usize,
        most_per_client: usize,
        full: &'static str,
        client_full: &'static str,
    ) -> Self {
        Self {
            open: Arc::new(Mutex::new(Open {
                total: 0,
                by_client: HashMap::new(),
            })),
            most,
            most_per_client,
            full,
            client_full,
        }
    }

    /// A place for one more stream of `client`, held until the place is dropped.
    pub fn admit(&self, client: C) -> Result<StreamPlace<C>, ApiError> {
        let mut open = self.open.lock().expect("stream bound lock poisoned");
        let of_client = open.by_client.get(&client).copied().unwrap_or(0);
        if of_client >= self.most_per_client {
            return Err(ApiError::TooManyStreams(self.client_full));
        }
        if open.total >= self.most {
            return Err(ApiError::Unavailable(self.full));
        }
        open.total += 1;
        open.by_client.insert(client.clone(), of_client + 1);
        Ok(StreamPlace {
            client,
            open: Arc::clone(&self.open),
        })
    }
}

/// One open stream's place under its bound, given back when dropped.
pub struct StreamPlace<C: Hash + Eq> {
    client: C,
    open: Arc<Mutex<Open<C>>>,
}

impl<C: Hash + Eq> Drop for StreamPlace<C> {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("stream bound lock poisoned");
        open.total -= 1;
        if let Some(count) = open.by_client.get_mut(&self.client) {
            *count -= 1;
            if *count == 0 {
                open.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bound(most: usize, most_per_client: usize) -> StreamBound<&'static str> {
        StreamBound::new(most, most_per_client, "gateway full", "client full")
    }

    #[test]
    fn a_client_past_its_share_is_refused_429_and_others_still_get_places() {
        let bound = bound(10, 2);
        let places = [bound.admit("ann").unwrap(), bound.admit("ann").unwrap()];
        let Err(refused) = bound.admit("ann") else {
            panic!("a third stream of ann's was admitted");
        };
        assert!(matches!(refused, ApiError::TooManyStreams("client full")));
        assert_eq!(refused.status(), 429);
        assert!(bound.admit("ben").is_ok(), "another client");
        drop(places);
        assert!(bound.admit("ann").is_ok(), "ann's places came back");
    }

    #[test]
    fn past_the_gateways_bound_everyone_is_refused_503_until_a_place_comes_back() {
        let bound = bound(2, 2);
        let first = bound.admit("ann").unwrap();
        let _second = bound.admit("ben").unwrap();
        let Err(refused) = bound.admit("cid") else {
            panic!("a third stream was admitted");
        };
        assert!(matches!(refused, ApiError::Unavailable("gateway full")));
        drop(first);
        assert!(bound.admit("cid").is_ok());
    }

    #[test]
    fn a_client_whose_streams_all_closed_leaves_no_trace() {
        let bound = bound(10, 2);
        drop(bound.admit("ann").unwrap());
        let open = bound.open.lock().unwrap();
        assert_eq!((open.total, open.by_client.len()), (0, 0));
    }
}
