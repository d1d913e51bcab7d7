//! The `abuse` scenario: a few bots try every trick at once. Every trick must be refused with
//! a clear 4xx (never a 5xx, never a dropped connection), and each bot may hold at most the
//! one unit an honest buyer could.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use serde::Serialize;
use serde_json::json;
use shared::ids::OrderId;

use crate::Target;
use crate::api::{Answer, Gateway, answer};

#[derive(Args, Clone, Debug)]
pub struct Abuse {
    /// Bots hammering the gateway.
    #[arg(long, default_value_t = 5)]
    pub bots: usize,

    /// Requests each bot sends.
    #[arg(long, default_value_t = 400)]
    pub requests_per_bot: usize,

    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// The gateway's JWT secret, to mint genuinely expired tokens (otherwise expired tokens
    /// are signed with a wrong key and test the same refusal as forged ones).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    #[command(flatten)]
    pub target: Target,
}

/// The tricks, sent round-robin by every bot.
#[derive(Clone, Copy, Debug)]
enum Trick {
    /// The bot's own valid token, again and again: one 202, then 409 or 429.
    Duplicate,
    NoToken,
    ForgedToken,
    ExpiredToken,
    MalformedBody,
    UnknownField,
    HugeBody,
    UnknownSale,
    WrongMethod,
}

const TRICKS: [Trick; 9] = [
    Trick::Duplicate,
    Trick::NoToken,
    Trick::ForgedToken,
    Trick::ExpiredToken,
    Trick::MalformedBody,
    Trick::UnknownField,
    Trick::HugeBody,
    Trick::UnknownSale,
    Trick::WrongMethod,
];

#[derive(Debug, Serialize)]
pub struct AbuseSummary {
    pub scenario: &'static str,
    pub sale_id: String,
    pub attempts: u64,
    pub accepted: u64,
    /// Answers by trick, then by `status error_code`.
    pub answers: BTreeMap<String, BTreeMap<String, u64>>,
    pub server_errors: u64,
    pub elapsed_secs: f64,
    pub violations: Vec<String>,
}

impl AbuseSummary {
    pub fn print(&self) {
        println!("\n== abuse on sale {}", self.sale_id);
        println!("{:<16} {:<32} {:>8}", "trick", "answer", "count");
        for (trick, answers) in &self.answers {
            for (answer, count) in answers {
                println!("{trick:<16} {answer:<32} {count:>8}");
            }
        }
        println!(
            "\n{} attempts in {:.2} s; {} accepted; {} server errors",
            self.attempts, self.elapsed_secs, self.accepted, self.server_errors
        );
        if self.violations.is_empty() {
            println!("every trick was refused cleanly");
        } else {
            println!("VIOLATIONS:");
            for violation in &self.violations {
                println!("  - {violation}");
            }
        }
    }
}

pub async fn abuse(args: Abuse) -> anyhow::Result<AbuseSummary> {
    let url = args
        .target
        .gateways
        .first()
        .context("no gateway to try the tricks on")?;
    let gateway = Arc::new(Gateway::new(url, &args.target.admin_token)?);
    let sale = crate::open_sale(None, (args.bots * 10) as u32, 1999);
    gateway.create_sale(&sale).await?;
    let bots: Vec<String> = (0..args.bots)
        .map(|i| format!("{}-bot-{i}", sale.id))
        .collect();
    let tokens = gateway.mint_tokens(&bots).await?;
    // The claims of a token the gateway minted (its issuer and audience), issued long ago:
    // a token refused for its age alone.
    let mut claims: serde_json::Value =
        jsonwebtoken::dangerous::insecure_decode_claims(tokens.first().context("no bots")?)
            .context("the gateway minted a token without JSON claims")?;
    claims["sub"] = json!("bot");
    claims["iat"] = json!(now() - 1200);
    claims["exp"] = json!(now() - 600);
    let expired = sign(
        &claims,
        args.jwt_secret
            .as_deref()
            .unwrap_or("not-the-secret-not-the-secret-00"),
    );
    claims["iat"] = json!(now());
    claims["exp"] = json!(now() + 600);
    let forged = sign(&claims, "not-the-secret-not-the-secret-00");

    let plan: Vec<(usize, Trick)> = (0..args.requests_per_bot)
        .flat_map(|i| (0..args.bots).map(move |bot| (bot, TRICKS[i % TRICKS.len()])))
        .collect();
    let started = Instant::now();
    let results: Vec<Sample> = futures::stream::iter(plan)
        .map(|(bot, trick)| {
            let request = build(
                &gateway,
                sale.id.as_str(),
                trick,
                &tokens[bot],
                &forged,
                &expired,
            );
            async move { (bot, trick, answer(request).await.ok()) }
        })
        .buffer_unordered(args.concurrency.max(1))
        .collect()
        .await;
    Ok(tally(
        &results,
        args.bots,
        sale.id.to_string(),
        started.elapsed().as_secs_f64(),
    ))
}

