//! What the images can run, and what each binary reads from its environment.
//!
//! The variables come from each binary's own clap `Command` (`Arg::get_env`), so the compose
//! check and the code cannot disagree. The binaries the images ship come from the
//! Dockerfile's `cargo build` line, read against the workspace's binaries (`cargo metadata`).

use std::collections::BTreeSet;
use std::sync::LazyLock;

use anyhow::Context;
use clap::CommandFactory;
use regex::Regex;

/// The command line of `binary`, or `None` for a binary this tool does not know.
///
/// A new service adds its line here (the "Add a consumer" walkthrough of `docs/guide.md` says so).
pub fn command_of(binary: &str) -> Option<clap::Command> {
    Some(match binary {
        "gateway" => gateway::Config::command(),
        "order-worker" => order_worker::Config::command(),
        "sms-worker" => sms_worker::Config::command(),
        "stats-worker" => stats_worker::Config::command(),
        "points-worker" => points_worker::Config::command(),
        "loadtest" => loadtest::Cli::command(),
        "seckill" => seckill::Cli::command(),
        _ => return None,
    })
}

/// The environment variables `binary` reads when run with `args` (of the subcommand its
/// arguments name, if any).
pub fn variables_read_by(binary: &str, args: &[String]) -> anyhow::Result<BTreeSet<String>> {
    let mut command = command_of(binary).with_context(|| {
        format!("{binary} is not a binary xtask knows (add it to xtask/src/binaries.rs)")
    })?;
    for subcommand in args.iter().take_while(|arg| !arg.starts_with('-')) {
        command = command
            .find_subcommand(subcommand)
            .with_context(|| format!("{binary} has no subcommand {subcommand}"))?
            .clone();
    }
    Ok(command
        .get_arguments()
        .filter_map(|arg| arg.get_env())
        .map(|name| name.to_string_lossy().into_owned())
        .collect())
}

/// The Dockerfile's stages (`FROM … AS <stage>`).
pub fn dockerfile_stages(dockerfile: &str) -> BTreeSet<String> {
    static STAGE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)").expect("a valid pattern"));
    STAGE
        .captures_iter(dockerfile)
        .map(|found| found[1].to_owned())
        .collect()
}

/// The binaries of `workspace` (package → binaries) that the Dockerfile's `cargo build`
/// builds: every package's with `--workspace` (minus `--exclude`d ones), else those of the
/// `-p` packages.
pub fn shipped_binaries(dockerfile: &str, workspace: &[(String, Vec<String>)]) -> BTreeSet<String> {
    let build_line = continued_lines(dockerfile)
        .into_iter()
        .find(|line| line.contains("cargo build"))
        .unwrap_or_default();
    let words: Vec<&str> = build_line.split_whitespace().collect();
    let named_after = |flags: &[&str]| -> BTreeSet<&str> {
        words
            .windows(2)
            .filter(|pair| flags.contains(&pair[0]))
            .map(|pair| pair[1])
            .collect()
    };
    let whole_workspace = words.contains(&"--workspace");
    let excluded = named_after(&["--exclude"]);
    let packages = named_after(&["-p", "--package"]);
    workspace
        .iter()
        .filter(|(package, _)| {
            if whole_workspace {
                !excluded.contains(package.as_str())
            } else {
                packages.contains(package.as_str())
            }
        })
        .flat_map(|(_, binaries)| binaries.iter().cloned())
        .collect()
}

/// The workspace's packages and their binaries, from `cargo metadata`.
pub fn workspace_binaries() -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--locked"])
        .output()
        .context("running cargo metadata")?;
    anyhow::ensure!(
        output.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    let packages = metadata["packages"].as_array().context("no packages")?;
    Ok(packages
        .iter()
        .map(|package| {
            let binaries = package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|target| {
                    target["kind"]
                        .as_array()
                        .is_some_and(|kinds| kinds.iter().any(|kind| kind == "bin"))
                })
                .filter_map(|target| target["name"].as_str().map(str::to_owned))
                .collect();
            (
                package["name"].as_str().unwrap_or_default().to_owned(),
                binaries,
            )
        })
        .collect())
}

/// The Dockerfile's instructions with `\`-continued lines joined.
fn continued_lines(dockerfile: &str) -> Vec<String> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        if let Some(continued) = line.trim_end().strip_suffix('\\') {
            current.push_str(continued);
            current.push(' ');
        } else {
            current.push_str(line);
            joined.push(std::mem::take(&mut current));
        }
    }
    joined
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace() -> Vec<(String, Vec<String>)> {
        vec![
            ("gateway".into(), vec!["gateway".into()]),
            ("xtask".into(), vec!["xtask".into()]),
            (
                "loadtest".into(),
                vec!["loadtest".into(), "hello-world".into()],
            ),
        ]
    }

    #[test]
    fn a_workspace_build_ships_every_binary_but_the_excluded() {
        let dockerfile = "RUN cargo build --release --workspace \\\n    --exclude xtask && cp";
        let shipped = shipped_binaries(dockerfile, &workspace());
        assert_eq!(
            shipped,
            BTreeSet::from(["gateway".into(), "loadtest".into(), "hello-world".into()])
        );
    }

    #[test]
    fn a_package_build_ships_only_its_packages() {
        let shipped = shipped_binaries("RUN cargo build -p gateway", &workspace());
        assert_eq!(shipped, BTreeSet::from(["gateway".into()]));
    }

    /// A variable whose value may carry a credential: a URL (`user:password@`), a secret, a
    /// token (not a token's lifetime), a password.
    fn may_carry_a_credential(variable: &str) -> bool {
        ["_URL", "_TOKEN"]
            .iter()
            .any(|suffix| variable.ends_with(suffix))
            || ["SECRET", "PASSWORD"]
                .iter()
                .any(|word| variable.contains(word))
    }

    /// `command`'s and its subcommands' credential variables whose value `--help` would show.
    fn shown_credentials(command: &clap::Command) -> Vec<String> {
        let own = command.get_arguments().filter_map(|arg| {
            let variable = arg.get_env()?.to_string_lossy().into_owned();
            (may_carry_a_credential(&variable) && !arg.is_hide_env_values_set())
                .then(|| format!("{} {variable}", command.get_name()))
        });
        own.chain(command.get_subcommands().flat_map(shown_credentials))
            .collect()
    }

    #[test]
    fn no_binary_shows_a_credential_from_the_environment_in_its_help() {
        let shown: Vec<String> = workspace_binaries()
            .unwrap()
            .into_iter()
            .flat_map(|(_, binaries)| binaries)
            .filter_map(|binary| command_of(&binary))
            .flat_map(|command| shown_credentials(&command))
            .collect();
        assert!(shown.is_empty(), "set hide_env_values on {shown:?}");
        assert!(may_carry_a_credential("REDIS_URL") && may_carry_a_credential("ADMIN_TOKEN"));
        assert!(!may_carry_a_credential("TOKEN_TTL_SECS"));
    }

    #[test]
    fn the_loadtest_reads_the_variables_of_its_subcommand() {
        let args = ["flash-crowd".to_owned(), "--users=1".to_owned()];
        let read = variables_read_by("loadtest", &args).unwrap();
        assert!(read.contains("ADMIN_TOKEN"), "{read:?}");
        assert!(variables_read_by("loadtest", &["no-such".to_owned()]).is_err());
    }
}
