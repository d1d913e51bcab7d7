//! A Redis sorted set in this process's memory: members with a score (a time, in unix ms),
//! read lowest score first, ties by member, as `ZRANGEBYSCORE … LIMIT` reads them.
//!
//! The memory ledger keeps four of them (the outbox's two stamps, the payment deadlines, the
//! transition and payment schedules), each read exactly the way its Redis twin's script
//! reads its key; the order of the reading is what the conformance suite compares.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

/// Members and their scores; a member has one score, set again by [`ScoredSet::insert`].
#[derive(Debug)]
pub struct ScoredSet<M>(HashMap<M, i64>);

impl<M> Default for ScoredSet<M> {
    fn default() -> Self {
        Self(HashMap::new())
    }
}

impl<M: Hash + Eq + Ord + Clone> ScoredSet<M> {
    /// Sets `member`'s score (`ZADD`).
    pub fn insert(&mut self, member: M, score: i64) {
        self.0.insert(member, score);
    }

    /// Removes `member` (`ZREM`); whether it was there.
    pub fn remove<Q>(&mut self, member: &Q) -> bool
    where
        M: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.remove(member).is_some()
    }

    /// `member`'s score (`ZSCORE`).
    pub fn score<Q>(&self, member: &Q) -> Option<i64>
    where
        M: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.get(member).copied()
    }

    /// Sets the score of `member` if it is there (`ZADD XX`).
    pub fn rescore(&mut self, member: &M, score: i64) {
        if let Some(current) = self.0.get_mut(member) {
            *current = score;
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// At most `limit` members scored `at_most` or lower, lowest first, ties by member
    /// (`ZRANGEBYSCORE key -inf at_most LIMIT 0 limit`).
    pub fn up_to(&self, at_most: i64, limit: usize) -> Vec<M> {
        let mut due: Vec<(i64, &M)> = self
            .0
            .iter()
            .filter(|&(_, &score)| score <= at_most)
            .map(|(member, &score)| (score, member))
            .collect();
        due.sort_unstable();
        due.into_iter()
            .take(limit)
            .map(|(_, member)| member.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_come_lowest_score_first_ties_by_member_up_to_the_limit() {
        let mut set = ScoredSet::default();
        for (member, score) in [("c", 5), ("a", 5), ("b", 1), ("d", 9)] {
            set.insert(member, score);
        }
        assert_eq!(set.up_to(5, 10), ["b", "a", "c"]);
        assert_eq!(set.up_to(5, 2), ["b", "a"]);
        set.rescore(&"d", 0);
        set.rescore(&"e", 0);
        assert_eq!(set.up_to(0, 10), ["d"], "only members that are there");
        assert!(set.remove("d") && !set.remove("d"));
        assert_eq!((set.len(), set.score("b")), (3, Some(1)));
    }
}
