"""The checks of compose_native.py must fail on the mistakes they exist for: each case breaks
one thing in the real (normalised) compose file or Prometheus config and expects the refusal.
Nothing is started; run by scripts/compose-check before the native run.

usage: test_compose_native.py <compose config yaml> <bin dir> <prometheus.yml> <Dockerfile>
"""

import copy
import sys
import tempfile
import unittest

import yaml

import compose_native as cn

COMPOSE, BIN, PROMETHEUS, DOCKERFILE = sys.argv[1:5]


def load(path):
    with open(path) as f:
        return yaml.safe_load(f)


class Mistakes(unittest.TestCase):
    def setUp(self):
        self.compose = load(COMPOSE)
        self.prometheus = load(PROMETHEUS)
        with open(DOCKERFILE) as f:
            self.dockerfile = f.read()
        self.run_dir = tempfile.mkdtemp()

    def check(self, compose=None, prometheus=None, dockerfile=None):
        topology = cn.Topology(compose or self.compose, BIN, self.run_dir)
        topology.check_dockerfile(dockerfile or self.dockerfile)
        topology.prepare()
        topology.check_ports()
        topology.check_prometheus(prometheus or self.prometheus)

    def refused(self, expected, **kwargs):
        with self.assertRaises(cn.CheckFailed) as raised:
            self.check(**kwargs)
        self.assertIn(expected, str(raised.exception))

    def broken(self, service, change):
        compose = copy.deepcopy(self.compose)
        change(compose["services"][service])
        return compose

    def test_the_real_files_pass(self):
        self.check()

    def test_a_renamed_variable_is_refused(self):
        def rename(spec):
            spec["environment"]["DATABASE_URI"] = spec["environment"].pop("DATABASE_URL")
        self.refused("DATABASE_URI is not a variable", compose=self.broken("order-worker", rename))

    def test_a_health_check_on_the_wrong_port_is_refused(self):
        def port(spec):
            spec["healthcheck"]["test"] = ["CMD", "curl", "-fsS", "http://127.0.0.1:9999/healthz"]
        self.refused("health check asks port 9999", compose=self.broken("stats-worker", port))

    def test_a_url_to_a_port_nobody_listens_on_is_refused(self):
        def port(spec):
            spec["command"] = [a.replace("gateway:8080", "gateway:8000") for a in spec["command"]]
        self.refused("gateway:8000, but gateway listens on", compose=self.broken("loadtest", port))

    def test_a_wrong_infrastructure_port_is_refused(self):
        def port(spec):
            spec["environment"]["REDIS_URL"] = "redis://redis:6380"
        self.refused("redis:6380, but redis listens on 6379", compose=self.broken("gateway", port))

    def test_a_published_port_the_service_does_not_listen_on_is_refused(self):
        def port(spec):
            spec["ports"] = ["8080:8081"]
        self.refused("publishes container port 8081", compose=self.broken("gateway", port))

    def test_a_scrape_target_nobody_listens_on_is_refused(self):
        prometheus = copy.deepcopy(self.prometheus)
        prometheus["scrape_configs"][0]["static_configs"][0]["targets"] = ["gateway:9100"]
        self.refused("scrapes gateway:9100", prometheus=prometheus)

    def test_an_unscraped_service_is_refused(self):
        prometheus = copy.deepcopy(self.prometheus)
        prometheus["scrape_configs"] = [j for j in prometheus["scrape_configs"] if j["job_name"] != "sms-worker"]
        self.refused("scrapes no target of ['sms-worker']", prometheus=prometheus)

    def test_a_build_target_the_dockerfile_lacks_is_refused(self):
        def target(spec):
            spec["build"]["target"] = "stats"
        self.refused("'stats' is not a stage", compose=self.broken("stats-worker", target))

    def test_a_binary_the_images_lack_is_refused(self):
        dockerfile = self.dockerfile.replace("target/release/sms-worker", "target/release/sms")
        self.refused("'sms-worker' is not a binary the Dockerfile ships", dockerfile=dockerfile)

    def test_a_numeric_password_is_not_taken_for_a_port(self):
        def password(spec):
            spec["environment"]["DATABASE_URL"] = "postgres://postgres:12345@postgres:5432/seckill"
        self.check(compose=self.broken("order-worker", password))

    def test_dashboard_queries_the_services_cannot_answer_are_named(self):
        dashboard = {"panels": [{"targets": [
            {"expr": 'sum by (group) (rate(seckill_consumed_total{outcome="processed"}[1m]))'},
            {"expr": "sum(seckill_gone)"},
        ]}]}
        needs = cn.dashboard_queries(dashboard)
        answered = {"seckill_consumed_total": [{"group": "g", "outcome": "processed"}]}
        self.assertEqual(cn.unanswered(needs, answered), ["seckill_gone is not exported"])
        renamed_label = {"seckill_consumed_total": [{"consumer": "g", "outcome": "processed"}], "seckill_gone": [{}]}
        self.assertEqual(cn.unanswered(needs, renamed_label), ["seckill_consumed_total has no label 'group' to group by"])
        other_value = {"seckill_consumed_total": [{"group": "g", "outcome": "done"}], "seckill_gone": [{}]}
        self.assertEqual(cn.unanswered(needs, other_value), ["seckill_consumed_total has no series with {'outcome': 'processed'}"])


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=1)
