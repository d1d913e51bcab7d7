//! Reading the services' `/metrics` (Prometheus text format): the proofs ask for a metric by
//! the name constant its service exports and for the labels they care about, and sum what
//! matches, never by matching a spelled-out line.

/// One sample line: `name{label="value",…} number`.
#[derive(Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    pub labels: Vec<(&'a str, &'a str)>,
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// The value of `label`, if the sample has it.
    pub fn label(&self, name: &str) -> Option<&'a str> {
        self.labels
            .iter()
            .find(|(label, _)| *label == name)
            .map(|(_, value)| *value)
    }

    /// `name{label="value",…} value [timestamp]`; a label's value is kept as written (its
    /// escapes too), and may hold any character, a comma, a brace or a space included.
    fn parse(line: &'a str) -> Option<Self> {
        if line.starts_with('#') {
            return None;
        }
        let name_end = line.find(['{', ' '])?;
        let (name, rest) = line.split_at(name_end);
        let (labels, rest) = match rest.strip_prefix('{') {
            Some(labelled) => parse_labels(labelled)?,
            None => (Vec::new(), rest),
        };
        let value = rest.split_whitespace().next()?.parse().ok()?;
        Some(Self {
            name,
            labels,
            value,
        })
    }
}

/// The `label="value"` pairs after a sample's `{`, and what follows its `}`.
fn parse_labels(mut rest: &str) -> Option<(Vec<(&str, &str)>, &str)> {
    let mut labels = Vec::new();
    loop {
        rest = rest.strip_prefix(',').unwrap_or(rest);
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (label, quoted) = rest.split_once("=\"")?;
        let end = closing_quote(quoted)?;
        labels.push((label, &quoted[..end]));
        rest = &quoted[end + 1..];
    }
}

/// Where the quoted value that `text` begins ends: the first `"` no backslash escapes.
fn closing_quote(text: &str) -> Option<usize> {
    let mut escaped = false;
    for (at, character) in text.char_indices() {
        match character {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(at),
            _ => {}
        }
    }
    None
}

/// The samples of the metric `name` in `text`.
pub fn samples<'a>(text: &'a str, name: &'a str) -> impl Iterator<Item = Sample<'a>> {
    text.lines()
        .filter_map(Sample::parse)
        .filter(move |sample| sample.name == name)
}

/// The sum of the samples of `name` whose labels include every pair of `labels`.
pub fn sum(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text, name)
        .filter(|sample| {
            labels
                .iter()
                .all(|(label, value)| sample.label(label) == Some(value))
        })
        .map(|sample| sample.value)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# TYPE seckill_consumer_messages_total counter
seckill_consumer_messages_total{group=\"sms-worker\",outcome=\"handled\"} 12
seckill_consumer_messages_total{group=\"sms-worker\",outcome=\"dead_lettered\"} 1
seckill_consumer_messages_total{group=\"order-worker\",outcome=\"handled\"} 7
seckill_consumer_messages_total_other 99
process_up 1
";

    #[test]
    fn samples_are_summed_by_name_and_by_the_labels_asked_for_only() {
        let consumed = "seckill_consumer_messages_total";
        assert_eq!(sum(TEXT, consumed, &[]) as u64, 20);
        assert_eq!(sum(TEXT, consumed, &[("group", "sms-worker")]) as u64, 13);
        let dead = [("group", "sms-worker"), ("outcome", "dead_lettered")];
        assert_eq!(sum(TEXT, consumed, &dead) as u64, 1);
        assert_eq!(sum(TEXT, consumed, &[("group", "stats-worker")]) as u64, 0);
        assert_eq!(sum(TEXT, "process_up", &[]) as u64, 1);
    }

    #[test]
    fn a_sample_names_its_labels() {
        let sample = samples(TEXT, "seckill_consumer_messages_total")
            .nth(2)
            .expect("a third sample");
        assert_eq!(sample.label("group"), Some("order-worker"));
        assert_eq!(sample.label("partition"), None);
        assert_eq!(sample.value as u64, 7);
    }

    #[test]
    fn a_label_value_may_hold_commas_braces_spaces_and_escaped_quotes() {
        let line = r#"seckill_x_total{reason="a, b} c",quote="say \"hi\"",kind="k"} 3 1700000000"#;
        let sample = Sample::parse(line).expect("a sample");
        assert_eq!(sample.name, "seckill_x_total");
        assert_eq!(sample.label("reason"), Some("a, b} c"));
        assert_eq!(sample.label("quote"), Some(r#"say \"hi\""#));
        assert_eq!(sample.label("kind"), Some("k"));
        assert_eq!(sample.value as u64, 3);
        assert_eq!(Sample::parse("seckill_x_total{broken=\"} 1"), None);
    }
}
