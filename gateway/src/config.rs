//! Everything the gateway can be told, as flags or environment variables (`--help` lists them).

use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::time::Duration;

use clap::Parser;
use shared::config::{
    KafkaArgs, Mode, RedisArgs, RefusedToStart, Secret, TelemetryArgs, require_non_empty,
};
use shared::front_door::FrontDoorArgs;
use shared::payment::PaymentArgs;

use crate::claims::{DEMO_AUDIENCE, TokenRules};

/// Shortest accepted HS256 secret: the key should be as long as the hash.
const MIN_SECRET_BYTES: usize = 32;

/// How long a purchase whose stock-lock answer was lost keeps asking the ledger what happened
/// (`routes/purchase.rs`).
pub const LOST_ANSWER_PATIENCE: Duration = Duration::from_secs(1);

/// The pause between two questions of a purchase whose stock-lock answer was lost.
pub const LOST_ANSWER_RETRY: Duration = Duration::from_millis(50);

/// Redis calls on a purchase's longest path, each bounded by `REDIS_TIMEOUT_MS`: the sale (a
/// catalog miss), the clock reading, the stock lock and (on Redis Cluster) its replica's
/// confirmation; its answer lost, the last question for the buyer's entry (begun at most
/// [`LOST_ANSWER_PATIENCE`] plus [`LOST_ANSWER_RETRY`] later), the confirmation asked again,
/// then the stock left.
const REDIS_CALLS_OF_A_LOST_ANSWER: u32 = 7;

/// The seckill gateway: risk control and the atomic stock lock, answered at once; the rest of
/// the purchase goes to Kafka.
#[derive(Parser, Clone, Debug)]
#[command(name = "gateway", version)]
pub struct Config {
    /// Address the HTTP server listens on.
    #[arg(long, env = "GATEWAY_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,

    /// Address of `/metrics`, apart from the public API: the metrics describe the business
    /// (sales, outcomes, lag) and are for the operator's Prometheus, not for buyers.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9464")]
    pub metrics_addr: SocketAddr,

    /// How often the stock ledger and Kafka are checked for `/readyz`, which answers with the
    /// last check (a check older than three intervals counts as not ready).
    #[arg(long, env = "READINESS_CHECK_MS", default_value_t = NonZeroU64::new(1000).expect("1000 > 0"))]
    pub readiness_check_ms: NonZeroU64,

    /// Demo mode, for a gateway nobody else can reach: placeholder and short secrets are
    /// accepted, and `POST /api/v1/demo/sign-in` gives a token for any typed user name (in
    /// the audience `seckill-demo`, which a gateway outside demo mode refuses). Announced
    /// at start-up. Never on a gateway the internet can reach.
    #[arg(long = "demo", env = "DEMO_MODE")]
    pub demo: bool,

    /// HS256 secret that users' JWTs are signed with: at least 32 bytes, and (outside demo
    /// mode) not a published placeholder nor guessable.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true, default_value = "")]
    pub jwt_secret: Secret,

    /// Bearer token of the admin API: the same rules as JWT_SECRET.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, default_value = "")]
    pub admin_token: Secret,

    /// Issuer (`iss`) every user token must name: the login service's name for itself.
    #[arg(long, env = "JWT_ISSUER", default_value = "seckill")]
    pub jwt_issuer: String,

    /// Audience (`aud`) every user token must name: the login service's name for this API.
    /// A token for another audience, or none, is refused.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "seckill")]
    pub jwt_audience: String,

    /// Longest lifetime (`exp - iat`) of a user token the gateway accepts, so a leaked
    /// token is worth a bounded time; a token without `iat` is refused.
    #[arg(long, env = "JWT_MAX_LIFETIME_SECS", default_value_t = NonZeroU64::new(3600).expect("3600 > 0"))]
    pub jwt_max_lifetime_secs: NonZeroU64,

    /// Lifetime of the user tokens minted by `POST /api/v1/admin/tokens` (and demo sign-in);
    /// at most JWT_MAX_LIFETIME_SECS.
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
    /// Must outlast a purchase whose stock-lock answer was lost (seven Redis deadlines and a
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

    #[command(flatten)]
    pub front_door: FrontDoorArgs,

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
    pub fn validate(&self) -> Result<(), RefusedToStart> {
        self.jwt_secret
            .require("JWT_SECRET", MIN_SECRET_BYTES, self.mode())?;
        self.admin_token
            .require("ADMIN_TOKEN", MIN_SECRET_BYTES, self.mode())?;
        self.check_token_rules()?;
        self.kafka.validate()?;
        self.redis.validate()?;
        self.check_request_outlasts_the_lock()
    }

