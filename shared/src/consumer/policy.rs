//! What the loop does after its handler answered, as a pure function: store the offsets,
//! dead-letter some events, or retry after a delay. No broker, no clock: every rule is a
//! unit test below.

use std::num::NonZeroU32;
use std::time::Duration;

use uuid::Uuid;

use super::HandlerError;

/// How a worker wants failures treated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `Retryable` failures after which the batch is dead-lettered; `None` retries forever.
    /// (`Unavailable` failures never count.)
    pub max_attempts: Option<NonZeroU32>,
    /// First retry delay; doubles per failed attempt up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// The failures of one batch so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Every failed attempt; paces the back-off.
    pub failed: u32,
    /// `Retryable` failures only; spends the attempt budget.
    pub retryable: u32,
}

/// What to do next with the events of a batch still pending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Every pending event is handled: store the offsets.
    Store,
    /// Send these pending events to the dead-letter topic with `reason`; any others are handed
    /// to the handler again at once.
    DeadLetter {
        event_ids: Vec<Uuid>,
        reason: String,
    },
    /// Hand the same events to the handler again after this delay.
    RetryAfter(Duration),
}

impl RetryPolicy {
    /// The decision on the handler's `outcome` for the `pending` events, and the attempts
    /// counted so far, including this one.
    pub fn decide(
        &self,
        outcome: &Result<(), HandlerError>,
        pending: &[Uuid],
        attempts: Attempts,
    ) -> (Decision, Attempts) {
        let error = match outcome {
            Ok(()) => return (Decision::Store, attempts),
            Err(error) => error,
        };
        if let HandlerError::Permanent { event_ids, reason } = error {
            let poison: Vec<Uuid> = pending
                .iter()
                .filter(|id| event_ids.contains(id))
                .copied()
                .collect();
            if !poison.is_empty() {
                let decision = Decision::DeadLetter {
                    event_ids: poison,
                    reason: reason.clone(),
                };
                return (decision, attempts);
            }
            // A permanent failure naming none of these events is a handler bug: back off
            // rather than spin.
        }
        let attempts = Attempts {
            failed: attempts.failed + 1,
            retryable: attempts.retryable + u32::from(matches!(error, HandlerError::Retryable(_))),
        };
        if self
            .max_attempts
            .is_some_and(|max| attempts.retryable >= max.get())
        {
            let decision = Decision::DeadLetter {
                event_ids: pending.to_vec(),
                reason: format!("gave up after {} attempts: {error}", attempts.retryable),
            };
            return (decision, attempts);
        }
        (
            Decision::RetryAfter(self.backoff(attempts.failed)),
            attempts,
        )
    }

    /// The delay after the `failed`-th failed attempt: `initial_backoff`, doubled per further
    /// failure, never above `max_backoff`.
    pub fn backoff(&self, failed: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.and_then(NonZeroU32::new),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
        }
    }

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn success_stores_and_spends_nothing() {
        let (decision, attempts) = policy(Some(3)).decide(&Ok(()), &ids(2), Attempts::default());
        assert_eq!(decision, Decision::Store);
        assert_eq!(attempts, Attempts::default());
    }

    #[test]
    fn the_back_off_doubles_and_is_capped() {
        let policy = policy(None);
        let delays: Vec<u128> = (1..=6).map(|n| policy.backoff(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn a_retryable_failure_retries_until_the_budget_is_spent_then_dead_letters_the_batch() {
        let policy = policy(Some(3));
        let pending = ids(2);
        let failure = Err(HandlerError::Retryable("provider answered 503".into()));
        let mut attempts = Attempts::default();
        let mut delays = Vec::new();
        let last = loop {
            let (decision, next) = policy.decide(&failure, &pending, attempts);
            attempts = next;
            match decision {
                Decision::RetryAfter(delay) => delays.push(delay.as_millis()),
                other => break other,
            }
        };
        assert_eq!(delays, [100, 200]);
        match last {
            Decision::DeadLetter { event_ids, reason } => {
                assert_eq!(event_ids, pending);
                assert!(reason.starts_with("gave up after 3 attempts"), "{reason}");
            }
            other => panic!("expected dead letters, got {other:?}"),
        }
    }

    #[test]
    fn an_unavailable_dependency_never_spends_the_budget() {
        let policy = policy(Some(1));
        let failure = Err(HandlerError::Unavailable("PostgreSQL is down".into()));
        let mut attempts = Attempts::default();
        for _ in 0..50 {
            let (decision, next) = policy.decide(&failure, &ids(1), attempts);
            assert!(matches!(decision, Decision::RetryAfter(_)), "{decision:?}");
            attempts = next;
        }
        assert_eq!(attempts.retryable, 0);
        assert_eq!(attempts.failed, 50);
    }

    #[test]
    fn a_permanent_failure_dead_letters_only_the_named_pending_events_at_once() {
        let pending = ids(3);
        let outcome = Err(HandlerError::Permanent {
            event_ids: vec![pending[1], Uuid::new_v4()],
            reason: "refused by the database".into(),
        });
        let (decision, attempts) = policy(Some(3)).decide(&outcome, &pending, Attempts::default());
        assert_eq!(
            decision,
            Decision::DeadLetter {
                event_ids: vec![pending[1]],
                reason: "refused by the database".into()
            }
        );
        assert_eq!(attempts, Attempts::default(), "not a failed attempt");
    }

    #[test]
    fn a_permanent_failure_naming_no_pending_event_backs_off_as_a_bug() {
        let outcome = Err(HandlerError::Permanent {
            event_ids: ids(1),
            reason: "names someone else".into(),
        });
        let (decision, attempts) = policy(Some(3)).decide(&outcome, &ids(2), Attempts::default());
        assert_eq!(decision, Decision::RetryAfter(Duration::from_millis(100)));
        assert_eq!(attempts.failed, 1);
        assert_eq!(attempts.retryable, 0);
    }
}
