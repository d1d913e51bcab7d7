//! Waiting for what another process brings about: a check polled at a steady pace until it
//! yields, or a deadline passes. Tests wait through it (`testing::eventually`), and so do the
//! proofs (the moment a fault strikes, a restarted process serving, a backlog drained).

use std::time::Duration;

use tokio::time::Instant;

/// Polls `check` every `every` until it returns `Some`; `None` once `within` has passed.
pub async fn until<T>(
    within: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(every).await;
    }
}
