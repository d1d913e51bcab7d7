//! `flaky-sms-provider`: an SMS gateway that fails for a while, for the chaos proof (`loadtest chaos`).
//!
//! It accepts the SMS worker's HTTP provider calls (`POST /sms`, JSON `{idempotency_key, to,
//! text}`) and appends each accepted message, with the millisecond it arrived, as a JSON line
//! to `--file`, so the run can count exactly one message per order and measure the rate. Like
//! a real gateway it honours the idempotency key: a key it accepted before is answered 200 and
//! not delivered again, its line marked `"repeat":true` (the file provider's format). After
//! `--fail-after` accepted messages it fails for `--fail-for-secs`: every call stalls
//! `--stall-ms`, then answers 500. A message to a recipient containing `--refuse-to` is never
//! accepted: each call for it answers 500 at once and prints `refused <recipient>` on standard
//! output, so the run can count the attempts before the message is dead-lettered. Stops on
//! SIGINT or SIGTERM.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use clap::Parser;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

#[derive(Parser)]
#[command(name = "flaky-sms-provider")]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:18090")]
    listen: SocketAddr,
    /// File the accepted messages are appended to, one JSON line each.
    #[arg(long)]
    file: PathBuf,
    /// Accepted messages before the failure starts.
    #[arg(long, default_value_t = 50)]
    fail_after: u64,
    /// How long the failure lasts.
    #[arg(long, default_value_t = 5)]
    fail_for_secs: u64,
    /// How long each call stalls before it fails.
    #[arg(long, default_value_t = 500)]
    stall_ms: u64,
    /// Recipients containing this are refused, always.
    #[arg(long)]
    refuse_to: Option<String>,
}

struct Provider {
    args: Args,
    file: Mutex<tokio::fs::File>,
    /// The keys of the messages accepted.
    accepted: Mutex<HashSet<String>>,
    failing_since: Mutex<Option<Instant>>,
}

impl Provider {
    /// Whether this call falls in the failure window (which starts with the call after the
    /// `fail_after`-th accepted message).
    async fn failing(&self) -> bool {
        let accepted = self.accepted.lock().await.len() as u64;
        if accepted < self.args.fail_after {
            return false;
        }
        let mut since = self.failing_since.lock().await;
        let started = *since.get_or_insert_with(Instant::now);
        started.elapsed() < Duration::from_secs(self.args.fail_for_secs)
    }
}

async fn send(State(provider): State<Arc<Provider>>, Json(mut sms): Json<Value>) -> StatusCode {
    let recipient = sms["to"].as_str().unwrap_or_default();
    if let Some(refused) = &provider.args.refuse_to
        && recipient.contains(refused.as_str())
    {
        println!("refused {recipient}");
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    if provider.failing().await {
        tokio::time::sleep(Duration::from_millis(provider.args.stall_ms)).await;
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64);
    sms["at_ms"] = at_ms.into();
    let key = sms["idempotency_key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut accepted = provider.accepted.lock().await;
    let repeat = accepted.contains(&key);
    if repeat {
        sms["repeat"] = true.into();
    }
    let mut line = sms.to_string();
    line.push('\n');
    if provider
        .file
        .lock()
        .await
        .write_all(line.as_bytes())
        .await
        .is_err()
    {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    accepted.insert(key);
    StatusCode::OK
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.file)
        .await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let provider = Arc::new(Provider {
        args,
        file: Mutex::new(file),
        accepted: Mutex::default(),
        failing_since: Mutex::new(None),
    });
    let app = axum::Router::new()
        .route("/sms", post(send))
        .with_state(provider);
    let shutdown = shared::shutdown::on_signal();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}
