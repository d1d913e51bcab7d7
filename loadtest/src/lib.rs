//! The bundled load generator. It drives a scenario through the gateway's HTTP API, waits for
//! the asynchronous pipeline to settle, and checks the invariants of `docs/architecture.md`,
//! so every run is both a benchmark and a proof.
//!
//! [`run`] is the command line; [`Crowd::run`] is the same crowd for code that starts the
//! services itself (the all-in-one runner hands it the stores to check through [`Probes`]).
//!
//! | module | concern |
//! | --- | --- |
//! | [`api`] | the gateway calls a load test makes, apart from the crowd's attempts |
//! | [`abuse`] | the abuse scenario: every trick refused cleanly |
//! | [`drive`] | closed- and open-loop pacing, answers and latencies (HdrHistogram) |
//! | [`connection`] | the attempts' hot path: prepared requests on keep-alive connections |
//! | [`cpu`] | CPU time per process while the attempts run (the generator's and `--cpu-of`) |
//! | [`lifecycle`] | after buying: a share pays, the rest expire, latecomers buy the returned units |
//! | [`checks`] | settling, then the invariants against the API, PostgreSQL, Redis, the SMS file, the payment books |
//! | [`oversell`] | invariant 1 over time: the units surely held at each instant, at most the stock |
//! | [`money`] | invariant 8 from the payment provider's books: every charge ended paid or refunded |
//! | [`prometheus`] | the services' metrics read by the name constants they export |
//! | [`proof`] | the real services as processes, faults struck, every sale checked: e2e, chaos, nemesis |
//! | [`report`] | the table and the JSON summary |
//! | [`bench`] | the benchmark: rates and CPU per request per process against their ceilings |

pub mod abuse;
pub mod api;
pub mod bench;
pub mod checks;
pub mod connection;
pub mod cpu;
pub mod drive;
pub mod lifecycle;
pub mod money;
pub mod oversell;
pub mod prometheus;
pub mod proof;
pub mod report;

use std::path::PathBuf;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Parser, Subcommand};
use shared::ids::SaleId;
use shared::sale::Sale;

use crate::api::Gateway;
pub use crate::checks::Probes;
use crate::checks::{CheckArgs, Expected, Verdict};
use crate::connection::Prepared;
use crate::cpu::Watched;
pub use crate::drive::Pacing;
use crate::drive::{Holding, Outcome, Told};
use crate::lifecycle::Fates;
pub use crate::lifecycle::Lifecycle;
use crate::report::Summary;

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
    /// A sustained arrival rate for a duration, one attempt per user (open loop).
    Steady(Steady),
    /// A few bots try every trick; all must be refused cleanly.
    Abuse(abuse::Abuse),
    /// POSTs to any URL, measuring only (the benchmark's HTTP ceiling).
    Hammer(Hammer),
    /// The end-to-end proof: the real services as processes, one crowd, an order worker killed.
    E2e(proof::e2e::E2e),
    /// The fault table, one fault at a time, each against its own crowd.
    Chaos(proof::chaos::Chaos),
    /// Faults drawn from a seed, overlapping, while sale after sale plays its whole life.
    Nemesis(proof::nemesis::Nemesis),
    /// The benchmark: the stack's rates and CPU per request per process against its ceilings.
    Bench(bench::Bench),
    /// Flamegraphs of the gateway under the benchmark's purchase and sold-out crowds.
    Profile(bench::profile::Profile),
}

/// Where the gateway is, and how to act as its admin.
#[derive(Args, Clone, Debug)]
pub struct Target {
    /// Base URL of the gateway; repeat it (or separate with commas) for several gateways of
    /// one deployment: purchases go round-robin over them, the first also creates the sale and
    /// answers the checks.
    #[arg(
        long = "gateway",
        env = "LOADTEST_GATEWAY_URL",
        hide_env_values = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    pub gateways: Vec<String>,

    /// Admin token of the gateway (creates the sale, mints user tokens).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: String,

    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Report this process's CPU time per attempt too, as `name=pid` (repeatable): the
    /// benchmark's CPU per request per server, measured over the attempts alone.
    #[arg(long = "cpu-of")]
    pub cpu_of: Vec<Watched>,
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
    pub sale_id: Option<SaleId>,

