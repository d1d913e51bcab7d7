//! URLs made fit for a log line or an error message: the credential in `user:password@`
//! replaced with `***`.
//!
//! `REDIS_URL` and `DATABASE_URL` carry their password in the URL, and an error that quotes
//! the URL it could not use puts the password in every log pipeline downstream. Anything that
//! shows a configured URL shows [`url`] of it instead. A userinfo without a colon is taken for
//! a token (`https://TOKEN@host/`) and hidden whole; the user name of `user:password@` stays,
//! because it helps find the account at fault.

/// `url` with the password (or a lone token) of its userinfo replaced by `***`; any other
/// text is returned as it is.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_len);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    let hidden = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None => "***".to_owned(),
    };
    format!("{scheme}://{hidden}@{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::url;

    #[test]
    fn a_password_is_hidden_and_the_rest_kept() {
        assert_eq!(
            url("postgres://orders:s3cr%40t@db.internal:5432/seckill?sslmode=require"),
            "postgres://orders:***@db.internal:5432/seckill?sslmode=require"
        );
        assert_eq!(
            url("redis://:hunter2@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
    }

    #[test]
    fn a_lone_token_in_the_userinfo_is_hidden_whole() {
        assert_eq!(
            url("https://api-key-123@sms.example/send"),
            "https://***@sms.example/send"
        );
    }

    #[test]
    fn a_url_without_credentials_or_no_url_at_all_is_unchanged() {
        for text in [
            "redis://127.0.0.1:6379",
            "http://gateway:8080/a@b",
            "sqlite:/tmp/orders.db",
            "memory:",
        ] {
            assert_eq!(url(text), text);
        }
    }
}
