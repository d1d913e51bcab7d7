"""Draws the Grafana dashboard's panels from a native run, for the README: a real Prometheus
(Debian's) scrapes the running instances every second, and each panel's own PromQL is
evaluated by it over the run. Grafana itself is not involved; the picture shows the same
queries over the same kind of data, drawn with matplotlib.
"""

import json
import os
import subprocess
import time
import urllib.parse
import urllib.request

import yaml


class Recorder:
    """A Prometheus scraping `targets` ({job: ["127.0.0.1:port", …]}) for the length of a run."""

    def __init__(self, run_dir, targets, port):
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": addresses}]}
                for job, addresses in targets.items()
            ],
        }
        config_path = os.path.join(run_dir, "prometheus-render.yml")
        with open(config_path, "w") as f:
            yaml.safe_dump(config, f)
        log = open(os.path.join(run_dir, "prometheus.log"), "w")
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={config_path}",
                f"--storage.tsdb.path={os.path.join(run_dir, 'prometheus-data')}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        self.started = time.time()

    def wait_until_scraping(self, targets, timeout=60):
        """Returns once every target has been scraped successfully (`up == 1`), so the picture
        starts before the crowd, not with it."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/api/v1/query?query=up", timeout=2) as r:
                    up = [s for s in json.load(r)["data"]["result"] if s["value"][1] == "1"]
                if len(up) >= targets:
                    self.started = time.time()
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Prometheus did not scrape all {targets} targets within {timeout} s")

    def query_range(self, expr, start, end):
        params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": "1s"})
        with urllib.request.urlopen(f"{self.url}/api/v1/query_range?{params}", timeout=10) as r:
            return json.load(r)["data"]["result"]

    def render(self, dashboard, png_path):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        start, end = self.started, time.time()
        panels = dashboard["panels"]
        columns = 2
        rows = (len(panels) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(14, 3.2 * rows), squeeze=False)
        for panel, ax in zip(panels, axes.flat):
            for target in panel["targets"]:
                for series in self.query_range(target["expr"], start, end):
                    points = [(float(t) - start, float(v)) for t, v in series["values"] if v not in ("NaN", "+Inf", "-Inf")]
                    if points:
                        label = target.get("legendFormat", "")
                        for name, value in series["metric"].items():
                            label = label.replace("{{" + name + "}}", value)
                        ax.plot(*zip(*points), label=label or target["expr"])
            ax.set_title(panel["title"], fontsize=10)
            ax.set_xlabel("seconds into the run", fontsize=8)
            unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            ax.set_ylabel({"s": "seconds", "reqps": "requests/s", "ops": "per second"}.get(unit, ""), fontsize=8)
            ax.tick_params(labelsize=8)
            if ax.lines:
                ax.legend(fontsize=7, loc="upper right")
        for ax in list(axes.flat)[len(panels):]:
            ax.axis("off")
        figure.suptitle("Seckill dashboard panels, rendered from a native run of the compose topology", fontsize=11)
        figure.tight_layout()
        figure.savefig(png_path, dpi=80)

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=30)
