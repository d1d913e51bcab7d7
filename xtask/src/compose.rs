//! `docker-compose.yml` as compose reads it: `${VARIABLE:-default}` interpolated, `<<` merge
//! keys applied, then the parts the checks need, typed.
//!
//! Only the compose features this project's file uses are understood; anything else fails to
//! parse with a message rather than being misread.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use anyhow::Context;
use regex::{Captures, Regex};
use serde::Deserialize;
use serde_norway::{Mapping, Value};

/// The services of a compose file.
#[derive(Debug, Clone, Deserialize)]
pub struct Compose {
    pub services: BTreeMap<String, Service>,
}

/// One service, as far as the checks look at it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Service {
    pub build: Option<Build>,
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: BTreeMap<String, Value>,
    /// `host:container` port mappings.
    #[serde(default)]
    pub ports: Vec<String>,
    pub healthcheck: Option<Healthcheck>,
    pub deploy: Option<Deploy>,
    /// Services with a profile are clients (`docker compose run`), not started by `up`.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// `source:/mount/path[:mode]`.
    #[serde(default)]
    pub volumes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Build {
    pub target: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Deploy {
    pub replicas: Option<u32>,
}

impl Service {
    /// Whether this repository builds the service (rather than pulling an image).
    pub fn is_built_here(&self) -> bool {
        self.build.is_some()
    }

    /// A client run on demand (`docker compose run`), not a long-running service.
    pub fn is_client(&self) -> bool {
        !self.profiles.is_empty()
    }

    pub fn replicas(&self) -> u32 {
        self.deploy.as_ref().and_then(|d| d.replicas).unwrap_or(1)
    }

    /// The environment with every value as the text the process receives.
    pub fn environment_text(&self) -> BTreeMap<String, String> {
        self.environment
            .iter()
            .map(|(name, value)| (name.clone(), scalar_text(value)))
            .collect()
    }

    /// The URLs its health check asks.
    pub fn health_urls(&self) -> impl Iterator<Item = &str> {
        self.healthcheck
            .iter()
            .flat_map(|h| h.test.iter())
            .filter(|part| part.starts_with("http"))
            .map(String::as_str)
    }
}

/// Parses a compose file, interpolating variables with `lookup` (the shell environment for
/// compose; nothing at all in the tests, so every default applies).
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<Compose> {
    let interpolated = interpolate(text, lookup);
    let mut document: Value =
        serde_norway::from_str(&interpolated).context("docker-compose.yml is not YAML")?;
    apply_merge_keys(&mut document);
    serde_norway::from_value(document).context("docker-compose.yml has an unexpected shape")
}

/// Every `${VARIABLE…}` the file reads.
pub fn variables(text: &str) -> Vec<String> {
    let mut names: Vec<String> = VARIABLE
        .captures_iter(text)
        .filter_map(|found| found.get(1).map(|name| name.as_str().to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// `$$`, `${NAME}`, `${NAME:-default}` (default when unset or empty) and `${NAME-default}`
/// (default when unset), as compose substitutes them.
static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\$\$|\$\{([A-Za-z0-9_]+)(?:(:?-)([^}]*))?\}").expect("a valid pattern")
});

fn interpolate(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    VARIABLE
        .replace_all(text, |found: &Captures<'_>| {
            let Some(name) = found.get(1) else {
                return "$".to_owned(); // `$$`
            };
            let value = lookup(name.as_str());
            match (found.get(2).map(|m| m.as_str()), value) {
                (Some(":-"), Some(value)) if value.is_empty() => found[3].to_owned(),
                (_, Some(value)) => value,
                (Some(_), None) => found[3].to_owned(),
                (None, None) => String::new(),
            }
        })
        .into_owned()
}

/// Applies YAML merge keys (`<<: *anchor`, or a list of anchors) everywhere: keys the
/// mapping sets itself win over merged ones.
fn apply_merge_keys(value: &mut Value) {
    match value {
        Value::Mapping(mapping) => {
            for (_, child) in mapping.iter_mut() {
                apply_merge_keys(child);
            }
            if let Some(merged) = mapping.remove("<<") {
                let sources = match merged {
                    Value::Sequence(sources) => sources,
                    single => vec![single],
                };
                for source in sources {
                    if let Value::Mapping(source) = source {
                        merge_missing(mapping, source);
                    }
                }
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

fn merge_missing(into: &mut Mapping, from: Mapping) {
    for (key, value) in from {
        if !into.contains_key(&key) {
            into.insert(key, value);
        }
    }
}

/// A scalar as the text a process receives (`1` → "1", `true` → "true").
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Null => String::new(),
        other => serde_norway::to_string(other).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_variables(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn variables_take_their_defaults_and_dollars_escape() {
        let lookup = |name: &str| (name == "SET").then(|| "given".to_owned());
        let text = "a: ${UNSET:-fallback} b: ${SET:-fallback} c: $$x d: ${UNSET}";
        assert_eq!(interpolate(text, &lookup), "a: fallback b: given c: $x d: ");
        assert_eq!(variables(text), ["SET", "UNSET"]);
    }

    #[test]
    fn merge_keys_fill_in_what_the_mapping_does_not_set() {
        let compose = parse(
            "x-base: &base\n  command: [base]\n  environment: {A: '1'}\nservices:\n  s:\n    <<: *base\n    environment: {B: 2}\n",
            &no_variables,
        )
        .unwrap();
        let service = &compose.services["s"];
        assert_eq!(service.command.as_deref(), Some(&["base".to_owned()][..]));
        assert_eq!(service.environment_text()["B"], "2");
        assert!(
            !service.environment.contains_key("A"),
            "the mapping's own key wins"
        );
    }
}
