//! The Redis key layout, in one place.
//!
//! Every key of one sale carries the hash tag `{sale:<id>}`, so all of them live in one Redis
//! Cluster slot and the stock script, which touches several of them, runs unchanged on a
//! cluster. Keys that span sales (the blacklist, the sales index) are never touched by a
//! script. A prefix in front of every key lets deployments, or parallel tests, share a Redis.
//!
//! A store of a worker's own takes its keys from [`KeySpace::store`], so they carry the
//! deployment's prefix and a hash tag of their own; [`KeySpace::counters`] is one such store.

use crate::ids::SaleId;

/// The keys of one set of [`crate::counters`], in one hash slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterKeys {
    /// Sorted set: event ids applied, scored by when (unix ms).
    pub applied: String,
    /// Hash: counter key → value.
    pub values: String,
}

/// Builds the keys of one deployment (one prefix).
#[derive(Clone, Debug)]
pub struct KeySpace {
    prefix: String,
}

/// The keys of one sale, all in the same hash slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SaleKeys {
    /// String: marks the sale id as used, for good. It never expires (settling leaves it out,
    /// see [`SaleKeys::all`]): orders in the order table keep the id after the other keys are
    /// gone, so a new sale under it would see its returning buyers' orders refused.
    pub taken: String,
    /// String: the sale's fixed attributes (name, price, stock, window) as JSON.
    pub info: String,
    /// String: units left. Absent means the sale does not exist.
    pub stock: String,
    /// Hash: user id → order id. One purchase per buyer, and the owner of each order.
    pub buyers: String,
    /// Hash: order id → event JSON, from the stock lock until the order row is stored.
    pub outbox: String,
    /// Sorted set: order ids whose publish the broker has not acknowledged, scored by the
    /// reservation (or last re-publish) time in milliseconds, on Redis's clock; the reconciler
    /// re-publishes the old ones.
    pub unpublished: String,
    /// Sorted set: order ids whose publish the broker acknowledged but that have no order row
    /// yet, scored by the acknowledgement (or last re-publish) time; an entry far older than
    /// any backlog was lost after the acknowledgement, and is re-published too.
    pub acknowledged: String,
    /// Hash: order id → `processing` | `created` | `paid` | `expired` | `failed`.
    pub status: String,
    /// Sorted set: order ids awaiting payment, scored by their pay-by time in milliseconds on
    /// Redis's clock; the expiry sweep takes the due ones.
    pub deadlines: String,
    /// Hash: order id → the buyer's user id, for the order's transition events.
    pub owners: String,
    /// Hash: the transition outbox, event id (`<order id>:<status>`) → event JSON, until the
    /// broker acknowledges it.
    pub transitions: String,
    /// Sorted set: transition event ids scored by when each is due for (re)publishing (ms,
    /// Redis's clock).
    pub transitions_due: String,
    /// Hash: the payment intents, order id → amount in cents: recorded before the provider is
    /// asked to charge, removed once the payment is settled (paid, refunded, or never charged).
    pub payments: String,
    /// Sorted set: order ids with a payment intent, scored by when the payment resolver may
    /// look at them (ms, Redis's clock).
    pub payments_due: String,
    /// Hash: `sold`, `revenue_cents` as the stats worker counted them.
    pub stats: String,
    /// Set: event ids the stats worker has counted (its exactly-once record).
    pub stats_events: String,
    /// Set: distinct buyers the stats worker has counted.
    pub stats_buyers: String,
    /// Hash: unix second → orders accepted in that second.
    pub stats_timeline: String,
    /// Prefix of the per-order SMS idempotency records (`<prefix>:<order id>`, with expiry).
    pub sms_sent_prefix: String,
    /// String with a short expiry: written only so that a replica's confirmation of it (on
    /// Redis Cluster) vouches for every earlier write of the sale, whoever made them.
    pub fence: String,
}

impl SaleKeys {
    /// The keys of the stock lock (`reserve.lua`), in the order the script takes them.
    pub fn reserve(&self) -> [&str; 7] {
        [
            &self.stock,
            &self.buyers,
            &self.outbox,
            &self.unpublished,
            &self.status,
            &self.deadlines,
            &self.owners,
        ]
    }

    /// The keys every status-changing script ends with (`transition.lua`): the sale, the
    /// owners, and the transition outbox.
    pub fn transition_outbox(&self) -> [&str; 4] {
        [
            &self.info,
            &self.owners,
            &self.transitions,
            &self.transitions_due,
        ]
    }

    /// Every key of the sale that expires once the sale settled: all of them but
    /// [`SaleKeys::taken`] (and the per-order SMS records, which expire on their own).
    pub fn all(&self) -> [&str; 17] {
        [
            &self.info,
            &self.stock,
            &self.buyers,
            &self.outbox,
            &self.unpublished,
            &self.acknowledged,
            &self.status,
            &self.deadlines,
            &self.owners,
            &self.transitions,
            &self.transitions_due,
            &self.payments,
            &self.payments_due,
            &self.stats,
            &self.stats_events,
            &self.stats_buyers,
            &self.stats_timeline,
        ]
    }
}

