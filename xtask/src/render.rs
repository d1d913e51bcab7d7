//! Draws the Grafana dashboard's panels from a native run, for the docs: a real Prometheus
//! (Debian's) scrapes the running instances every second, and each panel's own PromQL is
//! evaluated by it over the run. Grafana itself is not involved; the picture shows the same
//! queries over the same kind of data, drawn as SVG.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use plotters::prelude::*;

use crate::dashboard::Dashboard;

/// A Prometheus scraping the instances for the length of a run.
pub struct Recorder {
    process: Child,
    url: String,
    http: reqwest::Client,
    /// Unix seconds the picture starts at.
    started: f64,
}

/// One line of a panel: its legend and its points (seconds into the run, value).
struct Line {
    legend: String,
    points: Vec<(f64, f64)>,
}

impl Recorder {
    /// Starts `prometheus` scraping `targets` (job → addresses) every second.
    pub fn start(
        targets: &BTreeMap<String, Vec<String>>,
        run_dir: &Path,
        port: u16,
    ) -> anyhow::Result<Self> {
        let jobs: Vec<serde_json::Value> = targets
            .iter()
            .map(|(job, addresses)| {
                serde_json::json!({"job_name": job, "static_configs": [{"targets": addresses}]})
            })
            .collect();
        let config = serde_json::json!({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": jobs,
        });
        let config_path = run_dir.join("prometheus-render.yml");
        // JSON is YAML, so Prometheus reads it as its configuration.
        std::fs::write(&config_path, config.to_string())?;
        let log = File::create(run_dir.join("prometheus.log"))?;
        let process = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                run_dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting prometheus (scripts/services install compose-tools installs it)")?;
        Ok(Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            started: now(),
        })
    }

    /// Returns once every target has been scraped successfully, so the picture starts before
    /// the crowd, not with it.
    pub async fn wait_until_scraping(&mut self, targets: usize) -> anyhow::Result<()> {
        for _ in 0..120 {
            let up = self
                .query("/api/v1/query?query=up")
                .await
                .unwrap_or_default();
            let healthy = up["data"]["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|series| series["value"][1] == "1")
                .count();
            if healthy >= targets {
                self.started = now();
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("Prometheus did not scrape all {targets} targets within a minute")
    }

    /// Draws every panel of `dashboard` over the run so far into an SVG at `path`.
    pub async fn draw(&self, dashboard: &Dashboard, path: &Path) -> anyhow::Result<()> {
        let end = now();
        let mut panels = Vec::new();
        for panel in &dashboard.panels {
            let mut lines = Vec::new();
            for target in &panel.targets {
                lines.extend(self.lines(&target.expr, &target.legend_format, end).await?);
            }
            panels.push((panel, lines));
        }
        let rows = panels.len().div_ceil(2) as u32;
        let root = SVGBackend::new(path, (1120, 260 * rows)).into_drawing_area();
        root.fill(&WHITE)?;
        let root = root.titled(
            "Seckill dashboard panels, rendered from a native run of the compose topology",
            ("sans-serif", 18),
        )?;
        for ((panel, lines), area) in panels.iter().zip(root.split_evenly((rows as usize, 2))) {
            let x_max = lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.0))
                .fold(1.0, f64::max);
            let y_max = lines
                .iter()
                .flat_map(|l| l.points.iter().map(|p| p.1))
                .fold(0.0, f64::max)
                .max(1e-9)
                * 1.1;
            let mut chart = ChartBuilder::on(&area)
                .caption(&panel.title, ("sans-serif", 14))
                .margin(8)
                .x_label_area_size(28)
                .y_label_area_size(56)
                .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .x_desc("seconds into the run")
                .y_desc(panel.unit_caption())
                .label_style(("sans-serif", 10))
                .draw()?;
            for (index, line) in lines.iter().enumerate() {
                let color = Palette99::pick(index).to_rgba();
                chart
                    .draw_series(LineSeries::new(line.points.iter().copied(), color))?
                    .label(line.legend.clone())
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 14, y)], color));
            }
            if !lines.is_empty() {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::UpperRight)
                    .background_style(WHITE.mix(0.8))
                    .label_font(("sans-serif", 10))
                    .draw()?;
            }
        }
        root.present()?;
        Ok(())
    }

    /// The series `expr` gives over the run, each labelled by `legend_format`.
    async fn lines(&self, expr: &str, legend_format: &str, end: f64) -> anyhow::Result<Vec<Line>> {
        let query = format!(
            "/api/v1/query_range?query={}&start={}&end={end}&step=1",
            percent_encode(expr),
            self.started
        );
        let answer = self.query(&query).await?;
        let mut lines = Vec::new();
        for series in answer["data"]["result"].as_array().into_iter().flatten() {
            let points: Vec<(f64, f64)> = series["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|point| {
                    let at = point[0].as_f64()?;
                    let value: f64 = point[1].as_str()?.parse().ok()?;
                    value.is_finite().then_some((at - self.started, value))
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            let mut legend = if legend_format.is_empty() {
                expr.to_owned()
            } else {
                legend_format.to_owned()
            };
            for (name, value) in series["metric"].as_object().into_iter().flatten() {
                legend = legend.replace(
                    &format!("{{{{{name}}}}}"),
                    value.as_str().unwrap_or_default(),
                );
            }
            lines.push(Line { legend, points });
        }
        Ok(lines)
    }

    async fn query(&self, path_and_query: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self
            .http
            .get(format!("{}{path_and_query}", self.url))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .json()
            .await?)
    }

    pub fn stop(mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// A query parameter, percent-encoded (PromQL is full of characters a URL reserves).
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
