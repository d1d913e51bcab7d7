//! The ids of sales, users and orders, each parsed once where it enters the system (a request
//! path, a token's subject, a decoded event) and carried as its own type from there on, so no
//! code further in checks a string again.
//!
//! An order id is `<sale_id>.<uuid v7>`. Carrying the sale lets `GET /orders/{id}` find the
//! sale's keys (and so its Redis Cluster slot) without a global order index, which the stock
//! script could not write atomically because it would live in another slot. UUID v7 keeps ids
//! time-ordered, which PostgreSQL's primary-key index likes.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest sale id accepted; ids appear in every Redis key of the sale.
pub const MAX_SALE_ID_LEN: usize = 64;
/// Longest user id accepted, in characters: counted as the OpenAPI document's `maxLength`
/// counts, so an id the document declares valid is one the gateway accepts.
pub const MAX_USER_ID_LEN: usize = 128;

/// A string that is not a valid id of its kind; the message says what a valid one looks like.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{rule}, not {value:?}")]
pub struct InvalidId {
    rule: &'static str,
    value: String,
}

/// Declares a `String` newtype that can only hold values `valid` accepts; `pattern` and
/// `max_chars` say exactly the same in the OpenAPI document.
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $rule:expr, max_chars: $max_chars:expr, pattern: $pattern:expr, $valid:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// What a valid value looks like, as a sentence for error messages.
            pub const RULE: &'static str = $rule;

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;

            fn try_from(value: String) -> Result<Self, InvalidId> {
                let valid: fn(&str) -> bool = $valid;
                if valid(&value) {
                    Ok(Self(value))
                } else {
                    Err(InvalidId { rule: Self::RULE, value })
                }
            }
        }

        impl FromStr for $name {
            type Err = InvalidId;

            fn from_str(s: &str) -> Result<Self, InvalidId> {
                Self::try_from(s.to_owned())
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some(Self::RULE))
                    .max_length(Some($max_chars))
                    .pattern(Some($pattern))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
        }
    };
}

string_id!(
    /// The id of a sale: 1 to 64 ASCII letters, digits, `-` or `_`.
    SaleId,
    "a sale id is 1 to 64 letters, digits, '-' or '_'",
    max_chars: MAX_SALE_ID_LEN,
    pattern: "^[A-Za-z0-9_-]{1,64}$",
    |id| {
        !id.is_empty()
            && id.len() <= MAX_SALE_ID_LEN
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    }
);

string_id!(
    /// The id of a user, as the login service issues it: 1 to 128 characters, no control
    /// characters.
    UserId,
    "a user id is 1 to 128 characters without control characters",
    max_chars: MAX_USER_ID_LEN,
    pattern: "^[^\\u0000-\\u001F\\u007F-\\u009F]{1,128}$",
    |id| {
        !id.is_empty()
            && id.chars().count() <= MAX_USER_ID_LEN
            && !id.chars().any(char::is_control)
    }
);

string_id!(
    /// The id of one order, unique across sales: `<sale_id>.<32 hex digits>`.
    OrderId,
    "an order id is <sale_id>.<32 hex digits>",
    max_chars: MAX_SALE_ID_LEN + 33,
    pattern: r"^[A-Za-z0-9_-]{1,64}\.[0-9a-fA-F]{32}$",
    |id| {
        id.rsplit_once('.').is_some_and(|(sale_id, suffix)| {
            sale_id.parse::<SaleId>().is_ok()
                && suffix.len() == 32
                && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
    }
);

impl OrderId {
    /// A fresh order id in `sale_id`.
    pub fn generate(sale_id: &SaleId) -> Self {
        Self(format!("{sale_id}.{}", Uuid::now_v7().simple()))
    }

    /// The sale this order belongs to.
    pub fn sale_id(&self) -> SaleId {
        let (sale_id, _) = self
            .0
            .rsplit_once('.')
            .expect("a parsed order id has a sale part");
        SaleId(sale_id.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sale(id: &str) -> SaleId {
        id.parse().unwrap()
    }

    #[test]
    fn a_generated_order_id_names_its_sale_and_parses_back() {
        let id = OrderId::generate(&sale("black-friday_2026"));
        assert_eq!(id.sale_id(), sale("black-friday_2026"));
        assert_eq!(id.as_str().parse::<OrderId>().unwrap(), id);
    }

    #[test]
    fn order_ids_are_unique() {
        assert_ne!(OrderId::generate(&sale("s")), OrderId::generate(&sale("s")));
    }

    #[test]
    fn malformed_order_ids_are_refused() {
        for bad in [
            "",
            "s1",
            "s1.",
            "s1.xyz",
            "bad sale.0123456789abcdef0123456789abcdef",
        ] {
            assert!(bad.parse::<OrderId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn sale_ids_are_short_and_plain() {
        assert!("spring-2026_a".parse::<SaleId>().is_ok());
        for bad in ["", "a.b", "a b", "{tag}", &"x".repeat(MAX_SALE_ID_LEN + 1)] {
            assert!(bad.parse::<SaleId>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn user_ids_are_bounded() {
        assert!("user-1".parse::<UserId>().is_ok());
        assert!("".parse::<UserId>().is_err());
        assert!("u".repeat(MAX_USER_ID_LEN + 1).parse::<UserId>().is_err());
        // Characters, as the document's maxLength counts them, not bytes.
        assert!("€".repeat(MAX_USER_ID_LEN).parse::<UserId>().is_ok());
        assert!("€".repeat(MAX_USER_ID_LEN + 1).parse::<UserId>().is_err());
        assert!("a\nb".parse::<UserId>().is_err());
    }

    #[test]
    fn an_invalid_id_says_what_a_valid_one_looks_like() {
        let error = "a b".parse::<SaleId>().unwrap_err().to_string();
        assert!(error.starts_with("a sale id is 1 to 64"), "{error}");
        assert!(error.contains("\"a b\""), "{error}");
    }

    #[test]
    fn ids_deserialise_only_when_valid() {
        assert!(serde_json::from_str::<UserId>("\"alice\"").is_ok());
        assert!(serde_json::from_str::<UserId>("\"\"").is_err());
        assert!(serde_json::from_str::<SaleId>("\"x y\"").is_err());
    }
}
