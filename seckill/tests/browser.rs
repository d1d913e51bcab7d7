//! The buyer's page and the dashboard in a real browser: Debian's Chromium, headless, driven
//! over WebDriver (`chromedriver`), against the gateway and every worker running on the real
//! Redis, Kafka-protocol broker and PostgreSQL (`scripts/services up`; `scripts/services
//! install chromium chromedriver` for the browser — `scripts/test` does both).
//!
//! What a person does, the test does: signs in, buys, sees "processing" and then the pushed
//! `created` without reloading, pays and sees `paid`; a second buyer lets the window pass and
//! sees `expired`; a sold-out sale says so; after a crowd, the dashboard's numbers match the
//! API. Screenshots of both pages go to `$SECKILL_SCREENSHOTS` (default: a `screenshots`
//! folder in the temporary directory), for a person to look at.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use loadtest::api::Gateway;
use loadtest::{Crowd, Pacing};
use order_worker::store::DatabaseSettings;
use seckill::services::{Services, Stack};
use serde_json::json;
use shared::config::{Secret, defaults};
use shared::sale::Sale;
use shared::testing::TestEnv;

const ADMIN_TOKEN: &str = "browser-test-admin-token-0123456789";
const WAIT: Duration = Duration::from_secs(30);

/// Every service of the system, on this test's namespace of the real services.
fn stack(env: &TestEnv, sms_file: PathBuf) -> Stack {
    let orders = order_worker::store::open(&env.database_url, DatabaseSettings::default())
        .expect("DATABASE_URL parses");
    let mut gateway: gateway::Config = defaults();
    gateway.listen_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    gateway.jwt_secret = Secret::new("browser-test-jwt-secret-0123456789abc");
    gateway.admin_token = Secret::new(ADMIN_TOKEN);
    gateway.redis = env.redis.clone();
    gateway.kafka = env.kafka.clone();
    gateway.demo = true;
    gateway.rate_limit_user_per_sec = 0;
    // The test namespace's generous Redis deadline (slow debug builds), and a request that
    // outlasts it.
    gateway.request_timeout_ms = 16_000.try_into().expect("16 s > 0");
    gateway.dashboard_groups = ["orders", "orders.transitions", "sms", "stats"]
        .map(|name| env.group(name))
        .to_vec();
    gateway.dashboard_sms_group = env.group("sms");

    let worker = |name: &str| shared::worker::WorkerArgs {
        consumer_group: Some(env.group(name)),
        redis: env.redis.clone(),
        kafka: env.kafka.clone(),
        ..defaults::<stats_worker::Config>().worker
    };
    let mut order_worker: order_worker::Config = defaults();
    order_worker.database_url.clone_from(&env.database_url);
    order_worker.worker = worker("orders");
    order_worker.reconcile_interval_ms = 500.try_into().expect("500 > 0");
    let mut sms_worker: sms_worker::Config = defaults();
    sms_worker.sms_file = Some(sms_file);
    sms_worker.worker = worker("sms");
    let mut stats_worker: stats_worker::Config = defaults();
    stats_worker.worker = worker("stats");
    let mut points_worker: points_worker::Config = defaults();
    points_worker.worker = worker("points");
    Stack {
        backends: env.backends(),
        bus: env.bus(),
        orders,
        payments: env.payment_provider(),
        gateway,
        order_worker,
        sms_worker,
        stats_worker,
        points_worker,
    }
}

