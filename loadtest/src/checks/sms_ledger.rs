//! One sale's lines of the SMS file: the messages delivered, and those sent again that the
//! provider knew by their key and did not deliver.

use std::collections::HashSet;
use std::path::Path;

use shared::ids::SaleId;

/// One sale's lines of the SMS file (the file provider's format, see
/// `sms_worker::provider::json_lines`).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct SmsLedger {
    /// The message ids (`<order id>:<kind>`) of the messages delivered.
    pub(crate) delivered: Vec<String>,
    /// Messages sent again, which the provider knew by their key and did not deliver.
    pub(crate) repeats: u64,
}

impl SmsLedger {
    pub(crate) fn read(path: &Path, sale_id: &SaleId) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::parse(&text, sale_id)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(error) => Err(error.into()),
        }
    }

    /// Deliveries beyond one per message.
    pub(crate) fn delivered_twice(&self) -> u64 {
        let distinct: HashSet<_> = self.delivered.iter().collect();
        (self.delivered.len() - distinct.len()) as u64
    }

    fn parse(text: &str, sale_id: &SaleId) -> Self {
        let prefix = format!("{sale_id}.");
        let mut ledger = Self::default();
        for sms in text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        {
            let Some(message) = sms["idempotency_key"].as_str() else {
                continue;
            };
            if !message.starts_with(&prefix) {
                continue;
            }
            if sms["repeat"] == true {
                ledger.repeats += 1;
            } else {
                ledger.delivered.push(message.to_owned());
            }
        }
        ledger
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sms_ledger_counts_one_sales_deliveries_and_repeats_apart() {
        let sale: SaleId = "s1".parse().unwrap();
        let file = [
            r#"{"idempotency_key":"s1.a:reserved","to":"u1","text":"t"}"#,
            r#"{"idempotency_key":"s2.b:reserved","to":"u2","text":"t"}"#,
            r#"{"idempotency_key":"s1.a:reserved","to":"u1","text":"t","repeat":true}"#,
            r#"{"idempotency_key":"s1.a:paid","to":"u1","text":"t","repeat":false}"#,
            "not json",
        ]
        .join("\n");
        let ledger = SmsLedger::parse(&file, &sale);
        assert_eq!(
            ledger,
            SmsLedger {
                delivered: vec!["s1.a:reserved".into(), "s1.a:paid".into()],
                repeats: 1,
            }
        );
        assert_eq!(ledger.delivered_twice(), 0);
        let doubled = format!(
            "{file}\n{}",
            r#"{"idempotency_key":"s1.a:paid","to":"u1","text":"t"}"#
        );
        assert_eq!(SmsLedger::parse(&doubled, &sale).delivered_twice(), 1);
    }
}