    /// Closed loop: requests kept in flight.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,

    /// Open loop: requests started per second, over --concurrency connections.
    #[arg(long)]
    pub rate: Option<u32>,

    /// Share of the winners who pay (0 to 1); the rest let the payment window pass, their
    /// units come back and latecomers buy them. Without it nobody pays and orders stay
    /// `created`.
    #[arg(long)]
    pub pay_ratio: Option<f64>,

    /// The sale's payment window: a few seconds lets a run see orders expire.
    #[arg(long, default_value_t = shared::sale::DEFAULT_PAYMENT_WINDOW_SECS)]
    pub payment_window_secs: u32,

    /// Rounds of latecomers buying returned units (with --pay-ratio).
    #[arg(long, default_value_t = 3)]
    pub resale_rounds: usize,

    #[command(flatten)]
    pub target: Target,

    #[command(flatten)]
    pub checks: CheckArgs,
}

#[derive(Args, Clone, Debug)]
pub struct Steady {
    /// Purchase attempts started per second.
    #[arg(long, default_value_t = 1000)]
    pub rate: u32,

    /// How long the rate is held.
    #[arg(long, default_value_t = 10)]
    pub duration_secs: u32,

    /// Connections the attempts share: at most this many in flight, so more than the rate
    /// times the worst latency expected.
    #[arg(long, default_value_t = 256)]
    pub connections: usize,

    /// Units on sale (default: one per attempt, so every attempt takes the full purchase path).
    #[arg(long)]
    pub stock: Option<u32>,

    #[command(flatten)]
    pub target: Target,

    #[command(flatten)]
    pub checks: CheckArgs,
}

#[derive(Args, Clone, Debug)]
pub struct Hammer {
    /// URL to POST to.
    #[arg(long)]
    pub url: String,

    /// Requests to send.
    #[arg(long, default_value_t = 40_000)]
    pub requests: usize,

    /// Closed loop: requests kept in flight; with --rate, the connections they share.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,

    /// Open loop: requests started per second (the latency floor of a server at that rate).
    #[arg(long)]
    pub rate: Option<u32>,

    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,

    /// Report this process's CPU time per request too, as `name=pid` (repeatable).
    #[arg(long = "cpu-of")]
    pub cpu_of: Vec<Watched>,
}

/// What a run prints and writes.
pub enum Report {
    Crowd(Box<Summary>),
    Abuse(abuse::AbuseSummary),
    Proof(Box<proof::Record>),
    Bench(Box<bench::report::BenchReport>),
    /// Files a run wrote (the profile's flamegraphs).
    Written(Vec<PathBuf>),
}

impl Report {
    pub fn print(&self) {
        match self {
            Self::Crowd(summary) => summary.print(),
            Self::Abuse(summary) => summary.print(),
            Self::Proof(record) => record.print(),
            Self::Bench(report) => report.print(),
            Self::Written(paths) => {
                for path in paths {
                    println!("{} written", path.display());
                }
            }
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            Self::Crowd(summary) => serde_json::to_string(summary),
            Self::Abuse(summary) => serde_json::to_string(summary),
            Self::Proof(record) => serde_json::to_string(record),
            Self::Bench(report) => serde_json::to_string(report),
            Self::Written(paths) => serde_json::to_string(paths),
        }
        .expect("a summary always serialises")
    }

    pub fn violations(&self) -> &[String] {
        match self {
            Self::Crowd(summary) => &summary.violations,
            Self::Abuse(summary) => &summary.violations,
            Self::Proof(record) => &record.violations,
            // A benchmark reports; it never fails.
            Self::Bench(_) | Self::Written(_) => &[],
        }
    }
}

