//! The buyer's page (`/`) and the live sale dashboard (`/dashboard`): static HTML, CSS and
//! JavaScript compiled into the binary with `include_str!`, so they work offline from the
//! gateway alone and in the one-command demo. No framework, no build step, no CDN: the
//! files under `gateway/assets/` are what the browser gets.
//!
//! The Content-Security-Policy every answer carries (`routes/headers.rs`) lets a page run only
//! these files: no inline `<script>`, no `on…=` handler, no `style=` attribute (a test below
//! keeps them out; the browser would silently ignore them).
//!
//! Everything the pages show comes from the public API: the buyer's page follows an order's
//! event stream, the dashboard a sale's live stream (`routes/order_events.rs`,
//! `routes/live.rs`).

use axum::Router;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;

/// A file served at `/assets/{name}`: its name, media type and contents.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    body: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

const BUYER_PAGE: &str = include_str!("../assets/index.html");
const DASHBOARD_PAGE: &str = include_str!("../assets/dashboard.html");

const ASSETS: [Asset; 4] = [
    Asset {
        name: "style.css",
        media_type: CSS,
        body: include_str!("../assets/style.css"),
    },
    Asset {
        name: "common.js",
        media_type: JS,
        body: include_str!("../assets/common.js"),
    },
    Asset {
        name: "buyer.js",
        media_type: JS,
        body: include_str!("../assets/buyer.js"),
    },
    Asset {
        name: "dashboard.js",
        media_type: JS,
        body: include_str!("../assets/dashboard.js"),
    },
];

/// `/`, `/dashboard` and `/assets/<name>` for each asset; any other path falls through to the
/// API's JSON 404.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let pages = Router::new()
        .route("/", get(|| async { file(HTML, BUYER_PAGE) }))
        .route("/dashboard", get(|| async { file(HTML, DASHBOARD_PAGE) }));
    ASSETS.iter().fold(pages, |pages, asset| {
        pages.route(
            &format!("/assets/{}", asset.name),
            get(|| async { file(asset.media_type, asset.body) }),
        )
    })
}

/// A page or asset, marked `no-cache` so a new binary's files are picked up at once (they
/// are a few kilobytes each).
fn file(media_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, media_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_hold_nothing_inline_that_the_content_security_policy_would_block() {
        for page in [BUYER_PAGE, DASHBOARD_PAGE] {
            for tag in page.split('<').skip(1) {
                let tag = tag.split('>').next().unwrap_or_default();
                assert!(
                    !tag.starts_with("script") || tag.contains("src="),
                    "an inline script: <{tag}>"
                );
                assert!(!tag.contains("style="), "an inline style: <{tag}>");
                let handler = tag
                    .split_whitespace()
                    .any(|attribute| attribute.starts_with("on") && attribute.contains('='));
                assert!(!handler, "an inline event handler: <{tag}>");
            }
        }
    }
}