/// chromedriver and one headless Chromium session.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver runs (scripts/services install chromium chromedriver)");
        let capabilities = json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1100"],
            }
        });
        let capabilities = capabilities.as_object().expect("an object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let client = shared::testing::eventually("chromedriver to answer", WAIT, async || {
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
                .ok()
        })
        .await;
        Self { driver, client }
    }

    async fn stop(mut self) {
        let _ = self.client.close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    async fn text(&self, id: &str) -> String {
        self.client
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|error| panic!("#{id} is on the page: {error}"))
            .text()
            .await
            .expect("its text")
    }

    /// Waits until `css` matches an element.
    async fn wait_for(&self, css: &str) {
        self.client
            .wait()
            .at_most(WAIT)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("{css} did not appear: {error}"));
    }

    async fn click(&self, id: &str) {
        self.client
            .find(Locator::Id(id))
            .await
            .expect("the element is on the page")
            .click()
            .await
            .unwrap_or_else(|error| panic!("#{id} clicks: {error}"));
    }

    /// Signs in by name on the buyer's page, as the demo sign-in offers.
    async fn sign_in(&self, user: &str) {
        let field = self.client.find(Locator::Id("user")).await.expect("#user");
        field.clear().await.expect("clears");
        field.send_keys(user).await.expect("types");
        self.click("sign-in").await;
        self.wait_for("#buy:not([disabled])").await;
        assert_eq!(
            self.text("signed-in-as").await,
            format!("signed in as {user}")
        );
    }

    /// The statuses the order panel showed, in order.
    async fn timeline(&self) -> Vec<String> {
        let items = self
            .client
            .find_all(Locator::Css("#timeline li"))
            .await
            .expect("the timeline");
        let mut statuses = Vec::new();
        for item in items {
            statuses.push(
                item.attr("data-status")
                    .await
                    .expect("attr")
                    .expect("a status"),
            );
        }
        statuses
    }

    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("a screenshot");
        let dir = std::env::var_os("SECKILL_SCREENSHOTS")
            .map_or_else(|| std::env::temp_dir().join("screenshots"), PathBuf::from);
        std::fs::create_dir_all(&dir).expect("the screenshot folder");
        let path = dir.join(name);
        std::fs::write(&path, png).expect("the screenshot is written");
        eprintln!("screenshot: {}", path.display());
    }
}

/// A sale open now, with `stock` units and `payment_window_secs` to pay.
async fn open_sale(shop: &Gateway, name: &str, stock: u32, payment_window_secs: u32) -> Sale {
    let sale = Sale {
        name: name.into(),
        payment_window_secs,
        ..loadtest::open_sale(None, stock, 4999)
    };
    shop.create_sale(&sale).await.expect("the sale is created");
    sale
}

#[tokio::test]
async fn a_buyer_and_an_operator_use_both_pages_in_a_real_browser() {
    let env = TestEnv::on_services();
    env.create_topics().await;
    let sms = tempfile::NamedTempFile::new().expect("an SMS file");
    let services = Services::start(&stack(&env, sms.path().to_owned()))
        .await
        .expect("every service starts");
    let url = services.gateway_url.clone();
    let shop = Gateway::new(&url, ADMIN_TOKEN).expect("a client");
    let browser = Browser::start().await;

    buyer_pays_and_sees_each_status_pushed(&browser, &shop, &url).await;
    buyer_lets_the_window_pass_and_sees_expired(&browser, &shop, &url).await;
    a_sold_out_sale_says_so(&browser, &shop, &url).await;
    the_dashboard_matches_the_api_after_a_crowd(&browser, &shop, &url).await;

    browser.stop().await;
    services.stop().await.expect("every service stops cleanly");
}

async fn buyer_pays_and_sees_each_status_pushed(browser: &Browser, shop: &Gateway, url: &str) {
    let sale = open_sale(shop, "Phone X — flash sale", 5, 120).await;
    let page = &browser.client;
    page.goto(&format!("{url}/?sale={}", sale.id))
        .await
        .expect("the buyer's page");
    browser.sign_in("alice").await;
    // A mark that a reload would wipe: the result must arrive on this very page.
    page.execute("window.notReloaded = true;", vec![])
        .await
        .expect("runs");

    browser.click("buy").await;
    browser.wait_for("#status[data-status='created']").await;
    assert_eq!(
        browser.timeline().await,
        ["processing", "created"],
        "processing at once, then the pushed result"
    );
    assert!(
        browser
            .text("pay-countdown")
            .await
            .starts_with("time left to pay:")
    );
    browser.screenshot("buyer-created.png").await;

    browser.click("pay").await;
    browser.wait_for("#status[data-status='paid']").await;
    assert_eq!(browser.text("status").await, "Paid ✓");
    let same_page = page
        .execute("return window.notReloaded === true;", vec![])
        .await
        .expect("runs");
    assert_eq!(same_page, json!(true), "no reload happened");
    browser.screenshot("buyer-paid.png").await;
}