/// Runs the chosen scenario; writes `--json` if asked.
pub async fn run(cli: Cli) -> anyhow::Result<Report> {
    let (report, json_path) = match cli.scenario {
        Scenario::FlashCrowd(args) => {
            if let Some(ratio) = args.pay_ratio {
                anyhow::ensure!(
                    (0.0..=1.0).contains(&ratio),
                    "--pay-ratio must be between 0 and 1, not {ratio}"
                );
            }
            let mut sale = open_sale(args.sale_id, args.stock, args.price_cents);
            sale.payment_window_secs = args.payment_window_secs;
            let crowd = Crowd {
                scenario: "flash-crowd",
                users: args.users,
                attempts_per_user: args.attempts_per_user,
                sale,
                pacing: Pacing::new(args.rate, args.concurrency),
                lifecycle: args.pay_ratio.map(|pay_ratio| Lifecycle {
                    pay_ratio,
                    resale_rounds: args.resale_rounds,
                }),
                watched: args.target.cpu_of.clone(),
            };
            (
                Report::Crowd(Box::new(
                    crowd.run_against(&args.target, &args.checks).await?,
                )),
                args.target.json,
            )
        }
        Scenario::Steady(args) => {
            let attempts = (args.rate as usize) * (args.duration_secs as usize);
            let stock = args.stock.unwrap_or(u32::try_from(attempts)?);
            let crowd = Crowd {
                scenario: "steady",
                users: attempts,
                attempts_per_user: 1,
                sale: open_sale(None, stock, 1999),
                pacing: Pacing::Open {
                    rate_per_sec: args.rate,
                    connections: args.connections,
                },
                lifecycle: None,
                watched: args.target.cpu_of.clone(),
            };
            (
                Report::Crowd(Box::new(
                    crowd.run_against(&args.target, &args.checks).await?,
                )),
                args.target.json,
            )
        }
        Scenario::Hammer(args) => {
            let pacing = Pacing::new(args.rate, args.concurrency);
            let summary = hammer(&args.url, args.requests, pacing, &args.cpu_of).await?;
            (Report::Crowd(Box::new(summary)), args.json)
        }
        Scenario::Abuse(args) => {
            let json = args.target.json.clone();
            (Report::Abuse(abuse::abuse(args).await?), json)
        }
        Scenario::E2e(args) => (Report::Crowd(Box::new(proof::e2e::run(args).await?)), None),
        Scenario::Chaos(args) => (
            Report::Proof(Box::new(proof::chaos::run(args).await?)),
            None,
        ),
        Scenario::Bench(args) => (Report::Bench(Box::new(bench::run(args).await?)), None),
        Scenario::Profile(args) => (Report::Written(bench::profile::run(args).await?), None),
        Scenario::Nemesis(args) => {
            let record = proof::nemesis::run(args).await?;
            (Report::Proof(Box::new(record)), None)
        }
    };
    if let Some(path) = json_path {
        std::fs::write(path, report.to_json())?;
    }
    Ok(report)
}

/// `requests` POSTs to `url`, measured only: the HTTP ceiling a server of the same stack as
/// the gateway reaches.
pub async fn hammer(
    url: &str,
    requests: usize,
    pacing: Pacing,
    watched: &[Watched],
) -> anyhow::Result<Summary> {
    let prepared = Prepared::to_url("POST", url)?;
    let outcome = drive::drive(vec![0; requests], pacing, prepared, watched).await;
    let verdict = Verdict::unchecked("hammer measures only");
    let target = shared::redact::url(url);
    Ok(Summary::new(
        "hammer", &target, &outcome, None, None, verdict,
    ))
}

