"""Runs the application services of docker-compose.yml natively, exactly as compose would start
them, and checks that the compose file, the Prometheus config and the Grafana dashboard agree
with what the binaries really read, listen on and export.

Input is the output of `docker-compose config` (validated, interpolated, normalised). For each
application service (one built from this repository) it takes the command and the environment
and maps what only exists inside compose's network onto this machine:

  * `redis:6379`, `kafka:9092`, `postgres:5432` -> the services of `scripts/services`;
  * a listen address `0.0.0.0:<port>` -> a free loopback port per replica (they would collide);
  * `<app service>:<port>` (e.g. the load test's `http://gateway:8080`) -> that replica's port;
  * a volume's mount path -> a directory of this run.

It fails when a build target or command is not one the Dockerfile provides; when a variable
is one the binary does not read (a renamed variable would silently fall back to a default);
when a port in a health check, a port mapping, a URL or a Prometheus target is not the one the
service listens on; when a dashboard query names a metric, a label value or a grouping label
the running services do not export; when the flash crowd breaks an invariant; or when a
service does not exit 0 on SIGTERM.

usage: compose_native.py <compose config yaml> <bin dir> <run dir> <prometheus.yml> <dashboard.json> <Dockerfile> [<png>]

With a PNG path it also draws the dashboard's panels from the run (see dashboard_render.py).
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

# Where each infrastructure service listens inside compose's network (its image's port).
INFRA_PORTS = {"redis": 6379, "kafka": 9092, "postgres": 5432}
LISTEN = re.compile(r"^0\.0\.0\.0:(\d+)$")
# `host:port`, but not `user:password@` (a numeric password is not a port).
SERVICE_ADDRESS = re.compile(r"\b([a-z][a-z0-9-]*):(\d+)\b(?!@)")
SELECTOR = re.compile(r"\b(seckill_[a-z0-9_]+)(\{[^}]*\})?")
MATCHER = re.compile(r'(\w+)\s*=\s*"([^"]*)"')
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)")


class CheckFailed(Exception):
    pass


def fail(message):
    raise CheckFailed(message)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def native_infra():
    """host:port of each infrastructure service on this machine, from `scripts/services env`."""
    from urllib.parse import urlparse

    redis = urlparse(os.environ["REDIS_URL"])
    postgres = urlparse(os.environ["DATABASE_URL"])
    return {
        "redis": f"{redis.hostname}:{redis.port or 6379}",
        "kafka": os.environ["KAFKA_BROKERS"].split(",")[0],
        "postgres": f"{postgres.hostname}:{postgres.port or 5432}",
    }


def env_names_read_by(binary, args):
    """Every environment variable the command reads, from the `[env: NAME…]` of its --help
    (of its subcommand, when the arguments start with one)."""
    subcommands = []
    for arg in args:
        if arg.startswith("-"):
            break
        subcommands.append(arg)
    help_text = subprocess.run(
        [binary, *subcommands, "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", help_text))


class Instance:
    """One replica of an application service, with its compose settings mapped natively."""

    def __init__(self, service, replica, spec):
        self.name = f"{service}-{replica}"
        self.service = service
        self.spec = spec
        self.listen_ports = {}  # container port -> native port
        self.env = {}
        self.command = []
        self.process = None


class Topology:
    def __init__(self, compose, bin_dir, run_dir):
        self.compose = compose
        self.bin_dir = bin_dir
        self.run_dir = run_dir
        self.infra = native_infra()
        self.instances = []
        services = compose["services"]
        self.apps = {name: spec for name, spec in services.items() if "build" in spec}
        for name in services:
            if name not in self.apps and name not in INFRA_PORTS and name not in (
                "kafka-init",
                "prometheus",
                "grafana",
            ):
                fail(f"service {name!r} is neither built here nor known infrastructure")
        for name, spec in self.apps.items():
            replicas = spec.get("deploy", {}).get("replicas", 1)
            for replica in range(1, replicas + 1):
                instance = Instance(name, replica, spec)
                for value in spec.get("environment", {}).values():
                    match = LISTEN.match(str(value))
                    if match:
                        instance.listen_ports[int(match.group(1))] = free_port()
                self.instances.append(instance)

    def first(self, service):
        return next(i for i in self.instances if i.service == service)

    def listen_ports_of(self, service):
        return set(self.first(service).listen_ports)

    def map_value(self, instance, value):
        """A compose value as this machine needs it (see the module docs)."""
        value = str(value)
        match = LISTEN.match(value)
        if match:
            return f"127.0.0.1:{instance.listen_ports[int(match.group(1))]}"

        def address(found):
            host, port = found.group(1), int(found.group(2))
            if host in INFRA_PORTS:
                if port != INFRA_PORTS[host]:
                    fail(f"{instance.service}: {host}:{port}, but {host} listens on {INFRA_PORTS[host]}")
                return self.infra[host]
            if host in self.apps:
                target = self.first(host)
                if port not in target.listen_ports:
                    fail(f"{instance.service}: {host}:{port}, but {host} listens on {sorted(target.listen_ports)}")
                return f"127.0.0.1:{target.listen_ports[port]}"
            return found.group(0)

        value = SERVICE_ADDRESS.sub(address, value)
        for volume in instance.spec.get("volumes", []):
            source, target = volume_mount(volume)
            mounted = re.compile(r"(?<![\w/])" + re.escape(target) + r"(?=/|$)")
            if mounted.search(value):
                local = os.path.join(self.run_dir, source)
                os.makedirs(local, exist_ok=True)
                value = mounted.sub(local, value)
        return value

    def check_dockerfile(self, dockerfile):
        """Every build target is a stage of the Dockerfile, and every command one of the
        binaries its build stage copies into the images."""
        stages = set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", dockerfile, re.MULTILINE | re.IGNORECASE))
        shipped = set(re.findall(r"target/release/([a-z0-9-]+)", dockerfile))
        for name, spec in self.apps.items():
            target = spec["build"].get("target")
            if target not in stages:
                fail(f"{name}: build target {target!r} is not a stage of the Dockerfile")
            command = spec.get("command") or [None]
            if command[0] not in shipped:
                fail(f"{name}: command {command[0]!r} is not a binary the Dockerfile ships")

    def prepare(self):
        """Maps every instance's command and environment, refusing variables nobody reads."""
        for instance in self.instances:
            command = instance.spec.get("command") or fail(f"{instance.service} has no command")
            binary = os.path.join(self.bin_dir, command[0])
            if not os.access(binary, os.X_OK):
                fail(f"{instance.service}: command {command[0]!r} is not one of the built binaries")
            known = env_names_read_by(binary, command[1:])
            for name in instance.spec.get("environment", {}):
                if name not in known:
                    fail(f"{instance.service}: {name} is not a variable {command[0]} reads")
            instance.command = [binary] + [self.map_value(instance, a) for a in command[1:]]
            instance.env = {
                name: self.map_value(instance, value)
                for name, value in instance.spec.get("environment", {}).items()
            }

    def check_ports(self):
        """Health checks and published ports must name the port the service listens on."""
        for name, spec in self.apps.items():
            listening = self.listen_ports_of(name)
            for mapping in spec.get("ports", []):
                container_port = int(mapping["target"] if isinstance(mapping, dict) else str(mapping).split(":")[-1].split("/")[0])
                if container_port not in listening:
                    fail(f"{name}: publishes container port {container_port}, listens on {sorted(listening)}")
            test = spec.get("healthcheck", {}).get("test", [])
            for url in (t for t in test if t.startswith("http")):
                port = int(re.search(r":(\d+)/", url).group(1))
                if port not in listening:
                    fail(f"{name}: health check asks port {port}, listens on {sorted(listening)}")

    def check_prometheus(self, prometheus):
        """Every scrape target is a service's listen port, and every long-running service is scraped."""
        scraped = set()
        for job in prometheus["scrape_configs"]:
            targets = [t for c in job.get("static_configs", []) for t in c["targets"]]
            for sd in job.get("dns_sd_configs", []):
                targets += [f"{n}:{sd['port']}" for n in sd["names"]]
            for target in targets:
                host, port = target.rsplit(":", 1)
                if host not in self.apps or int(port) not in self.listen_ports_of(host):
                    fail(f"Prometheus job {job['job_name']} scrapes {target}, which no service listens on")
                scraped.add(host)
        unscraped = {n for n, s in self.apps.items() if "profiles" not in s} - scraped
        if unscraped:
            fail(f"Prometheus scrapes no target of {sorted(unscraped)}")

    def start(self, names):
        for instance in (i for i in self.instances if i.service in names):
            log = open(os.path.join(self.run_dir, f"{instance.name}.log"), "w")
            env = {"PATH": os.environ["PATH"], **instance.env}
            instance.process = subprocess.Popen(instance.command, env=env, stdout=log, stderr=log)

    def wait_healthy(self, names, timeout=60):
        """Polls each instance's own health check URL, as compose's `service_healthy` does."""
        deadline = time.time() + timeout
        for instance in (i for i in self.instances if i.service in names):
            urls = [t for t in instance.spec.get("healthcheck", {}).get("test", []) if t.startswith("http")]
            for url in urls:
                port = int(re.search(r":(\d+)/", url).group(1))
                url = re.sub(r"//[^/]+/", f"//127.0.0.1:{instance.listen_ports[port]}/", url)
                while True:
                    if instance.process.poll() is not None:
                        fail(f"{instance.name} exited with {instance.process.returncode}; see its log")
                    try:
                        with urllib.request.urlopen(url, timeout=2) as response:
                            if response.status == 200:
                                break
                    except OSError:
                        pass
                    if time.time() > deadline:
                        fail(f"{instance.name} not healthy at {url} within {timeout} s")
                    time.sleep(0.2)

    def scrape(self):
        """Every series the running instances export: metric name -> list of label sets."""
        series = {}
        for instance in (i for i in self.instances if i.process and i.listen_ports):
            for native in instance.listen_ports.values():
                with urllib.request.urlopen(f"http://127.0.0.1:{native}/metrics", timeout=5) as r:
                    for line in r.read().decode().splitlines():
                        if line and not line.startswith("#"):
                            name, _, rest = line.partition("{")
                            name = name.split(" ")[0]
                            labels = dict(MATCHER.findall(rest.split("}")[0])) if rest else {}
                            series.setdefault(name, []).append(labels)
        return series

    def scrape_targets(self):
        """{service: ["127.0.0.1:port", …]} of every running instance's metrics."""
        targets = {}
        for instance in (i for i in self.instances if i.process and i.listen_ports):
            for native in instance.listen_ports.values():
                targets.setdefault(instance.service, []).append(f"127.0.0.1:{native}")
        return targets

    def stop(self):
        """SIGTERM to everyone; returns the instances that did not exit 0."""
        running = [i for i in self.instances if i.process and i.process.poll() is None]
        for instance in running:
            instance.process.send_signal(signal.SIGTERM)
        bad = []
        for instance in (i for i in self.instances if i.process):
            try:
                code = instance.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                code = "killed after 30 s"
            if code != 0:
                bad.append(f"{instance.name}: {code}")
        return bad


