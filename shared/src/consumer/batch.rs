//! One batch, from its first attempt until every event is handled or dead-lettered: the loop
//! that performs [`RetryPolicy::decide`]'s decisions. It knows no broker (dead-lettering is a
//! [`DeadLetterSink`]), so its pacing is unit-tested below under a paused clock.

use std::future::Future;
use std::time::Duration;

use metrics::counter;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::policy::{Attempts, Decision, RetryPolicy};
use super::{CONSUMED_TOTAL, Delivery, Handler, PROCESSED, RETRIES_TOTAL};
use crate::event::Consumed;
use crate::kafka::trace_id_of;

/// Whether a step ran to its end or shutdown cut it short.
#[must_use]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    Done,
    /// Shutdown came first: nothing of the batch may be stored, so it is delivered again.
    Interrupted,
}

/// Where a message goes that no attempt can handle.
pub trait DeadLetterSink<M>: Sync {
    /// Sends `message` away with `reason`; `Done` once it is safely gone.
    fn dead_letter(
        &self,
        message: &M,
        reason: &str,
        shutdown: &CancellationToken,
    ) -> impl Future<Output = Step> + Send;
}

/// Hands the deliveries (each beside the message `M` it came from) to `handler` until every
/// one was handled or dead-lettered (`Done`, the offsets may be stored), or shutdown
/// interrupted a wait.
pub async fn handle_batch<H, M, D>(
    handler: &H,
    pending: Vec<(Delivery<H::Event>, M)>,
    policy: &RetryPolicy,
    group: &str,
    dead_letters: &D,
    shutdown: &CancellationToken,
) -> Step
where
    H: Handler,
    M: Send + Sync,
    D: DeadLetterSink<M>,
{
    let (mut deliveries, mut messages): (Vec<Delivery<H::Event>>, Vec<M>) =
        pending.into_iter().unzip();
    let mut attempts = Attempts::default();
    while !deliveries.is_empty() {
        let outcome = handler.handle(&deliveries).await;
        let event_ids: Vec<Uuid> = deliveries.iter().map(|d| d.event.id()).collect();
        let (decision, counted) = policy.decide(&outcome, &event_ids, attempts);
        attempts = counted;
        match decision {
            Decision::Store => {
                counter!(CONSUMED_TOTAL, "group" => group.to_owned(), "outcome" => PROCESSED)
                    .increment(deliveries.len() as u64);
                for delivery in &deliveries {
                    let trace_id = delivery.traceparent.as_deref().and_then(trace_id_of);
                    tracing::debug!(group, trace_id, order_id = %delivery.event.order_id(), "processed");
                }
                return Step::Done;
            }
            Decision::DeadLetter { event_ids, reason } => {
                let (poison, rest): (Vec<_>, Vec<_>) = deliveries
                    .into_iter()
                    .zip(messages)
                    .partition(|(delivery, _)| event_ids.contains(&delivery.event.id()));
                for (_, message) in &poison {
                    if dead_letters.dead_letter(message, &reason, shutdown).await
                        == Step::Interrupted
                    {
                        return Step::Interrupted;
                    }
                }
                (deliveries, messages) = rest.into_iter().unzip();
            }
            Decision::RetryAfter(delay) => {
                counter!(RETRIES_TOTAL, "group" => group.to_owned()).increment(1);
                let reason = outcome.err().map(|error| error.to_string());
                tracing::warn!(
                    group,
                    attempt = attempts.failed,
                    ?delay,
                    reason,
                    "batch failed; retrying"
                );
                if sleep_unless_shutdown(delay, shutdown).await == Step::Interrupted {
                    return Step::Interrupted;
                }
            }
        }
    }
    Step::Done
}

