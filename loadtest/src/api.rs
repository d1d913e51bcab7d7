//! A small client of the gateway's HTTP API: exactly the calls a load test makes.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{StreamExt, TryStreamExt};
use gateway::outcome::ErrorCode;
use serde::Deserialize;
use serde_json::{Value, json};
use shared::ids::OrderId;
use shared::order_status::OrderStatus;
use shared::sale::Sale;

/// Answers to one purchase attempt.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    /// The `error` code of a refusal.
    pub code: Option<ErrorCode>,
    /// The order id of an acceptance (or of the order an `already_purchased` names).
    pub order_id: Option<OrderId>,
}

impl Answer {
    /// `202`, or the status and error code, e.g. `409 already_purchased`.
    pub fn label(&self) -> String {
        match &self.code {
            Some(code) => format!("{} {code}", self.status),
            None => self.status.to_string(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SaleView {
    pub remaining: u64,
}

#[derive(Debug, Default, Deserialize)]
pub struct StatsView {
    pub sold: u64,
    pub revenue_cents: i64,
    pub buyers: u64,
    pub paid: u64,
    pub paid_revenue_cents: i64,
    pub expired: u64,
    pub failed: u64,
}

#[derive(Clone)]
pub struct Gateway {
    http: reqwest::Client,
    base: String,
    admin_token: String,
}

impl Gateway {
    pub fn new(base: &str, admin_token: &str) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4096)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            admin_token: admin_token.to_owned(),
        })
    }

    /// The gateway's base URL, e.g. `http://127.0.0.1:8080`.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates `sale` through the admin API, again while the gateway cannot answer; a `409
    /// sale_exists` after a lost answer is the sale that call created.
    pub async fn create_sale(&self, sale: &Sale) -> anyhow::Result<()> {
        // Whether an earlier call may have reached the gateway (a refused connection did not).
        let mut may_exist = false;
        let give_up_at = tokio::time::Instant::now() + PATIENCE;
        loop {
            let response = self
                .http
                .post(self.url("/api/v1/admin/sales"))
                .bearer_auth(&self.admin_token)
                .json(sale)
                .send()
                .await;
            if transient(&response) && tokio::time::Instant::now() < give_up_at {
                may_exist |= !matches!(&response, Err(error) if error.is_connect());
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            let response = response.context("is the gateway running?")?;
            let taken = response.status() == reqwest::StatusCode::CONFLICT;
            if response.status() == 201 || (taken && may_exist) {
                return Ok(());
            }
            bail!(
                "creating the sale failed: {} {}",
                response.status(),
                response.text().await?
            );
        }
    }

    /// Tokens for `users`, minted by the admin API (repeated while the gateway cannot answer:
    /// a token minted twice is as good as once).
    pub async fn mint_tokens(&self, users: &[String]) -> anyhow::Result<Vec<String>> {
        futures::stream::iter(users)
            .map(|user| async move {
                let body: Value = self
                    .patiently(|| {
                        self.http
                            .post(self.url("/api/v1/admin/tokens"))
                            .bearer_auth(&self.admin_token)
                            .json(&json!({ "user_id": user }))
                    })
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                body["token"]
                    .as_str()
                    .map(str::to_owned)
                    .context("the token answer has no token")
            })
            .buffered(64)
            .try_collect()
            .await
    }

    pub async fn purchase(&self, sale_id: &str, token: &str) -> Result<Answer, reqwest::Error> {
        let request = self
            .http
            .post(self.url(&format!("/api/v1/sales/{sale_id}/orders")))
            .bearer_auth(token);
        answer(request).await
    }

    pub async fn sale(&self, sale_id: &str) -> anyhow::Result<SaleView> {
        Ok(self
            .get(&format!("/api/v1/sales/{sale_id}"))
            .await?
            .json()
            .await?)
    }

    pub async fn stats(&self, sale_id: &str) -> anyhow::Result<StatsView> {
        Ok(self
            .get(&format!("/api/v1/sales/{sale_id}/stats"))
            .await?
            .json()
            .await?)
    }

    /// The order the token's user holds in the sale, if any (`None`: they hold none).
    pub async fn my_order(&self, sale_id: &str, token: &str) -> anyhow::Result<Option<OrderId>> {
        let response = self
            .http
            .get(self.url(&format!("/api/v1/sales/{sale_id}/orders/mine")))
            .bearer_auth(token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let body: Value = response.error_for_status()?.json().await?;
        let order_id = body["order_id"]
            .as_str()
            .context("no order id in the order")?;
        Ok(Some(order_id.parse()?))
    }

    /// The status of an order, asked as its owner.
    pub async fn order_status(
        &self,
        order_id: &OrderId,
        token: &str,
    ) -> anyhow::Result<OrderStatus> {
        let body: Value = self
            .http
            .get(self.url(&format!("/api/v1/orders/{order_id}")))
            .bearer_auth(token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        body["status"]
            .as_str()
            .and_then(OrderStatus::named)
            .context("no status in the order")
    }

    /// Pays an order as its owner (200 paid, 409 `order_expired` too late).
    pub async fn pay(&self, order_id: &OrderId, token: &str) -> Result<Answer, reqwest::Error> {
        let request = self
            .http
            .post(self.url(&format!("/api/v1/orders/{order_id}/payment")))
            .bearer_auth(token);
        answer(request).await
    }

    /// The body of any URL as text (a worker's `/metrics`).
    pub async fn text(&self, url: &str) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(url)
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// A read of the gateway's API, asked again while the gateway cannot answer, as a client
    /// polling a sale through a fault would: the proofs kill or pause what the gateway reads.
    async fn get(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        Ok(self
            .patiently(|| self.http.get(self.url(path)))
            .await?
            .error_for_status()?)
    }

    /// Sends what `request` builds, again while the gateway cannot answer (refused, timed
    /// out, 503), for up to [`PATIENCE`]: only for calls that are safe to repeat.
    async fn patiently(
        &self,
        request: impl Fn() -> reqwest::RequestBuilder,
    ) -> reqwest::Result<reqwest::Response> {
        let give_up_at = tokio::time::Instant::now() + PATIENCE;
        loop {
            let answer = request().send().await;
            if !transient(&answer) || tokio::time::Instant::now() > give_up_at {
                return answer;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// How long a call that is safe to repeat waits out a gateway that cannot answer: longer than
/// a gateway's restart or a Redis failover.
const PATIENCE: Duration = Duration::from_secs(30);
const RETRY_PAUSE: Duration = Duration::from_millis(250);

/// Whether `answer` says only that the gateway could not answer now.
fn transient(answer: &reqwest::Result<reqwest::Response>) -> bool {
    match answer {
        Ok(response) => response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
        Err(error) => error.is_connect() || error.is_timeout(),
    }
}

pub async fn answer(request: reqwest::RequestBuilder) -> Result<Answer, reqwest::Error> {
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    // Each field on its own: one that does not parse loses only itself.
    Ok(Answer {
        status,
        code: body["error"].as_str().and_then(|code| code.parse().ok()),
        order_id: body["order_id"].as_str().and_then(|id| id.parse().ok()),
    })
}
