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

    fn parse(line: &'a str) -> Option<Self> {
        if line.starts_with('#') {
            return None;
        }
        let (series, value) = line.rsplit_once(' ')?;
        let value = value.parse().ok()?;
        let Some((name, labels)) = series.split_once('{') else {
            return Some(Self {
                name: series,
                labels: Vec::new(),
                value,
            });
        };
        let labels = labels
            .strip_suffix('}')?
            .split(',')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (label, value) = pair.split_once('=')?;
                Some((label, value.trim_matches('"')))
            })
            .collect::<Option<_>>()?;
        Some(Self {
            name,
            labels,
            value,
        })
    }
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
}
