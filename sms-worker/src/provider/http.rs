//! The HTTP provider: POSTs each message as JSON to an SMS gateway, with the message's id as
//! `Idempotency-Key`, and sorts the gateway's answers into transient and permanent failures.

use std::time::Duration;

use super::{Sms, SmsError, SmsProvider};

/// POSTs each message as JSON to an SMS gateway.
pub struct HttpProvider {
    client: reqwest::Client,
    url: String,
}

impl HttpProvider {
    pub fn new(url: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, url })
    }
}

impl SmsProvider for HttpProvider {
    async fn send(&self, sms: &Sms) -> Result<(), SmsError> {
        let response = self
            .client
            .post(&self.url)
            .header("Idempotency-Key", &sms.idempotency_key)
            .json(sms)
            .send()
            .await
            // Without the URL, which may carry the provider's credential into the logs.
            .map_err(|e| SmsError::Transient(Box::new(e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            Err(SmsError::Transient(
                format!("provider answered {status}").into(),
            ))
        } else {
            Err(SmsError::Permanent(format!("provider answered {status}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_https_provider_is_reached_over_tls() {
        // A closed port: the attempt fails at the connection, which means the client speaks
        // TLS at all (without it, it would refuse the scheme before connecting).
        let provider =
            HttpProvider::new("https://127.0.0.1:1/sms".into(), Duration::from_secs(2)).unwrap();
        let sms = Sms {
            idempotency_key: "s.0".into(),
            to: "u".into(),
            text: "t".into(),
        };
        match provider.send(&sms).await {
            Err(SmsError::Transient(reason)) => {
                let reason = reason.to_string();
                assert!(!reason.contains("scheme"), "{reason}");
                assert!(
                    reason.contains("connect") || reason.contains("sending"),
                    "{reason}"
                );
            }
            other => panic!("expected a connection failure, got {other:?}"),
        }
    }
}
