//! Secrets a deployment must not run with: too short, published, or guessable.
//!
//! A template's defaults get copied into deployments. The placeholders this repository
//! publishes (in `docker-compose.yml` and `.env.example`) are long enough to pass a length
//! check, and anyone who read the repository can sign tokens with them. Outside demo mode a
//! service refuses them, and anything else that is obviously not a secret, with a sentence
//! that says why ([`crate::config::Secret::require`]). The rules are kept simple enough to
//! state in one line each:
//!
//! 1. shorter than the service's minimum;
//! 2. one of [`PUBLISHED_PLACEHOLDERS`], or containing "change-me" / "changeme" in any case;
//! 3. fewer than [`MIN_DISTINCT_BYTES`] distinct bytes ("aaaa…", "secretsecret…").

/// Every placeholder secret the repository publishes for copying. A test reads
/// `docker-compose.yml` and `.env.example` and fails when one of theirs is missing here.
pub const PUBLISHED_PLACEHOLDERS: [&str; 4] = [
    "change-me-jwt-secret-of-at-least-32-bytes",
    "change-me-admin-token-of-at-least-32-bytes",
    "change-me-change-me-change-me-change-me",
    "change-me-admin-token-change-me-admin",
];

/// Fewest distinct bytes of an acceptable secret. A random hex secret of 32 characters has
/// about 14; a word repeated to length has its letters' count.
pub const MIN_DISTINCT_BYTES: usize = 8;

/// How to make a secret that passes, for the refusal's sentence.
const HOW_TO_MAKE_ONE: &str =
    "generate one (e.g. `openssl rand -base64 48`), or run in demo mode (DEMO_MODE=true)";

/// Why `secret`, the value of `variable`, must not protect a deployment; `None` when it may.
pub fn weakness(variable: &str, secret: &str, min_len: usize) -> Option<String> {
    if secret.len() < min_len {
        return Some(format!(
            "{variable} must be at least {min_len} bytes long; {HOW_TO_MAKE_ONE}"
        ));
    }
    if PUBLISHED_PLACEHOLDERS.contains(&secret) || is_marked_placeholder(secret) {
        return Some(format!(
            "{variable} is a placeholder published with this repository, so anyone can use it; {HOW_TO_MAKE_ONE}"
        ));
    }
    let distinct = distinct_bytes(secret);
    if distinct < MIN_DISTINCT_BYTES {
        return Some(format!(
            "{variable} uses only {distinct} distinct characters, too few to be hard to guess; {HOW_TO_MAKE_ONE}"
        ));
    }
    None
}

fn is_marked_placeholder(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    lower.contains("change-me") || lower.contains("changeme")
}

fn distinct_bytes(secret: &str) -> usize {
    let mut seen = [false; 256];
    for byte in secret.bytes() {
        seen[usize::from(byte)] = true;
    }
    seen.iter().filter(|&&present| present).count()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const RANDOM: &str = "q3Vh0x9LrT2mWc8kPzA7eNbY4sDfG6uJ";

    fn refusal(secret: &str) -> String {
        weakness("JWT_SECRET", secret, 32).expect("refused")
    }

    #[test]
    fn a_random_secret_passes() {
        assert_eq!(weakness("JWT_SECRET", RANDOM, 32), None);
    }

    #[test]
    fn a_short_secret_is_refused_by_name_and_length() {
        let refused = refusal(&RANDOM[..31]);
        assert!(
            refused.starts_with("JWT_SECRET must be at least 32 bytes long"),
            "{refused}"
        );
    }

    #[test]
    fn a_placeholder_is_refused_however_it_is_spelled() {
        for secret in [
            "please-CHANGE-ME-before-deploying-this-thing",
            "ChangeMe0123456789abcdefghijklmnopq",
        ] {
            let refused = refusal(secret);
            assert!(refused.contains("is a placeholder"), "{secret}: {refused}");
        }
    }

    #[test]
    fn a_repetitive_secret_is_refused_counting_its_characters() {
        let refused = refusal(&"secret".repeat(6));
        assert!(
            refused.starts_with("JWT_SECRET uses only 5 distinct characters"),
            "{refused}"
        );
        assert!(refusal(&"x".repeat(64)).contains("only 1 distinct"));
    }

    const SECRETS: [&str; 2] = ["JWT_SECRET", "ADMIN_TOKEN"];

    /// The values `docker-compose.yml` (`${JWT_SECRET:-…}`) and `.env.example`
    /// (`JWT_SECRET=…`) publish for the secrets.
    fn published_secrets() -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |file: &str| std::fs::read_to_string(root.join(file)).expect(file);
        let compose = read("docker-compose.yml");
        let in_compose = SECRETS.iter().flat_map(|name| {
            let opening = format!("${{{name}:-");
            compose
                .match_indices(&opening)
                .filter_map(|(at, _)| compose[at + opening.len()..].split('}').next())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        });
        let env = read(".env.example");
        let in_env = env.lines().filter_map(|line| {
            let (name, value) = line.trim_start_matches(['#', ' ']).split_once('=')?;
            SECRETS.contains(&name).then(|| value.trim().to_owned())
        });
        let published: Vec<String> = in_compose.chain(in_env).collect();
        assert!(published.len() >= 4, "found {published:?}");
        published
    }

    #[test]
    fn every_secret_the_repository_publishes_is_listed_and_refused() {
        for secret in published_secrets() {
            assert!(
                PUBLISHED_PLACEHOLDERS.contains(&secret.as_str()),
                "{secret:?} is published but not in PUBLISHED_PLACEHOLDERS"
            );
            assert!(
                weakness("ADMIN_TOKEN", &secret, 32).is_some(),
                "{secret:?} passes"
            );
        }
    }
}
