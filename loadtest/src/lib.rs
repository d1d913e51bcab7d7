//! The bundled load generator. It drives a scenario through the gateway's HTTP API, waits for
//! the asynchronous pipeline to settle, and checks DESIGN.md's invariants, so every run is
//! both a benchmark and a proof.
//!
//! | module | concern |
//! | --- | --- |
//! | [`api`] | the gateway calls a load test makes |
//! | [`drive`] | closed- and open-loop pacing, answers and latencies (HdrHistogram) |
//! | [`checks`] | settling, then the invariants against the API, PostgreSQL, Redis, the SMS file |
//! | [`report`] | the table and the JSON summary |

pub mod api;
pub mod checks;
pub mod drive;
pub mod report;

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use shared::sale::Sale;

use crate::api::Gateway;
use crate::checks::{CheckArgs, Expected};
use crate::drive::Pacing;
use crate::report::{Latency, Summary};

/// Drives a flash sale through the gateway, then proves the invariants (exit 1 if one fails).
#[derive(Parser, Debug)]
#[command(name = "loadtest", version)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Subcommand, Debug)]
pub enum Scenario {
    /// N users arrive within seconds for a small stock, each trying several times.
    FlashCrowd(FlashCrowd),
}

/// Where the gateway is, and how to act as its admin.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Base URL of the gateway.
    #[arg(
        long,
        env = "LOADTEST_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateway: String,

    /// Admin token of the gateway (creates the sale, mints user tokens).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Args, Clone, Debug)]
pub struct FlashCrowd {
    /// Distinct users in the crowd.
    #[arg(long, default_value_t = 5000)]
    pub users: usize,

    /// Units on sale.
    #[arg(long, default_value_t = 1000)]
    pub stock: u32,

    /// Purchase attempts per user (impatient users retry).
    #[arg(long, default_value_t = 4)]
    pub attempts_per_user: usize,

    /// Price of one unit, in cents.
    #[arg(long, default_value_t = 1999)]
    pub price_cents: i64,

    /// Id of the sale to create (default: a fresh random one).
    #[arg(long)]
    pub sale_id: Option<String>,

    /// Closed loop: requests kept in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,

    /// Open loop: requests started per second (overrides --concurrency).
    #[arg(long)]
    pub rate: Option<u32>,

    #[command(flatten)]
    pub target: Target,

    #[command(flatten)]
    pub checks: CheckArgs,
}

/// Runs the chosen scenario and returns its summary (violations included).
pub async fn run(cli: Cli) -> anyhow::Result<Summary> {
    match cli.scenario {
        Scenario::FlashCrowd(args) => flash_crowd(args).await,
    }
}

async fn flash_crowd(args: FlashCrowd) -> anyhow::Result<Summary> {
    let gateway = Arc::new(Gateway::new(
        &args.target.gateway,
        &args.target.admin_token,
    )?);
    let now = Utc::now();
    let sale = Sale {
        id: args.sale_id.clone().unwrap_or_else(|| {
            format!("flash-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
        }),
        name: "Flash crowd".into(),
        price_cents: args.price_cents,
        stock: args.stock,
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: now + chrono::Duration::hours(1),
    };
    gateway.create_sale(&sale).await?;
    let run_id = &sale.id;
    let users: Vec<String> = (0..args.users)
        .map(|i| format!("{run_id}-user-{i}"))
        .collect();
    eprintln!(
        "sale {} (stock {}); minting {} user tokens",
        sale.id,
        sale.stock,
        users.len()
    );
    let tokens = Arc::new(gateway.mint_tokens(&users).await?);

    // Round-robin over users: every user's first try comes before anyone's second.
    let plan: Vec<usize> = (0..args.attempts_per_user)
        .flat_map(|_| 0..args.users)
        .collect();
    let pacing = match args.rate {
        Some(rate_per_sec) => Pacing::Open { rate_per_sec },
        None => Pacing::Closed {
            concurrency: args.concurrency,
        },
    };
    eprintln!("the crowd arrives: {} attempts, {pacing:?}", plan.len());
    let outcome = drive::drive(
        Arc::clone(&gateway),
        sale.id.as_str().into(),
        Arc::clone(&tokens),
        plan,
        pacing,
    )
    .await;

    eprintln!("waiting for the pipeline to settle");
    let expected = Expected {
        sale_id: &sale.id,
        stock: u64::from(sale.stock),
        demand: args.users as u64,
        accepted: &outcome.holdings,
        tokens: &tokens,
    };
    let observed = checks::settle(&gateway, &args.checks, &expected).await?;
    let violations = checks::violations(&expected, &observed);
    let summary = Summary::new(
        "flash-crowd",
        &sale.id,
        outcome.holdings.len() as u64,
        outcome.answers,
        outcome.elapsed.as_secs_f64(),
        Latency::from_histogram(&outcome.latency_us),
        &observed,
        violations,
    );
    if let Some(path) = &args.target.json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)?;
    }
    Ok(summary)
}