impl KeySpace {
    /// Keys under `prefix`, which must not contain `{` or `}` (it would steal the hash tag).
    pub fn new(prefix: &str) -> Self {
        assert!(
            !prefix.contains(['{', '}']),
            "a Redis key prefix must not contain braces: {prefix:?}"
        );
        Self {
            prefix: prefix.to_owned(),
        }
    }

    pub fn sale(&self, sale_id: &SaleId) -> SaleKeys {
        let base = format!("{}:{{sale:{sale_id}}}", self.prefix);
        SaleKeys {
            taken: format!("{base}:taken"),
            info: format!("{base}:info"),
            stock: format!("{base}:stock"),
            buyers: format!("{base}:buyers"),
            outbox: format!("{base}:outbox"),
            unpublished: format!("{base}:unpublished"),
            acknowledged: format!("{base}:acknowledged"),
            status: format!("{base}:status"),
            deadlines: format!("{base}:deadlines"),
            owners: format!("{base}:owners"),
            transitions: format!("{base}:transitions"),
            transitions_due: format!("{base}:transitions:due"),
            payments: format!("{base}:payments"),
            payments_due: format!("{base}:payments:due"),
            stats: format!("{base}:stats"),
            stats_events: format!("{base}:stats:events"),
            stats_buyers: format!("{base}:stats:buyers"),
            stats_timeline: format!("{base}:stats:timeline"),
            sms_sent_prefix: format!("{base}:sms"),
            fence: format!("{base}:fence"),
        }
    }

    /// Set of the sales not settled yet, for the jobs that sweep them (the reconciler).
    pub fn sales_index(&self) -> String {
        format!("{}:sales", self.prefix)
    }

    /// Set of blacklisted user ids. Shares a hash tag with its version counter, so both change
    /// in one MULTI on a cluster too.
    pub fn blacklist(&self) -> String {
        format!("{}:{{blacklist}}", self.prefix)
    }

    /// A lease: whoever holds it is the one instance running the job `name`
    /// (`<prefix>:reconciler:lease` for the reconciler).
    pub fn lease(&self, name: &str) -> String {
        format!("{}:{name}:lease", self.prefix)
    }

    /// The base of the keys of a store named `name`: `<prefix>:{<name>}`, so every key built
    /// on it (`<base>:<part>`) shares one hash slot and cannot collide with another store's.
    pub fn store(&self, name: &str) -> String {
        assert!(
            !name.contains(['{', '}']),
            "a store name must not contain braces: {name:?}"
        );
        format!("{}:{{{name}}}", self.prefix)
    }

    /// The keys of the counter set `name` (see [`crate::counters`]).
    pub fn counters(&self, name: &str) -> CounterKeys {
        let base = self.store(&format!("counters:{name}"));
        CounterKeys {
            applied: format!("{base}:applied"),
            values: format!("{base}:values"),
        }
    }

    /// Counter bumped on every blacklist change, so gateways reload their copy only when needed.
    pub fn blacklist_version(&self) -> String {
        format!("{}:{{blacklist}}:version", self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash_tag(key: &str) -> &str {
        let open = key.find('{').unwrap();
        let close = open + key[open..].find('}').unwrap();
        &key[open + 1..close]
    }

    #[test]
    fn every_key_of_a_sale_shares_one_hash_tag() {
        let keys = KeySpace::new("test-1").sale(&"s42".parse().unwrap());
        for key in keys
            .all()
            .into_iter()
            .chain([keys.taken.as_str(), keys.sms_sent_prefix.as_str()])
        {
            assert!(key.starts_with("test-1:"), "{key}");
            assert_eq!(hash_tag(key), "sale:s42", "{key}");
        }
    }

    #[test]
    fn the_blacklist_and_its_version_share_a_slot() {
        let space = KeySpace::new("p");
        assert_eq!(
            hash_tag(&space.blacklist()),
            hash_tag(&space.blacklist_version())
        );
    }

    #[test]
    fn different_sales_use_different_tags() {
        let space = KeySpace::new("p");
        assert_ne!(
            hash_tag(&space.sale(&"a".parse().unwrap()).stock),
            hash_tag(&space.sale(&"b".parse().unwrap()).stock)
        );
    }

    #[test]
    fn a_stores_keys_share_a_slot_of_their_own() {
        let space = KeySpace::new("p");
        let points = space.counters("points");
        assert_eq!(hash_tag(&points.applied), hash_tag(&points.values));
        assert_ne!(
            hash_tag(&points.values),
            hash_tag(&space.counters("other").values)
        );
        assert!(points.values.starts_with("p:"));
    }

    #[test]
    #[should_panic(expected = "braces")]
    fn a_prefix_with_braces_is_refused() {
        let _ = KeySpace::new("{oops}");
    }
}
