//! Headers on every answer, telling a browser what the gateway's pages may do.
//!
//! The buyer's page has a pay button: framed by another site under a decoy, a click on it
//! would pay (clickjacking), so no page may be framed (`frame-ancestors 'none'`). The pages
//! run only the gateway's own script files (no inline script, no `eval`, nothing from another
//! origin) and talk only to the gateway, so an injected `<script>` or a stray `innerHTML`
//! runs nothing. `nosniff` keeps a browser from running a JSON error whose text looks like
//! script; `no-referrer` keeps a sale's URL out of other sites' logs. The API's answers get
//! the same headers: one policy, nothing to forget on a new route.

use axum::http::HeaderValue;
use axum::http::header::{CONTENT_SECURITY_POLICY, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS};
use axum::response::Response;

/// What a page of the gateway may load and who may frame it: only its own files, no one.
pub const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'none'";

/// Adds the headers to `response` (an `axum::middleware::map_response` function).
pub async fn add(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}