/// A sale open from a second ago for an hour.
pub fn open_sale(id: Option<SaleId>, stock: u32, price_cents: i64) -> Sale {
    let now = Utc::now();
    Sale {
        id: id.unwrap_or_else(|| {
            format!("load-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
                .parse()
                .expect("a valid sale id")
        }),
        name: "Load test".into(),
        price_cents,
        stock,
        starts_at: now - chrono::Duration::seconds(1),
        ends_at: now + chrono::Duration::hours(1),
        payment_window_secs: shared::sale::DEFAULT_PAYMENT_WINDOW_SECS,
    }
}

/// Asks each of the `unsure` buyers which order they hold in the sale, the way a client that
/// lost its answer finds out; retried while the gateways do not answer (one may be restarting).
/// Their locks came after `round_start`.
async fn follow_up(
    gateways: &[Gateway],
    sale_id: &str,
    tokens: &[String],
    unsure: &[usize],
    round_start: std::time::Instant,
) -> anyhow::Result<Vec<Holding>> {
    let mut found = Vec::new();
    for (i, &user) in unsure.iter().enumerate() {
        let mut tries = 0;
        let holding = loop {
            let gateway = &gateways[(i + tries) % gateways.len()];
            match gateway.my_order(sale_id, &tokens[user]).await {
                Ok(holding) => break holding,
                Err(error) if tries < 60 => {
                    tries += 1;
                    tracing::debug!(%error, user, "asking again in a second");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
                Err(error) => return Err(error.context("no gateway told a buyer what it holds")),
            }
        };
        found.extend(holding.map(|order_id| Holding {
            user,
            order_id,
            told: Told::AskedAfterwards,
            locked_after: round_start,
            known_at: std::time::Instant::now(),
        }));
    }
    Ok(found)
}

/// A crowd of users buying from one sale.
pub struct Crowd {
    /// The name the report gives the run.
    pub scenario: &'static str,
    pub users: usize,
    pub attempts_per_user: usize,
    /// The sale the crowd creates, then buys from.
    pub sale: Sale,
    pub pacing: Pacing,
    /// What winners do after buying; `None`: nothing (orders stay `created`).
    pub lifecycle: Option<Lifecycle>,
    /// Servers whose CPU time per attempt the report gives beside the generator's own.
    pub watched: Vec<Watched>,
}

/// Users of a run, their tokens, and the gateways they buy from.
pub(crate) struct Buyers<'a> {
    gateways: &'a [Gateway],
    sale_id: String,
    watched: &'a [Watched],
    pub(crate) tokens: Vec<String>,
    /// The gateway that created the sale and answers the checks.
    pub(crate) first: &'a Gateway,
}

impl Buyers<'_> {
    /// Mints tokens for `count` more users; returns their indices.
    pub(crate) async fn join(&mut self, count: usize) -> anyhow::Result<std::ops::Range<usize>> {
        let start = self.tokens.len();
        let user_ids: Vec<String> = (start..start + count)
            .map(|i| format!("{}-user-{i}", self.sale_id))
            .collect();
        self.tokens.extend(self.first.mint_tokens(&user_ids).await?);
        Ok(start..start + count)
    }

    /// Sends the attempts of `plan` (user indices) round-robin over the gateways, then asks
    /// again where an answer was lost.
    pub(crate) async fn attempt(
        &self,
        plan: Vec<usize>,
        pacing: Pacing,
    ) -> anyhow::Result<Outcome> {
        let bases: Vec<String> = self.gateways.iter().map(|g| g.base().to_owned()).collect();
        let path = format!("/api/v1/sales/{}/orders", self.sale_id);
        let prepared = Prepared::new("POST", &bases, &path, &self.tokens)?;
        let mut outcome = drive::drive(plan, pacing, prepared, self.watched).await;
        if !outcome.unsure.is_empty() {
            eprintln!(
                "{} buyers had an answer lost, or were told nothing was locked; asking which orders they hold",
                outcome.unsure.len()
            );
            let found = follow_up(
                self.gateways,
                &self.sale_id,
                &self.tokens,
                &outcome.unsure,
                outcome.started,
            )
            .await?;
            outcome.holdings.extend(found);
        }
        Ok(outcome)
    }
}

impl Crowd {
    /// The crowd against the gateways `target` names, checked through the probes `checks`
    /// names.
    async fn run_against(self, target: &Target, checks: &CheckArgs) -> anyhow::Result<Summary> {
        let gateways = target
            .gateways
            .iter()
            .map(|url| Gateway::new(url, &target.admin_token))
            .collect::<anyhow::Result<Vec<_>>>()?;
        self.run(&gateways, Probes::open(checks)?.as_ref()).await
    }

    /// Creates the sale through the first of `gateways`, sends the crowd at all of them
    /// round-robin, asks again where an answer was lost; with a lifecycle, pays for a share of
    /// the orders and sends latecomers for the units that come back; then (with probes) waits
    /// for the pipeline to settle and checks the invariants.
    pub async fn run(
        self,
        gateways: &[Gateway],
        probes: Option<&Probes>,
    ) -> anyhow::Result<Summary> {
        self.play(gateways).await?.check(probes).await
    }