def volume_mount(volume):
    """(source, target) of a volume, in the short (`src:/path[:ro]`) or the long syntax."""
    if isinstance(volume, str):
        source, target = volume.split(":")[:2]
        return os.path.basename(source), target
    return os.path.basename(volume.get("source") or "anonymous"), volume["target"]


def dashboard_queries(dashboard):
    """What each panel query needs to exist: (metric, label values it selects, labels it
    groups by) for every `seckill_` metric it names."""
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    if not exprs:
        fail("the dashboard has no queries")
    needs = []
    for expr in exprs:
        grouped = {label.strip() for found in GROUPING.findall(expr) for label in found.split(",") if label.strip()}
        for metric, selector in SELECTOR.findall(expr):
            needs.append((metric, dict(MATCHER.findall(selector)), frozenset(grouped)))
    return needs


def unanswered(needs, series):
    """The queries the exported series cannot answer, as sentences."""
    problems = []
    for metric, selected, grouped in needs:
        label_sets = series.get(metric)
        if not label_sets:
            problems.append(f"{metric} is not exported")
            continue
        if selected and not any(all(ls.get(k) == v for k, v in selected.items()) for ls in label_sets):
            problems.append(f"{metric} has no series with {selected}")
        for label in grouped:
            if not any(label in ls for ls in label_sets):
                problems.append(f"{metric} has no label {label!r} to group by")
    return sorted(set(problems))


