# Shared by the thin entry points that run release binaries: scripts/e2e, chaos, nemesis, bench,
# profile and compose-check (source it). What they run is Rust (`loadtest`, `cargo xtask`).
#
#   stack_prepare   starts the real services (scripts/services), exports their URLs, builds
#                   every binary of the workspace in release mode into $bin, and leaves the
#                   working directory at the checkout's root (the proofs restart services
#                   through scripts/services and write their records to .runs/)

stack_prepare() {
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  cd "$root"
  scripts/services up
  eval "$(scripts/services env)"
  echo "== building the release binaries" >&2
  # The workspace's binaries, as the Dockerfile builds them: a new service needs no line here.
  cargo build --release --locked --workspace --bins --exclude xtask >&2
  bin="${CARGO_TARGET_DIR:-$root/target}/release"
}