/// Sleeps for `delay`, unless shutdown comes first.
pub async fn sleep_unless_shutdown(delay: Duration, shutdown: &CancellationToken) -> Step {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Step::Interrupted,
        () = tokio::time::sleep(delay) => Step::Done,
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Mutex;

    use tokio::time::Instant;

    use super::*;
    use crate::consumer::HandlerError;
    use crate::event::ReservationEvent;
    use crate::ids::OrderId;

    /// Answers each call with the next scripted outcome (then success), and counts the calls.
    struct Scripted {
        outcomes: Mutex<Vec<Result<(), HandlerError>>>,
        calls: Mutex<Vec<usize>>,
    }

    impl Scripted {
        fn new(mut outcomes: Vec<Result<(), HandlerError>>) -> Self {
            outcomes.reverse();
            Self {
                outcomes: Mutex::new(outcomes),
                calls: Mutex::default(),
            }
        }

        fn batch_sizes(&self) -> Vec<usize> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Handler for Scripted {
        type Event = ReservationEvent;

        async fn handle(&self, batch: &[Delivery]) -> Result<(), HandlerError> {
            self.calls.lock().unwrap().push(batch.len());
            self.outcomes.lock().unwrap().pop().unwrap_or(Ok(()))
        }
    }

    /// Records what was dead-lettered, at once.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<(usize, String)>>);

    impl DeadLetterSink<usize> for Recorded {
        async fn dead_letter(&self, message: &usize, reason: &str, _: &CancellationToken) -> Step {
            self.0.lock().unwrap().push((*message, reason.to_owned()));
            Step::Done
        }
    }

    fn batch(n: usize) -> Vec<(Delivery, usize)> {
        (0..n)
            .map(|i| {
                let sale = "s".parse().unwrap();
                let user = format!("u{i}").parse().unwrap();
                let now = chrono::Utc::now();
                let pay_by = now + chrono::Duration::minutes(15);
                let event =
                    ReservationEvent::new(OrderId::generate(&sale), &user, 100, now, pay_by);
                let delivery = Delivery {
                    event,
                    traceparent: None,
                };
                (delivery, i)
            })
            .collect()
    }

    fn policy(max_attempts: Option<u32>) -> RetryPolicy {
        RetryPolicy {
            max_attempts: max_attempts.and_then(NonZeroU32::new),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        }
    }

    fn retryable() -> Result<(), HandlerError> {
        Err(HandlerError::Retryable("503".into()))
    }

    fn unavailable() -> Result<(), HandlerError> {
        Err(HandlerError::Unavailable("down".into()))
    }

    /// What one batch came to.
    #[derive(Debug, PartialEq, Eq)]
    struct Settled {
        step: Step,
        /// Time taken, on tokio's paused clock: the back-off waits, nothing else.
        took: Duration,
        /// Size of the batch at each handler call.
        calls: Vec<usize>,
        /// The messages dead-lettered, with the reason.
        dead_letters: Vec<(usize, String)>,
    }

    /// Handles `events` with a handler answering `outcomes` in turn.
    async fn settle(
        outcomes: Vec<Result<(), HandlerError>>,
        events: Vec<(Delivery, usize)>,
        policy: &RetryPolicy,
        shutdown: &CancellationToken,
    ) -> Settled {
        let handler = Scripted::new(outcomes);
        let sink = Recorded::default();
        let started = Instant::now();
        let step = handle_batch(&handler, events, policy, "g", &sink, shutdown).await;
        Settled {
            step,
            took: started.elapsed(),
            calls: handler.batch_sizes(),
            dead_letters: sink.0.into_inner().unwrap(),
        }
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    #[tokio::test(start_paused = true)]
    async fn each_outcome_is_paced_and_settled_as_the_policy_decides() {
        let poison_batch = batch(3);
        let poison = vec![Err(HandlerError::Permanent {
            event_ids: vec![poison_batch[1].0.event.event_id],
            reason: "refused".into(),
        })];
        let gave_up = "gave up after 3 attempts: retryable: 503".to_owned();
        let cases = [
            (
                "retries wait out the back-off, then the batch is dead-lettered",
                (0..3).map(|_| retryable()).collect(),
                batch(2),
                policy(Some(3)),
                Settled {
                    step: Step::Done,
                    took: ms(100 + 200),
                    calls: vec![2, 2, 2],
                    dead_letters: vec![(0, gave_up.clone()), (1, gave_up)],
                },
            ),
            (
                "an outage is waited out at the capped pace and nothing is dead-lettered",
                (0..5).map(|_| unavailable()).collect(),
                batch(1),
                policy(Some(1)),
                Settled {
                    step: Step::Done,
                    took: ms(100 + 200 + 400 + 500 + 500),
                    calls: vec![1; 6],
                    dead_letters: vec![],
                },
            ),
            (
                "a poison event leaves alone and the rest are handled again at once",
                poison,
                poison_batch,
                policy(None),
                Settled {
                    step: Step::Done,
                    took: ms(0),
                    calls: vec![3, 2],
                    dead_letters: vec![(1, "refused".into())],
                },
            ),
        ];
        for (case, outcomes, events, policy, expected) in cases {
            let settled = settle(outcomes, events, &policy, &CancellationToken::new()).await;
            assert_eq!(settled, expected, "{case}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_a_back_off_interrupts_the_batch_without_dead_letters() {
        let shutdown = CancellationToken::new();
        let trigger = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(ms(250)).await;
            trigger.cancel();
        });
        let settled = settle(
            (0..100).map(|_| unavailable()).collect(),
            batch(1),
            &policy(None),
            &shutdown,
        )
        .await;
        let tried_at_0_and_100_ms = vec![1, 1];
        assert_eq!(
            settled,
            Settled {
                step: Step::Interrupted,
                took: ms(250),
                calls: tried_at_0_and_100_ms,
                dead_letters: vec![]
            }
        );
    }
}