def main(compose_path, bin_dir, run_dir, prometheus_path, dashboard_path, dockerfile_path, png_path=None):
    with open(compose_path) as f:
        compose = yaml.safe_load(f)
    with open(dockerfile_path) as f:
        dockerfile = f.read()
    with open(prometheus_path) as f:
        prometheus = yaml.safe_load(f)
    with open(dashboard_path) as f:
        dashboard = json.load(f)

    topology = Topology(compose, bin_dir, run_dir)
    topology.check_dockerfile(dockerfile)
    topology.prepare()
    topology.check_ports()
    topology.check_prometheus(prometheus)
    needs = dashboard_queries(dashboard)

    long_running = [n for n, s in topology.apps.items() if "profiles" not in s]
    clients = [n for n, s in topology.apps.items() if "profiles" in s]
    print(f"compose-check: starting {', '.join(i.name for i in topology.instances if i.service in long_running)}", file=sys.stderr)
    recorder = None
    try:
        topology.start(long_running)
        topology.wait_healthy(long_running)
        if png_path:
            from dashboard_render import Recorder

            targets = topology.scrape_targets()
            recorder = Recorder(run_dir, targets, free_port())
            recorder.wait_until_scraping(sum(len(t) for t in targets.values()))
            time.sleep(3)  # a baseline before the crowd
        for client in clients:
            print(f"compose-check: running {client} as compose would", file=sys.stderr)
            instance = topology.first(client)
            result = subprocess.run(instance.command, env={"PATH": os.environ["PATH"], **instance.env})
            if result.returncode != 0:
                fail(f"{client} exited with {result.returncode} (an invariant failed, or it could not run)")
        exported = topology.scrape()
        if recorder:
            time.sleep(20)  # the drain and the settling gauges
            recorder.render(dashboard, png_path)
            print(f"compose-check: dashboard panels drawn to {png_path}", file=sys.stderr)
    finally:
        if recorder:
            recorder.stop()
        not_clean = topology.stop()
    problems = unanswered(needs, exported)
    if problems:
        fail(f"dashboard queries the services cannot answer: {problems}")
    if not_clean:
        fail(f"not a clean exit on SIGTERM: {not_clean}")
    print(json.dumps({
        "instances": [i.name for i in topology.instances if i.process],
        "dashboard_metrics": sorted({metric for metric, _, _ in needs}),
        "violations": [],
    }))


if __name__ == "__main__":
    try:
        main(*sys.argv[1:8])
    except CheckFailed as failure:
        print(f"compose-check: FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