    /// A purchase whose stock-lock answer was lost makes up to
    /// [`REDIS_CALLS_OF_A_LOST_ANSWER`] Redis calls and waits out [`LOST_ANSWER_PATIENCE`] and
    /// one [`LOST_ANSWER_RETRY`] between them. A request timeout shorter than that could
    /// answer 503 while the lock took a unit: a sale nobody is told about.
    fn check_request_outlasts_the_lock(&self) -> Result<(), RefusedToStart> {
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
        ).into())
    }

    /// Refuses token settings that cannot work: an empty issuer or audience, the demo
    /// audience as the real one, or minted tokens the gateway would itself refuse.
    fn check_token_rules(&self) -> Result<(), RefusedToStart> {
        require_non_empty(&[
            ("JWT_ISSUER", &self.jwt_issuer),
            ("JWT_AUDIENCE", &self.jwt_audience),
        ])?;
        if self.jwt_audience == DEMO_AUDIENCE {
            return Err(format!(
                "JWT_AUDIENCE must not be {DEMO_AUDIENCE}, the audience of demo sign-in's tokens: a deployment would accept tokens anyone can get from a demo"
            ).into());
        }
        if self.token_ttl_secs > self.jwt_max_lifetime_secs.get() {
            return Err(format!(
                "TOKEN_TTL_SECS ({} s) exceeds JWT_MAX_LIFETIME_SECS ({} s): the gateway would mint tokens it refuses",
                self.token_ttl_secs, self.jwt_max_lifetime_secs
            ).into());
        }
        Ok(())
    }

    /// A demo with `--demo`, a deployment otherwise.
    pub fn mode(&self) -> Mode {
        if self.demo {
            Mode::Demo
        } else {
            Mode::Deployment
        }
    }

    /// What every accepted user token must say.
    pub fn token_rules(&self) -> TokenRules {
        TokenRules {
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            max_lifetime: Duration::from_secs(self.jwt_max_lifetime_secs.get()),
            mode: self.mode(),
        }
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs)
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

    pub fn readiness_check(&self) -> Duration {
        Duration::from_millis(self.readiness_check_ms.get())
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
    const PLACEHOLDER: &str = shared::weak_secrets::PUBLISHED_PLACEHOLDERS[0];

    fn with_secrets(jwt: &str, admin: &str) -> Config {
        let mut config: Config = shared::config::defaults();
        config.jwt_secret = Secret::new(jwt);
        config.admin_token = Secret::new(admin);
        config
    }

    #[test]
    fn the_gateway_refuses_to_start_without_its_secrets_naming_them() {
        let missing_jwt = with_secrets("", SECRET).validate().unwrap_err().0;
        assert!(missing_jwt.contains("JWT_SECRET"), "{missing_jwt}");
        let missing_admin = with_secrets(SECRET, "").validate().unwrap_err().0;
        assert!(missing_admin.contains("ADMIN_TOKEN"), "{missing_admin}");
        assert!(with_secrets(SECRET, SECRET).validate().is_ok());
    }

    #[test]
    fn a_placeholder_secret_is_refused_outside_demo_mode_saying_why() {
        let mut config = with_secrets(PLACEHOLDER, SECRET);
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("JWT_SECRET is a placeholder published with this repository"),
            "{refused}"
        );
        let mut short_admin = with_secrets(SECRET, "short");
        assert!(
            short_admin
                .validate()
                .unwrap_err()
                .0
                .starts_with("ADMIN_TOKEN must be at least 32 bytes")
        );
        config.demo = true;
        short_admin.demo = true;
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(short_admin.validate(), Ok(()));
    }

    #[test]
    fn a_token_lifetime_over_the_maximum_is_refused_naming_both() {
        let mut config = with_secrets(SECRET, SECRET);
        config.jwt_max_lifetime_secs = NonZeroU64::new(600).unwrap();
        config.token_ttl_secs = 601;
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("TOKEN_TTL_SECS (601 s) exceeds JWT_MAX_LIFETIME_SECS (600 s)"),
            "{refused}"
        );
        config.token_ttl_secs = 600;
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn the_demo_audience_cannot_be_the_real_one() {
        let mut config = with_secrets(SECRET, SECRET);
        config.jwt_audience = DEMO_AUDIENCE.into();
        let refused = config.validate().unwrap_err().0;
        assert!(
            refused.starts_with("JWT_AUDIENCE must not be seckill-demo"),
            "{refused}"
        );
    }

    #[test]
    fn a_request_timeout_the_stock_lock_could_outlast_is_refused_by_name() {
        let mut config = with_secrets(SECRET, SECRET);
        config.redis.redis_timeout_ms = NonZeroU64::new(500).unwrap();
        // Seven deadlines of 500 ms, the patience (1 s) and one retry pause (50 ms).
        config.request_timeout_ms = NonZeroU64::new(4_550).unwrap();
        let error = config.validate().unwrap_err().0;
        assert!(error.contains("REQUEST_TIMEOUT_MS"), "{error}");
        config.request_timeout_ms = NonZeroU64::new(4_551).unwrap();
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