/// A bot, its trick, and the answer (`None`: no HTTP answer at all).
type Sample = (usize, Trick, Option<Answer>);

fn tally(results: &[Sample], bots: usize, sale_id: String, elapsed_secs: f64) -> AbuseSummary {
    let mut answers: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut orders_by_bot: HashMap<usize, HashSet<&OrderId>> = HashMap::new();
    let (mut server_errors, mut transport_errors, mut accepted) = (0, 0, 0);
    for (bot, trick, answer) in results {
        let label = if let Some(answer) = answer {
            server_errors += u64::from(answer.status >= 500);
            accepted += u64::from(answer.status == 202);
            if let Some(order) = &answer.order_id {
                orders_by_bot.entry(*bot).or_default().insert(order);
            }
            answer.label()
        } else {
            transport_errors += 1;
            "connection error".into()
        };
        *answers
            .entry(format!("{trick:?}"))
            .or_default()
            .entry(label)
            .or_insert(0) += 1;
    }
    let mut violations = Vec::new();
    if server_errors > 0 {
        violations.push(format!("{server_errors} answers were 5xx"));
    }
    if transport_errors > 0 {
        violations.push(format!("{transport_errors} requests got no HTTP answer"));
    }
    if accepted > bots as u64 {
        violations.push(format!("{accepted} purchases accepted for {bots} bots"));
    }
    let greedy = orders_by_bot
        .values()
        .filter(|orders| orders.len() > 1)
        .count();
    if greedy > 0 {
        violations.push(format!("{greedy} bots hold more than one order"));
    }
    AbuseSummary {
        scenario: "abuse",
        sale_id,
        attempts: results.len() as u64,
        accepted,
        answers,
        server_errors,
        elapsed_secs,
        violations,
    }
}

fn build(
    gateway: &Gateway,
    sale_id: &str,
    trick: Trick,
    token: &str,
    forged: &str,
    expired: &str,
) -> reqwest::RequestBuilder {
    // A fresh connection per request: a refused request may legitimately end its connection
    // (a 413 leaves the body unread), and each answer must be attributable to its own trick.
    let http = &single_use_client();
    let orders = gateway.url(&format!("/api/v1/sales/{sale_id}/orders"));
    match trick {
        Trick::Duplicate => http.post(orders).bearer_auth(token),
        Trick::NoToken => http.post(orders),
        Trick::ForgedToken => http.post(orders).bearer_auth(forged),
        Trick::ExpiredToken => http.post(orders).bearer_auth(expired),
        Trick::MalformedBody => http.post(orders).bearer_auth(token).body("{\"quantity\":"),
        Trick::UnknownField => http
            .post(orders)
            .bearer_auth(token)
            .body(r#"{"coupon":"FREE"}"#),
        Trick::HugeBody => http
            .post(orders)
            .bearer_auth(token)
            .body("x".repeat(1 << 20)),
        Trick::UnknownSale => http
            .post(gateway.url("/api/v1/sales/no-such-sale/orders"))
            .bearer_auth(token),
        Trick::WrongMethod => http.delete(orders).bearer_auth(token),
    }
}

fn single_use_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client without TLS always builds")
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing does not fail")
}
