# Shared by the entry points of the proofs (scripts/e2e, chaos, nemesis), scripts/bench, scripts/profile
# and scripts/compose-check (source it).
#
#   stack_prepare   starts the real services (scripts/services), exports their URLs, and builds
#                   every binary of the workspace in release mode into $bin
#   stack_init      stack_prepare, then a fresh namespace (Redis key prefix, topics) and a run
#                   directory .runs/<run id>/ for services started as separate processes with
#                   stack_start, all stopped on exit
#   stack_start_release_broker PORT
#                   a release-build broker of the run's own (scripts/bench, scripts/profile)

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

stack_init() { # name of the run, e.g. e2e
  stack_prepare
  run_id="$1-$(date +%s)-$$"
  work="$root/.runs/$run_id"
  mkdir -p "$work"
  export REDIS_KEY_PREFIX="$run_id" KAFKA_TOPIC="$run_id" KAFKA_DLQ_TOPIC="$run_id.dlq" \
    KAFKA_ORDER_EVENTS_TOPIC="$run_id.order-events"
  export KAFKA_TOPIC_PARTITIONS=6 LOG_FORMAT=json RUST_LOG=info
  # The simulated payment provider's books, shared by the gateways that charge and the order
  # workers that settle what they left: the record the load test checks money against.
  export PAYMENTS_FILE="$work/payments.jsonl"
  JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
  ADMIN_TOKEN=$(head -c 48 /dev/urandom | base64 | tr -d '\n/+=')
  export JWT_SECRET ADMIN_TOKEN
  gateway_url=http://127.0.0.1:18080
  declare -gA pids=()
  trap stack_stop_all EXIT
}

stack_start() { # name, then environment assignments and the command; appends to $work/<name>.log
  local name=$1
  shift
  # Appended: a process started again after a kill keeps its predecessor's log above its own.
  env "$@" >>"$work/$name.log" 2>&1 &
  pids[$name]=$!
}

stack_start_gateway() { # extra environment assignments
  stack_start gateway GATEWAY_LISTEN_ADDR=127.0.0.1:18080 METRICS_ADDR=127.0.0.1:19180 "$@" "$bin/gateway"
  stack_wait_for "$gateway_url/readyz" gateway
}

stack_wait_for() { # url, name of the log to show on failure
  for _ in $(seq 300); do
    curl -fs "$1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$1 never answered; the end of $2.log:" >&2
  tail -n 20 "$work/$2.log" >&2
  exit 1
}

stack_stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

stack_start_release_broker() { # port: a broker of the run's own, release build, fresh storage
  mkdir -p "$work/broker"
  stack_start broker RUST_LOG=warn bash -c "cd '$work/broker' && exec '$root/scripts/services' run-broker release $1"
  export KAFKA_BROKERS=127.0.0.1:$1
  for _ in $(seq 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return; sleep 0.1; done
  echo "the release broker did not open port $1" >&2
  exit 1
}
