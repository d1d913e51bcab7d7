//! The Grafana dashboard against what the services export: every `seckill_` metric a panel
//! query names must be exported, with the label values it selects and the labels it groups by.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;

static SELECTOR: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b(seckill_[a-z0-9_]+)(\{[^}]*\})?").expect("a valid pattern"));
static MATCHER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(\w+)\s*=\s*"([^"]*)""#).expect("a valid pattern"));
static GROUPING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\bby\s*\(([^)]*)\)").expect("a valid pattern"));

/// The parts of a Grafana dashboard the checks and the drawing read.
#[derive(Debug, Clone, Deserialize)]
pub struct Dashboard {
    pub panels: Vec<Panel>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Panel {
    pub title: String,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default, rename = "fieldConfig")]
    pub field_config: serde_json::Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Target {
    pub expr: String,
    #[serde(default, rename = "legendFormat")]
    pub legend_format: String,
}

impl Panel {
    /// The panel's unit, as a y-axis caption.
    pub fn unit_caption(&self) -> &'static str {
        match self.field_config["defaults"]["unit"].as_str() {
            Some("s") => "seconds",
            Some("reqps") => "requests/s",
            Some("ops") => "per second",
            _ => "",
        }
    }
}

/// What one query needs to exist.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Need {
    pub metric: String,
    /// Label values it selects (`{outcome="accepted"}`).
    pub selected: BTreeMap<String, String>,
    /// Labels it aggregates by (`by (group)`).
    pub grouped: BTreeSet<String>,
}

/// Label sets of every exported series, by metric name.
pub type Series = BTreeMap<String, Vec<BTreeMap<String, String>>>;

/// What every query of the dashboard needs.
pub fn needs(dashboard: &Dashboard) -> anyhow::Result<Vec<Need>> {
    let exprs: Vec<&str> = dashboard
        .panels
        .iter()
        .flat_map(|panel| panel.targets.iter().map(|t| t.expr.as_str()))
        .collect();
    anyhow::ensure!(!exprs.is_empty(), "the dashboard has no queries");
    let mut needs = Vec::new();
    for expr in exprs {
        let grouped: BTreeSet<String> = GROUPING
            .captures_iter(expr)
            .flat_map(|found| {
                found[1]
                    .split(',')
                    .map(|label| label.trim().to_owned())
                    .filter(|label| !label.is_empty())
                    .collect::<Vec<_>>()
            })
            .collect();
        for found in SELECTOR.captures_iter(expr) {
            let selected = found
                .get(2)
                .map(|selector| {
                    MATCHER
                        .captures_iter(selector.as_str())
                        .map(|m| (m[1].to_owned(), m[2].to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            needs.push(Need {
                metric: found[1].to_owned(),
                selected,
                grouped: grouped.clone(),
            });
        }
    }
    Ok(needs)
}

/// The needs the exported `series` cannot answer, as sentences.
pub fn unanswered(needs: &[Need], series: &Series) -> Vec<String> {
    let mut problems = BTreeSet::new();
    for need in needs {
        let Some(label_sets) = series.get(&need.metric) else {
            problems.insert(format!("{} is not exported", need.metric));
            continue;
        };
        let selects = |labels: &BTreeMap<String, String>| {
            need.selected
                .iter()
                .all(|(name, value)| labels.get(name) == Some(value))
        };
        if !need.selected.is_empty() && !label_sets.iter().any(selects) {
            problems.insert(format!(
                "{} has no series with {:?}",
                need.metric, need.selected
            ));
        }
        for label in &need.grouped {
            if !label_sets.iter().any(|labels| labels.contains_key(label)) {
                problems.insert(format!(
                    "{} has no label {label:?} to group by",
                    need.metric
                ));
            }
        }
    }
    problems.into_iter().collect()
}

/// Adds the series of one Prometheus text exposition to `series`.
pub fn add_scrape(series: &mut Series, text: &str) {
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => {
                let inside = rest.split('}').next().unwrap_or_default();
                let labels = MATCHER
                    .captures_iter(inside)
                    .map(|m| (m[1].to_owned(), m[2].to_owned()))
                    .collect();
                (name, labels)
            }
            None => (line.split(' ').next().unwrap_or_default(), BTreeMap::new()),
        };
        series.entry(name.to_owned()).or_default().push(labels);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn queries_the_services_cannot_answer_are_named() {
        let dashboard: Dashboard = serde_json::from_value(serde_json::json!({"panels": [{
            "title": "t",
            "targets": [
                {"expr": "sum by (group) (rate(seckill_consumed_total{outcome=\"processed\"}[1m]))"},
                {"expr": "sum(seckill_gone)"}
            ]
        }]}))
        .unwrap();
        let needs = needs(&dashboard).unwrap();
        let consumed = |labels_of_it: &[(&str, &str)]| -> (String, Vec<_>) {
            ("seckill_consumed_total".into(), vec![labels(labels_of_it)])
        };
        let gone = || ("seckill_gone".to_owned(), vec![labels(&[])]);
        let cases = [
            (
                Series::from([consumed(&[("group", "g"), ("outcome", "processed")])]),
                "seckill_gone is not exported",
            ),
            (
                Series::from([
                    consumed(&[("consumer", "g"), ("outcome", "processed")]),
                    gone(),
                ]),
                "seckill_consumed_total has no label \"group\" to group by",
            ),
            (
                Series::from([consumed(&[("group", "g"), ("outcome", "done")]), gone()]),
                "seckill_consumed_total has no series with {\"outcome\": \"processed\"}",
            ),
        ];
        for (exported, problem) in cases {
            assert_eq!(unanswered(&needs, &exported), [problem]);
        }
    }

    #[test]
    fn a_scrape_becomes_label_sets_by_metric() {
        let mut series = Series::new();
        add_scrape(
            &mut series,
            "# TYPE x counter\nseckill_x_total{group=\"g\",outcome=\"ok\"} 3\nseckill_y 1\n",
        );
        assert_eq!(
            series["seckill_x_total"],
            [labels(&[("group", "g"), ("outcome", "ok")])]
        );
        assert_eq!(series["seckill_y"], [labels(&[])]);
    }
}
