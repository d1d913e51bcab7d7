//! One Redis connection per process, shared by every task, with a deadline on every call, and
//! the deployment's key layout beside it.
//!
//! A [`ConnectionManager`] multiplexes all requests over one connection and reconnects by
//! itself; it is created lazily so a service starts (and answers `/readyz` with 503) while
//! Redis is still down. Every call goes through [`Redis::call`], which bounds it by the
//! configured deadline: a slow Redis must turn into a fast 503, never into a queue of
//! hanging requests.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisResult};

use crate::config::RedisArgs;
use crate::error::StoreError;
use crate::keys::KeySpace;

/// A cheaply cloneable handle on the process's Redis connection and the deployment's keys.
#[derive(Clone)]
pub struct Redis {
    connection: ConnectionManager,
    deadline: Duration,
    keys: KeySpace,
}

impl Redis {
    /// A handle that connects on first use. Fails only on a malformed URL.
    pub fn connect_lazily(args: &RedisArgs) -> RedisResult<Self> {
        let deadline = args.timeout();
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(deadline))
            .set_response_timeout(Some(deadline))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(
            Client::open(args.redis_url.as_str())?,
            config,
        )?;
        Ok(Self {
            connection,
            deadline,
            keys: KeySpace::new(&args.redis_key_prefix),
        })
    }

    /// The same connection, with another deadline for every call (a background job that reads
    /// more than a purchase does wants a longer one).
    #[must_use]
    pub fn with_deadline(&self, deadline: Duration) -> Self {
        Self {
            deadline,
            ..self.clone()
        }
    }

    /// The keys of this deployment (`REDIS_KEY_PREFIX`).
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// Runs `op` on the shared connection, bounded by the deadline.
    pub async fn call<T>(
        &self,
        op: impl AsyncFnOnce(&mut ConnectionManager) -> RedisResult<T>,
    ) -> Result<T, StoreError> {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.deadline, op(&mut connection))
            .await
            .map_err(|_| StoreError::Timeout(self.deadline))?
            .map_err(|error| {
                if error.is_timeout() {
                    StoreError::Timeout(self.deadline)
                } else {
                    StoreError::Failed(Box::new(error))
                }
            })
    }

    /// The deadline of every call made through this handle.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Redis's clock (`TIME`), in unix milliseconds.
    pub async fn time_ms(&self) -> Result<i64, StoreError> {
        let (seconds, micros): (i64, i64) = self
            .call(async |c| redis::cmd("TIME").query_async(c).await)
            .await?;
        Ok(seconds * 1000 + micros / 1000)
    }

    /// PING, within the deadline.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.call(async |c| redis::cmd("PING").query_async::<()>(c).await)
            .await
    }
}
