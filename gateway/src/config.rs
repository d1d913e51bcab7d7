//! Everything the gateway can be told, as flags or environment variables (`--help` lists them).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use clap::Parser;
use shared::config::{KafkaArgs, RedisArgs, Secret, TelemetryArgs};
use shared::payment::PaymentArgs;

/// Shortest accepted HS256 secret: the key should be as long as the hash.
const MIN_SECRET_BYTES: usize = 32;

/// How long a purchase whose stock-lock answer was lost keeps asking the ledger what happened
/// (`routes/purchase.rs`).
pub const LOST_ANSWER_PATIENCE: Duration = Duration::from_secs(1);

/// The pause between two questions of a purchase whose stock-lock answer was lost.
pub const LOST_ANSWER_RETRY: Duration = Duration::from_millis(50);

/// Redis calls on a purchase's longest path, each bounded by `REDIS_TIMEOUT_MS`: the sale (a
/// catalog miss), the clock reading, the stock lock; its answer lost, the last question for
/// the buyer's entry (begun at most [`LOST_ANSWER_PATIENCE`] plus [`LOST_ANSWER_RETRY`]
/// later), then the stock left.
const REDIS_CALLS_OF_A_LOST_ANSWER: u32 = 5;

/// The seckill gateway: risk control and the atomic stock lock, answered at once; the rest of
/// the purchase goes to Kafka.
#[derive(Parser, Clone, Debug)]
#[command(name = "gateway", version)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "GATEWAY_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// HS256 secret that users' JWTs are signed with (at least 32 bytes).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,

    /// Bearer token of the admin API (at least 32 bytes).
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "")]
    pub admin_token: Secret,

    /// Audience (`aud`) the login service writes into users' tokens; when set, a token for any
    /// other audience, or none, is refused. Unset: `aud` is not checked.
    #[arg(long, env = "JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Lifetime of the user tokens minted by `POST /api/v1/admin/tokens`.
    #[arg(long, env = "TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// API requests per second across all clients; 0 disables the limit.
    #[arg(long, env = "RATE_LIMIT_GLOBAL_PER_SEC", default_value_t = 100_000)]
    pub rate_limit_global_per_sec: u32,

    /// Purchase attempts per second of one user (also the burst); 0 disables the limit.
    #[arg(long, env = "RATE_LIMIT_USER_PER_SEC", default_value_t = 5)]
    pub rate_limit_user_per_sec: u32,

    /// API requests per second from one client IP; 0 (the default) disables the limit,
    /// because behind a load balancer every request shares a few addresses.
    #[arg(long, env = "RATE_LIMIT_IP_PER_SEC", default_value_t = 0)]
    pub rate_limit_ip_per_sec: u32,

    /// Requests served at once; beyond it requests are shed with 503 at once, not queued.
    #[arg(long, env = "CONCURRENCY_LIMIT", default_value_t = NonZeroUsize::new(4096).expect("4096 > 0"))]
    pub concurrency_limit: NonZeroUsize,

    /// Longest time one API request may take before it answers 503.
    /// Must outlast a purchase whose stock-lock answer was lost (five Redis deadlines and a
    /// second's patience); the gateway refuses to start otherwise.
    #[arg(long, env = "REQUEST_TIMEOUT_MS", default_value_t = NonZeroU64::new(2500).expect("2500 > 0"))]
    pub request_timeout_ms: NonZeroU64,

    /// Largest accepted request body.
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub body_limit_bytes: usize,

    /// How often the local blacklist copy checks Redis for changes.
    #[arg(long, env = "BLACKLIST_SYNC_MS", default_value_t = NonZeroU64::new(1000).expect("1000 > 0"))]
    pub blacklist_sync_ms: NonZeroU64,

    /// How long shutdown waits for queued events to reach the broker.
    #[arg(long, env = "SHUTDOWN_FLUSH_MS", default_value_t = 5000)]
    pub shutdown_flush_ms: u64,

    /// Buyers' order streams this instance serves at once; beyond it a new one is answered
    /// 503 and the buyer's page polls instead.
    #[arg(long, env = "MAX_ORDER_STREAMS", default_value_t = NonZeroUsize::new(10_000).expect("10000 > 0"))]
    pub max_order_streams: NonZeroUsize,

    /// Order streams one user may hold open at this instance (a buyer's tabs); beyond it 429.
    #[arg(long, env = "MAX_ORDER_STREAMS_PER_USER", default_value_t = NonZeroUsize::new(4).expect("4 > 0"))]
    pub max_order_streams_per_user: NonZeroUsize,

    /// Dashboard streams (`/api/v1/sales/{id}/live`, which need no token) this instance serves
    /// at once, apart from the order streams so that watchers cannot crowd out buyers;
    /// beyond it 503.
    #[arg(long, env = "MAX_DASHBOARD_STREAMS", default_value_t = NonZeroUsize::new(1_000).expect("1000 > 0"))]
    pub max_dashboard_streams: NonZeroUsize,

    /// Dashboard streams one client address may hold open at this instance; beyond it 429.
    /// Behind a proxy every viewer shares the proxy's address: raise it there.
    #[arg(long, env = "MAX_DASHBOARD_STREAMS_PER_IP", default_value_t = NonZeroUsize::new(8).expect("8 > 0"))]
    pub max_dashboard_streams_per_ip: NonZeroUsize,

    /// How often an idle event stream sends a heartbeat comment, so proxies keep it open.
    #[arg(long, env = "STREAM_HEARTBEAT_MS", default_value_t = NonZeroU64::new(15_000).expect("15000 > 0"))]
    pub stream_heartbeat_ms: NonZeroU64,

    /// How often an order's stream reads the ledger without being told of a transition (in
    /// case its event never reached this gateway).
    #[arg(long, env = "STREAM_RESYNC_MS", default_value_t = NonZeroU64::new(30_000).expect("30000 > 0"))]
    pub stream_resync_ms: NonZeroU64,

    /// Consumer groups whose lag the dashboard shows, comma-separated.
    #[arg(
        long,
        env = "DASHBOARD_GROUPS",
        value_delimiter = ',',
        default_value = "order-worker,order-worker.transitions,sms-worker,stats-worker"
    )]
    pub dashboard_groups: Vec<String>,

    /// The group among the dashboard's whose lag is the SMS backlog.
    #[arg(long, env = "DASHBOARD_SMS_GROUP", default_value = "sms-worker")]
    pub dashboard_sms_group: String,

    /// Offers `POST /api/v1/demo/sign-in`, a token for any typed user name, so the buyer's
    /// page works without a login service. Never in production.
    #[arg(long, env = "DEMO_SIGN_IN")]
    pub demo_sign_in: bool,

    #[command(flatten)]
    pub redis: RedisArgs,

    #[command(flatten)]
    pub kafka: KafkaArgs,

    #[command(flatten)]
    pub payments: PaymentArgs,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