    /// The crowd's part of [`Crowd::run`]: the sale created, the attempts made, the payments
    /// and resale rounds played; nothing checked yet. A proof that strikes faults meanwhile
    /// checks only once it has healed them.
    pub async fn play(self, gateways: &[Gateway]) -> anyhow::Result<Played> {
        let gateway = gateways
            .first()
            .context("no gateway to send the crowd at")?;
        let Self {
            scenario,
            users,
            attempts_per_user,
            sale,
            pacing,
            lifecycle,
            watched,
        } = self;
        gateway.create_sale(&sale).await?;
        eprintln!(
            "sale {} (stock {}); minting {} user tokens",
            sale.id, sale.stock, users
        );
        let mut buyers = Buyers {
            gateways,
            sale_id: sale.id.to_string(),
            watched: &watched,
            tokens: Vec::new(),
            first: gateway,
        };
        let crowd = buyers.join(users).await?;

        // Round-robin over users: every user's first try comes before anyone's second.
        let plan: Vec<usize> = (0..attempts_per_user).flat_map(|_| crowd.clone()).collect();
        eprintln!("the crowd arrives: {} attempts, {pacing:?}", plan.len());
        let mut outcome = buyers.attempt(plan, pacing).await?;

        let fates = match lifecycle {
            Some(lifecycle) => {
                Some(lifecycle::live_on(lifecycle, &mut buyers, &sale, pacing, &mut outcome).await?)
            }
            None => None,
        };
        // The shortest window any order of the run had: windows close at the sale's end, so
        // one locked now has the least left (an order expired no sooner than this after its
        // lock).
        let now = chrono::Utc::now();
        let shortest_window = (sale.pay_by(now) - now).to_std().unwrap_or_default();
        Ok(Played {
            scenario,
            gateway: gateway.clone(),
            sale,
            demand: users,
            shortest_window,
            tokens: buyers.tokens,
            outcome,
            fates,
        })
    }
}

/// A crowd that has played its part, and what it was told: the record the checks hold the
/// system's state against.
pub struct Played {
    scenario: &'static str,
    /// The gateway that created the sale and answers the checks.
    gateway: Gateway,
    sale: Sale,
    /// Distinct users of the first crowd.
    demand: usize,
    shortest_window: std::time::Duration,
    tokens: Vec<String>,
    outcome: Outcome,
    /// With a lifecycle: each order's fate and the resale rounds.
    fates: Option<Fates>,
}

impl Played {
    /// When the crowd's attempts were being sent: the first crowd's, then each resale round's.
    pub fn sending(&self) -> &[std::ops::Range<std::time::Instant>] {
        &self.outcome.sending
    }

    /// With probes: waits for the pipeline to settle and checks the invariants against what
    /// the crowd was told; without: the measurements alone.
    pub async fn check(self, probes: Option<&Probes>) -> anyhow::Result<Summary> {
        let Self {
            scenario,
            gateway,
            sale,
            demand,
            shortest_window,
            tokens,
            outcome,
            fates,
        } = self;
        let expected = Expected {
            sale_id: &sale.id,
            stock: u64::from(sale.stock),
            payment_window: shortest_window,
            demand: demand as u64,
            holdings: &outcome.holdings,
            promised_nothing_locked: &outcome.promised_nothing_locked,
            started: outcome.started,
            tokens: &tokens,
            fates: fates.as_ref(),
            sms_repeats_allowed: probes.map_or(0, |probes| probes.sms_repeats_allowed),
            faults_while_buying: probes.is_some_and(|probes| probes.faults_while_buying),
        };
        let observed = match probes {
            Some(probes) => {
                eprintln!("waiting for the pipeline of sale {} to settle", sale.id);
                Some(checks::settle(&gateway, probes, &expected).await?)
            }
            None => None,
        };
        let verdict = match &observed {
            Some(observed) => checks::verdict(&expected, observed),
            None => Verdict::unchecked("--skip-checks: measuring only"),
        };
        Ok(Summary::new(
            scenario,
            sale.id.as_str(),
            &outcome,
            observed.as_ref(),
            fates.as_ref(),
            verdict,
        ))
    }
}
