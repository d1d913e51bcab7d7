//! The embedded deployment: the backends, built once and shared by every service of the
//! process, and each service's configuration, built in code from its defaults (a renamed
//! setting fails to compile here).
//!
//! | concern | embedded backend | what production uses instead |
//! | --- | --- | --- |
//! | stock ledger, statistics, blacklist, leases, SMS records | in this process's memory | Redis |
//! | event bus | librdkafka's mock cluster: the Kafka protocol in-process | Kafka |
//! | order table | SQLite, `<data dir>/orders.db` | PostgreSQL |
//! | SMS provider | `<data dir>/sms.jsonl` | an HTTP provider |
//! | payment provider | the simulated one, its books in `<data dir>/payments.jsonl` | a real provider |

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use order_worker::store::{DatabaseSettings, OrderStore};
use shared::backends::Backends;
use shared::config::{KafkaArgs, Secret, defaults};
use shared::kafka::EventBus;
use shared::payment::PaymentArgs;

use crate::services::Stack;

/// Where the embedded services keep their state, and the secrets they share.
pub struct Embedded {
    pub backends: Backends,
    pub bus: EventBus,
    pub orders: Arc<dyn OrderStore>,
    pub database_url: String,
    pub sms_file: PathBuf,
    pub sms_rate_per_sec: NonZeroU32,
    /// The simulated payment provider's books.
    pub payments: PaymentArgs,
    pub admin_token: Secret,
    jwt_secret: Secret,
}

impl Embedded {
    /// Fresh in-process stores and bus, the order table and the SMS file under `data_dir`,
    /// and fresh secrets (tokens from an earlier run do not work in this one).
    pub fn start(data_dir: &Path, sms_rate_per_sec: NonZeroU32) -> anyhow::Result<Self> {
        let secret = || {
            Secret::new(format!(
                "{}{}",
                uuid::Uuid::new_v4().simple(),
                uuid::Uuid::new_v4().simple()
            ))
        };
        let database_url = format!("sqlite:{}", data_dir.join("orders.db").display());
        let database = DatabaseSettings {
            max_connections: NonZeroU32::new(8).expect("8 > 0"),
            ..DatabaseSettings::default()
        };
        let orders = order_worker::store::open(&database_url, database)?;
        Ok(Self {
            backends: Backends::in_memory(),
            bus: EventBus::embedded(&defaults::<KafkaArgs>())?,
            orders,
            database_url,
            sms_file: data_dir.join("sms.jsonl"),
            sms_rate_per_sec,
            payments: PaymentArgs {
                payments_file: data_dir.join("payments.jsonl"),
                payments_simulated_latency_ms: 0,
            },
            admin_token: secret(),
            jwt_secret: secret(),
        })
    }

    /// The services on these backends, each configured for the demo.
    pub fn stack(&self, listen: SocketAddr) -> Stack {
        Stack {
            backends: self.backends.clone(),
            bus: self.bus.clone(),
            orders: self.orders.clone(),
            payments: self.payments.provider(),
            gateway: self.gateway(listen),
            order_worker: self.order_worker(),
            sms_worker: self.sms_worker(),
            stats_worker: defaults(),
            points_worker: defaults(),
        }
    }

    fn gateway(&self, listen: SocketAddr) -> gateway::Config {
        let mut config: gateway::Config = defaults();
        config.listen_addr = listen;
        config.jwt_secret = self.jwt_secret.clone();
        config.admin_token = self.admin_token.clone();
        // A demo: the buyer's page signs in by name (there is no login service), and the
        // gateway says so at start-up.
        config.demo = true;
        config
    }

    fn order_worker(&self) -> order_worker::Config {
        let mut config: order_worker::Config = defaults();
        config.database_url.clone_from(&self.database_url);
        // The reconciler's quicker beat suits a demo that settles in seconds.
        config.reconcile_min_age_ms = 3000;
        // Unpaid orders of the demo's short payment window expire within half a second.
        config.reconcile_interval_ms = std::num::NonZeroU64::new(500).expect("500 > 0");
        config
    }

    fn sms_worker(&self) -> sms_worker::Config {
        let mut config: sms_worker::Config = defaults();
        config.sms_provider = sms_worker::ProviderKind::File;
        config.sms_file = Some(self.sms_file.clone());
        config.sms_rate_per_sec = self.sms_rate_per_sec;
        config
    }
}
