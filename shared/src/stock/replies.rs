//! What the stock scripts answer, parsed once: each reply is a type that implements redis's
//! `FromRedisValue`, so a call asks for the type and a reply outside the script's vocabulary
//! fails as a parse error naming what came back (the ledger's `StoreError::Failed`).

use redis::{FromRedisValue, ParsingError, Value};

use super::{Payment, PaymentIntent, Reservation};
use crate::scripts::one_of;

/// `reserve.lua`'s answer: `[outcome, remaining, existing order]`. On every purchase's path,
/// so it has a micro-benchmark (`gateway/benches/hot_path.rs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveReply {
    Decided(Reservation),
    /// The script ran past its run-by time and did nothing.
    Late,
}

impl FromRedisValue for ReserveReply {
    fn from_redis_value(reply: Value) -> Result<Self, ParsingError> {
        let (outcome, remaining, existing_order): (String, i64, String) =
            FromRedisValue::from_redis_value(reply)?;
        Ok(Self::Decided(match outcome.as_str() {
            "late" => return Ok(Self::Late),
            "reserved" => Reservation::Reserved {
                remaining: u32::try_from(remaining).unwrap_or(0),
            },
            "already_purchased" => Reservation::AlreadyPurchased {
                order_id: existing_order.parse().map_err(|error| {
                    format!("reserve.lua answered a malformed order id: {error}")
                })?,
            },
            "sold_out" => Reservation::SoldOut,
            "unknown_sale" => Reservation::UnknownSale,
            other => return Err(format!("reserve.lua answered `{other}`").into()),
        }))
    }
}

/// The words of a payment script's refusal (`pay.lua`, `begin_payment.lua`).
const PAYMENTS: [(&str, Payment); 5] = [
    ("paid", Payment::Paid),
    ("already_paid", Payment::AlreadyPaid),
    ("expired", Payment::Expired),
    ("failed", Payment::Failed),
    ("not_found", Payment::NotFound),
];

/// `pay.lua`'s answer.
impl FromRedisValue for Payment {
    fn from_redis_value(reply: Value) -> Result<Self, ParsingError> {
        one_of(reply, &PAYMENTS)
    }
}

/// `begin_payment.lua`'s answer: `recorded`, or the refusal's word.
impl FromRedisValue for PaymentIntent {
    fn from_redis_value(reply: Value) -> Result<Self, ParsingError> {
        let intents = PAYMENTS.map(|(word, payment)| (word, Self::Refused(payment)));
        let recorded = [("recorded", Self::Recorded)];
        one_of(reply, &[&recorded[..], &intents[..]].concat())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(word: &str) -> Value {
        Value::BulkString(word.as_bytes().to_vec())
    }

    #[test]
    fn a_reservation_is_read_from_the_three_fields() {
        let order = "s.0123456789abcdef0123456789abcdef";
        let read = |outcome: &str, remaining: i64, existing: &str| {
            ReserveReply::from_redis_value(Value::Array(vec![
                word(outcome),
                Value::Int(remaining),
                word(existing),
            ]))
        };
        assert_eq!(
            read("reserved", 41, "").unwrap(),
            ReserveReply::Decided(Reservation::Reserved { remaining: 41 })
        );
        assert_eq!(
            read("already_purchased", 0, order).unwrap(),
            ReserveReply::Decided(Reservation::AlreadyPurchased {
                order_id: order.parse().unwrap()
            })
        );
        assert_eq!(read("late", 0, "").unwrap(), ReserveReply::Late);
        assert!(read("already_purchased", 0, "garbage").is_err());
        let unknown = read("maybe", 0, "").unwrap_err().to_string();
        assert!(unknown.contains("maybe"), "{unknown}");
    }

    #[test]
    fn a_payment_reply_outside_the_vocabulary_is_refused_by_its_word() {
        assert_eq!(
            Payment::from_redis_value(word("expired")).unwrap(),
            Payment::Expired
        );
        assert_eq!(
            PaymentIntent::from_redis_value(word("recorded")).unwrap(),
            PaymentIntent::Recorded
        );
        assert_eq!(
            PaymentIntent::from_redis_value(word("already_paid")).unwrap(),
            PaymentIntent::Refused(Payment::AlreadyPaid)
        );
        let error = Payment::from_redis_value(word("recorded"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("recorded"), "{error}");
    }
}
