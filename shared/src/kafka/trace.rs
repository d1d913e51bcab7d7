//! W3C trace context on events: the gateway logs the trace id with the purchase, and the
//! consumer loop logs it with each processed event, so one purchase can be followed across
//! processes.

use uuid::Uuid;

/// The W3C trace-context header every event carries.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A fresh W3C `traceparent` value (version 00, sampled) and its trace id.
pub fn new_traceparent() -> (String, String) {
    let trace_id = Uuid::new_v4().simple().to_string();
    (child_of(&trace_id), trace_id)
}

/// The `traceparent` an event is sent with, and its trace id: a new span in the caller's
/// trace when the request carried a well-formed W3C `traceparent` (the header OpenTelemetry
/// propagates), else a new trace. Either way one purchase keeps one trace id from the
/// client through the gateway into every worker's logs.
pub fn traceparent_for(incoming: Option<&str>) -> (String, String) {
    match incoming.and_then(trace_id_of) {
        Some(trace_id) => (child_of(trace_id), trace_id.to_owned()),
        None => new_traceparent(),
    }
}

fn child_of(trace_id: &str) -> String {
    let span_id = &Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace_id}-{span_id}-01")
}

/// The trace id inside a `traceparent` value, if it is well formed (version 00, 32 lowercase
/// hex digits, not all zero).
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    match (parts.next(), parts.next()) {
        (Some("00"), Some(trace_id))
            if trace_id.len() == 32
                && trace_id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                && trace_id.bytes().any(|b| b != b'0') =>
        {
            Some(trace_id)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_traceparent_carries_its_trace_id() {
        let (header, trace_id) = new_traceparent();
        assert_eq!(header.len(), 55);
        assert_eq!(trace_id_of(&header), Some(trace_id.as_str()));
    }

    #[test]
    fn a_malformed_traceparent_has_no_trace_id() {
        assert_eq!(trace_id_of("01-abc"), None);
        assert_eq!(trace_id_of(""), None);
        let zeros = format!("00-{}-{}-01", "0".repeat(32), "1".repeat(16));
        assert_eq!(trace_id_of(&zeros), None);
        let not_hex = format!("00-{}-{}-01", "z".repeat(32), "1".repeat(16));
        assert_eq!(trace_id_of(&not_hex), None);
    }

    #[test]
    fn an_incoming_trace_is_continued_with_a_new_span() {
        let incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let (outgoing, trace_id) = traceparent_for(Some(incoming));
        assert_eq!(trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace_id_of(&outgoing), Some(trace_id.as_str()));
        assert_ne!(outgoing, incoming, "a span of its own");
    }

    #[test]
    fn without_a_valid_incoming_trace_a_new_one_starts() {
        for incoming in [None, Some("garbage")] {
            let (outgoing, trace_id) = traceparent_for(incoming);
            assert_eq!(trace_id_of(&outgoing), Some(trace_id.as_str()));
        }
    }
}