async fn buyer_lets_the_window_pass_and_sees_expired(browser: &Browser, shop: &Gateway, url: &str) {
    let sale = open_sale(shop, "Headphones — 3 s to pay", 5, 3).await;
    browser
        .client
        .goto(&format!("{url}/?sale={}", sale.id))
        .await
        .expect("the buyer's page");
    browser.sign_in("bob").await;
    browser.click("buy").await;
    browser.wait_for("#status[data-status='created']").await;
    browser.wait_for("#status[data-status='expired']").await;
    assert_eq!(
        browser.timeline().await,
        ["processing", "created", "expired"]
    );
    assert!(
        browser.text("detail").await.contains("went back on sale"),
        "the buyer is told why"
    );
    let remaining = shop
        .sale(sale.id.as_str())
        .await
        .expect("the sale")
        .remaining;
    assert_eq!(remaining, 5, "the unit came back");
}

async fn a_sold_out_sale_says_so(browser: &Browser, shop: &Gateway, url: &str) {
    let sale = open_sale(shop, "Last unit", 1, 120).await;
    let token = &shop.mint_tokens(&["carol".into()]).await.expect("a token")[0];
    assert_eq!(
        shop.purchase(sale.id.as_str(), token)
            .await
            .expect("answers")
            .status,
        202
    );
    browser
        .client
        .goto(&format!("{url}/?sale={}", sale.id))
        .await
        .expect("the buyer's page");
    let field = browser
        .client
        .find(Locator::Id("user"))
        .await
        .expect("#user");
    field.clear().await.expect("clears");
    field.send_keys("dave").await.expect("types");
    browser.click("sign-in").await;
    browser.wait_for("#signed-in-as").await;
    shared::testing::eventually("the page to show sold out", WAIT, async || {
        (browser.text("sale-state").await == "sold out").then_some(())
    })
    .await;
    assert_eq!(browser.text("remaining").await, "0 of 1 left");
    let buy = browser.client.find(Locator::Id("buy")).await.expect("#buy");
    assert_eq!(
        buy.attr("disabled").await.expect("attr").as_deref(),
        Some("true"),
        "nothing to buy"
    );
    browser.screenshot("buyer-sold-out.png").await;
}

async fn the_dashboard_matches_the_api_after_a_crowd(browser: &Browser, shop: &Gateway, url: &str) {
    let crowd = Crowd {
        scenario: "browser-dashboard",
        users: 1000,
        attempts_per_user: 2,
        sale: Sale {
            name: "Dashboard crowd".into(),
            ..loadtest::open_sale(None, 100, 1999)
        },
        // A few seconds of crowd, so the chart has a shape.
        pacing: Pacing::Open {
            rate_per_sec: 250,
            connections: 32,
        },
        lifecycle: None,
        watched: Vec::new(),
    };
    let sale_id = crowd.sale.id.to_string();
    // Opened before the sale exists, the dashboard waits for it and then draws the crowd live
    // (2,000 attempts at 250 a second: eight seconds of chart).
    browser
        .client
        .goto(&format!("{url}/dashboard?sale={sale_id}"))
        .await
        .expect("the dashboard");
    let summary = crowd
        .run(std::slice::from_ref(shop), None)
        .await
        .expect("the crowd runs");

    let stats =
        shared::testing::eventually("the stats worker to count every order", WAIT, async || {
            let stats = shop.stats(&sale_id).await.ok()?;
            (stats.sold == summary.accepted).then_some(stats)
        })
        .await;
    let sale = shop.sale(&sale_id).await.expect("the sale");
    shared::testing::eventually(
        "the dashboard to show the API's figures",
        WAIT,
        async || {
            let shown = (
                browser.text("remaining").await,
                browser.text("count-sold").await,
                browser.text("count-created").await,
            );
            (shown
                == (
                    sale.remaining.to_string(),
                    stats.sold.to_string(),
                    stats.sold.to_string(),
                ))
                .then_some(())
        },
    )
    .await;
    let accepted_row = browser.text("purchases").await;
    assert!(
        accepted_row.contains(&format!("accepted 0 {}", summary.accepted))
            || accepted_row.contains(&format!("accepted {}", summary.accepted)),
        "the purchases table counts the crowd's acceptances: {accepted_row:?}"
    );
    let backlog = browser.text("sms-backlog").await;
    assert!(
        backlog.parse::<u64>().is_ok(),
        "the SMS group's lag is shown (not the placeholder): {backlog:?}"
    );
    browser
        .client
        .set_window_size(1280, 1500)
        .await
        .expect("a taller window");
    browser.screenshot("dashboard.png").await;
}
