//! `cargo xtask`: the project's tooling, in Rust like the project (the alias is in
//! `.cargo/config.toml`). Bash stays for the thin scripts that install and start things.
//!
//! | module | concern |
//! | --- | --- |
//! | [`compose_check`] | `compose-check`: the compose stack against the code, then its topology run natively |
//! | [`compose`] | docker-compose.yml as compose reads it (variables, merge keys), typed |
//! | [`topology`] | its application services as this machine runs them, and the static checks |
//! | [`binaries`] | what the images ship, and the variables each binary reads (from its clap `Command`) |
//! | [`native`] | running the topology as processes: health, clients, scrape, SIGTERM |
//! | [`dashboard`] | the Grafana dashboard's queries against the exported series |
//! | [`render`] | the dashboard's panels drawn from a run by a real Prometheus (`--render`) |
//! | [`module_graph`] | import cycles between modules (a unit test keeps the workspace free of them) |

mod binaries;
mod compose;
mod compose_check;
mod dashboard;
mod module_graph;
mod native;
mod render;
mod topology;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "The project's tooling (cargo xtask …)")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Checks docker-compose.yml, the Dockerfile, the Prometheus config and the dashboard
    /// against the code, then runs the compose topology natively on the real services
    /// (`scripts/compose-check` prepares them and calls this).
    ComposeCheck {
        /// Where the release binaries are.
        #[arg(long)]
        bin_dir: PathBuf,
        /// Where logs and volumes of the run go.
        #[arg(long)]
        run_dir: PathBuf,
        /// Also draw the dashboard's panels from the run into this SVG.
        #[arg(long)]
        render: Option<PathBuf>,
    },
    /// Lists import cycles between modules of every crate (none is the only good answer).
    ModuleCycles {
        /// The workspace to look at (default: this one).
        root: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = workspace_root();
    match Cli::parse().task {
        Task::ComposeCheck {
            bin_dir,
            run_dir,
            render,
        } => {
            std::fs::create_dir_all(&run_dir)?;
            let run = compose_check::NativeRun {
                bin_dir,
                run_dir,
                render,
            };
            if let Err(failure) = compose_check::check(&root, &run).await {
                eprintln!("compose-check: FAILED: {failure:#}");
                std::process::exit(1);
            }
        }
        Task::ModuleCycles { root: other } => {
            let mut found = false;
            for src in crate_sources(other.as_deref().unwrap_or(&root))? {
                for cycle in module_graph::cycles_in_crate(&src)? {
                    println!("{}: {cycle}", src.display());
                    found = true;
                }
            }
            if found {
                std::process::exit(1);
            }
            println!("no import cycles");
        }
    }
    Ok(())
}

/// The repository this tool belongs to.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_owned()
}

/// The `src` directories of the workspace's crates (top level and `examples/`).
fn crate_sources(root: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .collect();
    if let Ok(examples) = std::fs::read_dir(root.join("examples")) {
        dirs.extend(examples.filter_map(Result::ok).map(|entry| entry.path()));
    }
    Ok(dirs
        .into_iter()
        .map(|dir| dir.join("src"))
        .filter(|src| src.join("lib.rs").exists() || src.join("main.rs").exists())
        .collect())
}
