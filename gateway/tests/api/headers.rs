//! Every answer carries the browser's security headers: the pages (which must not be framed:
//! the buyer's page has a pay button), their files, the API's answers and its errors.

use crate::helpers::spawn_app;

#[tokio::test]
async fn pages_files_and_api_answers_carry_the_security_headers() {
    let app = spawn_app().await;
    for path in [
        "/",
        "/dashboard",
        "/assets/buyer.js",
        "/api/v1/sales",
        "/api/v1/no-such-thing",
    ] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let policy = header("content-security-policy");
        assert!(
            policy.contains("frame-ancestors 'none'"),
            "{path}: {policy:?}"
        );
        assert!(policy.contains("script-src 'self'"), "{path}: {policy:?}");
        assert!(!policy.contains("unsafe-inline"), "{path}: {policy:?}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(header("referrer-policy"), "no-referrer", "{path}");
    }
}