impl Config {
    /// Refuses incomplete wiring with a sentence that names the variable to set.
    pub fn validate(&self) -> Result<(), String> {
        self.jwt_secret.require("JWT_SECRET", MIN_SECRET_BYTES)?;
        self.admin_token.require("ADMIN_TOKEN", MIN_SECRET_BYTES)?;
        self.kafka.validate()?;
        self.redis.validate()?;
        self.check_request_outlasts_the_lock()
    }

    /// A purchase whose stock-lock answer was lost makes up to
    /// [`REDIS_CALLS_OF_A_LOST_ANSWER`] Redis calls and waits out [`LOST_ANSWER_PATIENCE`] and
    /// one [`LOST_ANSWER_RETRY`] between them. A request timeout shorter than that could
    /// answer 503 while the lock took a unit: a sale nobody is told about.
    fn check_request_outlasts_the_lock(&self) -> Result<(), String> {
        let waits = LOST_ANSWER_PATIENCE + LOST_ANSWER_RETRY;
        let needed = self.redis.timeout() * REDIS_CALLS_OF_A_LOST_ANSWER + waits;
        if self.request_timeout() > needed {
            return Ok(());
        }
        Err(format!(
            "REQUEST_TIMEOUT_MS ({} ms) must exceed {REDIS_CALLS_OF_A_LOST_ANSWER} Redis deadlines (REDIS_TIMEOUT_MS {} ms) plus {} ms: a request cut off sooner could answer 503 for a unit its stock lock took",
            self.request_timeout_ms,
            self.redis.redis_timeout_ms,
            waits.as_millis()
        ))
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms.get())
    }

    pub fn stream_heartbeat(&self) -> Duration {
        Duration::from_millis(self.stream_heartbeat_ms.get())
    }

    pub fn stream_resync(&self) -> Duration {
        Duration::from_millis(self.stream_resync_ms.get())
    }

    pub fn blacklist_sync(&self) -> Duration {
        Duration::from_millis(self.blacklist_sync_ms.get())
    }

    /// A limit of 0 means "no limit".
    pub(crate) fn limit(per_sec: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(per_sec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn with_secrets(jwt: &str, admin: &str) -> Config {
        let mut config: Config = shared::config::defaults();
        config.jwt_secret = Secret::new(jwt);
        config.admin_token = Secret::new(admin);
        config
    }

    #[test]
    fn the_gateway_refuses_to_start_without_its_secrets_naming_them() {
        let missing_jwt = with_secrets("", SECRET).validate().unwrap_err();
        assert!(missing_jwt.contains("JWT_SECRET"), "{missing_jwt}");
        let missing_admin = with_secrets(SECRET, "").validate().unwrap_err();
        assert!(missing_admin.contains("ADMIN_TOKEN"), "{missing_admin}");
        assert!(with_secrets(SECRET, SECRET).validate().is_ok());
    }

    #[test]
    fn a_request_timeout_the_stock_lock_could_outlast_is_refused_by_name() {
        let mut config = with_secrets(SECRET, SECRET);
        config.redis.redis_timeout_ms = NonZeroU64::new(500).unwrap();
        // Five deadlines of 500 ms, the patience (1 s) and one retry pause (50 ms).
        config.request_timeout_ms = NonZeroU64::new(3_550).unwrap();
        let error = config.validate().unwrap_err();
        assert!(error.contains("REQUEST_TIMEOUT_MS"), "{error}");
        config.request_timeout_ms = NonZeroU64::new(3_551).unwrap();
        assert!(config.validate().is_ok());
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = with_secrets(SECRET, SECRET);
        assert!(!format!("{config:?}").contains(SECRET));
    }

    #[test]
    fn a_zero_concurrency_limit_is_refused_by_name() {
        let error = Config::try_parse_from(["gateway", "--concurrency-limit", "0"]).unwrap_err();
        assert!(error.to_string().contains("--concurrency-limit"), "{error}");
    }

    #[test]
    fn a_zero_limit_means_no_limit() {
        assert_eq!(Config::limit(0), None);
        assert_eq!(Config::limit(7).map(NonZeroU32::get), Some(7));
    }
}
