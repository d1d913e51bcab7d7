//! The end-to-end proof: one flash crowd of 20,000 attempts by 5,000 buyers for 1,000 units
//! through the whole stack. One order worker is SIGKILLed as soon as orders are being written
//! and started again (it resumes from the committed offsets); a share of the winners pays, the
//! others let a short window pass, and latecomers buy the units that come back. Once settled,
//! every invariant is checked; then each worker must export its consumer lag, and every
//! process must stop cleanly (exit 0) on SIGTERM.

use std::time::Duration;

use clap::Args;
use shared::consumer::LAG_MESSAGES;
use tokio::sync::Mutex;

use crate::proof::faults::{Fault, Target};
use crate::proof::progress::Step;
use crate::proof::stack::{Role, Stopped};
use crate::proof::{Run, ServiceUrls, metrics};
use crate::report::Summary;
use crate::{Crowd, Lifecycle, Pacing, open_sale, prometheus};

#[derive(Args, Clone, Debug)]
pub struct E2e {
    #[command(flatten)]
    pub urls: ServiceUrls,

    /// Share of the winners who pay; the others let the window pass.
    #[arg(long, env = "E2E_PAY_RATIO", default_value_t = 0.7)]
    pub pay_ratio: f64,

    /// The sale's payment window: short, so the run sees orders expire and units sold again.
    #[arg(long, env = "E2E_PAYMENT_WINDOW_SECS", default_value_t = 5)]
    pub payment_window_secs: u32,
}

/// Runs the proof; its violations are the summary's.
pub async fn run(args: E2e) -> anyhow::Result<Summary> {
    let run = Run::new("e2e", args.urls)?;
    let namespace = run.namespace("sale");
    eprintln!("e2e: logs and records in {}", run.dir.display());
    let stack = Mutex::new(run.stack(&namespace, &[]));
    let sms_file = namespace.sms_file.display().to_string();
    stack
        .lock()
        .await
        .start_all([(Role::SmsWorker, vec![("SMS_FILE".into(), sms_file)])].into())
        .await?;

    let mut sale = open_sale(Some(namespace.name.parse()?), 1000, 1999);
    sale.payment_window_secs = args.payment_window_secs;
    let progress = run.progress(&namespace, &sale)?;
    let crowd = Crowd {
        scenario: "e2e",
        users: 5000,
        attempts_per_user: 4,
        sale,
        pacing: Pacing::new(None, 256),
        lifecycle: Some(Lifecycle {
            pay_ratio: args.pay_ratio,
            resale_rounds: 3,
        }),
        watched: Vec::new(),
    };
    let gateways = run.gateways()?;
    let probes = run.probes(&namespace, 0)?;
    // The restarted instance must resume from the offsets its predecessor committed.
    let kill = Fault::Kill {
        roles: vec![Role::OrderWorker(1)],
        down: Duration::from_secs(1),
    };
    let target = Target {
        stack: &stack,
        redis_url: run.redis_url(),
    };
    let fault = async {
        progress.reached(Step::OrdersWritten, 1).await?;
        kill.strike(&target).await
    };
    let (played, struck) = tokio::join!(crowd.play(&gateways), fault);
    let mut summary = played?.check(Some(&probes)).await?;
    if let Err(error) = struck {
        summary
            .violations
            .push(format!("the order worker was not killed: {error:#}"));
    }

    for worker in Role::WORKERS {
        // librdkafka reports lag every 5 s: a worker restarted moments ago may need one more.
        let reported = shared::poll::until(
            Duration::from_secs(15),
            Duration::from_millis(500),
            async || {
                let text = metrics(&worker.metrics_url()).await;
                prometheus::samples(&text, LAG_MESSAGES).next().map(|_| ())
            },
        )
        .await;
        if reported.is_none() {
            summary
                .violations
                .push(format!("{worker} exports no {LAG_MESSAGES}"));
        }
    }
    // Graceful shutdown: on SIGTERM every service finishes its batch, commits and exits 0.
    for (role, stopped) in stack.lock().await.stop().await {
        match stopped {
            Stopped::Exited(status) if status.success() => {}
            Stopped::Exited(status) => summary
                .violations
                .push(format!("{role} exited {status} after SIGTERM, not 0")),
            Stopped::Hung => summary
                .violations
                .push(format!("{role} had not stopped 15 s after SIGTERM")),
        }
    }
    let path = run.dir.join("summary.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&summary)?)?;
    Ok(summary)
}
