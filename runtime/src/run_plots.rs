//! `RUN_DIR/plots/`: the pictures of one run, drawn from the files it wrote — reward, KL, clip
//! fraction, response length, staleness and throughput over policy versions from
//! `metrics.jsonl`, and the held-out evaluation from `eval.jsonl`. `grlhf run` draws them when
//! it ends; `grlhf plot DIR` draws them again for any run directory, a killed run's included (a
//! line cut off by the kill is skipped and counted), or for every run directory below DIR (a
//! pipeline's stages and variants).

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use grlhf_actors::evaluator::EvalStats;
use grlhf_actors::learner::StepStats;
use serde::de::DeserializeOwned;

use crate::charts::{line_charts, LinePanel};

/// What was drawn.
#[derive(Debug)]
pub struct Plotted {
    pub files: Vec<PathBuf>,
    pub steps: usize,
    pub evals: usize,
    /// Lines of metrics.jsonl / eval.jsonl that did not parse (a killed run's last line).
    pub skipped_lines: usize,
}

/// Reads a JSON-lines file, skipping lines that do not parse; a missing file is empty.
fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<(Vec<T>, usize)> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (mut rows, mut skipped) = (Vec::new(), 0);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(&line) {
            Ok(row) => rows.push(row),
            Err(e) => {
                tracing::warn!("{}:{}: skipped ({e})", path.display(), i + 1);
                skipped += 1;
            }
        }
    }
    Ok((rows, skipped))
}

/// The run's group size, from its resolved `config.toml` (1 when it cannot be read: throughput
/// is then in groups per second, and the axis says so).
fn group_size(run_dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(run_dir.join("config.toml")).ok()?;
    let table: toml::Table = text.parse().ok()?;
    table.get("group_size")?.as_integer().map(|n| n as usize)
}

fn series(steps: &[StepStats], f: impl Fn(&StepStats) -> f64) -> Vec<(f64, f64)> {
    steps
        .iter()
        .map(|s| (s.version as f64, f(s)))
        .filter(|(_, y)| y.is_finite())
        .collect()
}

/// The trailing mean over a window of a 20th of the run (at least 5 points), so a noisy
/// per-step figure shows its trend; `None` for runs too short to need one.
fn moving_mean(points: &[(f64, f64)]) -> Option<(String, Vec<(f64, f64)>)> {
    let window = (points.len() / 20).max(5);
    if points.len() < 4 * window {
        return None;
    }
    let mut sum = 0.0;
    let mut out = Vec::with_capacity(points.len());
    for (i, &(x, y)) in points.iter().enumerate() {
        sum += y;
        if i >= window {
            sum -= points[i - window].1;
        }
        if i + 1 >= window {
            out.push((x, sum / window as f64));
        }
    }
    Some((format!("mean of {window} steps"), out))
}

/// A per-step series and its moving mean.
fn with_trend(name: &str, points: Vec<(f64, f64)>) -> Vec<(String, Vec<(f64, f64)>)> {
    let trend = moving_mean(&points);
    let mut out = vec![(name.to_string(), points)];
    out.extend(trend);
    out
}

fn panel(title: &str, y_label: &str, series: Vec<(String, Vec<(f64, f64)>)>) -> LinePanel {
    LinePanel {
        title: title.to_string(),
        series,
        x_label: "policy version".to_string(),
        y_label: y_label.to_string(),
    }
}

fn mean_staleness(s: &StepStats) -> f64 {
    let n: usize = s.staleness_counts.values().sum();
    let total: u64 = s.staleness_counts.iter().map(|(&k, &c)| k * c as u64).sum();
    total as f64 / n.max(1) as f64
}

/// Throughput between consecutive steps.
fn throughput(steps: &[StepStats], per_group: f64) -> Vec<(f64, f64)> {
    steps
        .windows(2)
        .filter(|w| w[1].time > w[0].time)
        .map(|w| {
            let dt = w[1].time - w[0].time;
            (w[1].version as f64, w[1].groups as f64 * per_group / dt)
        })
        .collect()
}

fn training_panels(run_dir: &Path, steps: &[StepStats]) -> Vec<(&'static str, LinePanel)> {
    let size = group_size(run_dir);
    let unit = if size.is_some() {
        "samples / s"
    } else {
        "groups / s"
    };
    vec![
        (
            "reward",
            panel(
                "reward (batch mean)",
                "reward",
                with_trend("reward", series(steps, |s| s.reward_mean)),
            ),
        ),
        (
            "kl",
            panel(
                "KL to the reference",
                "KL (k3)",
                with_trend("kl", series(steps, |s| s.kl)),
            ),
        ),
        (
            "clip_fraction",
            panel(
                "clip fraction",
                "share of tokens",
                with_trend("clipped", series(steps, |s| s.clip_fraction)),
            ),
        ),
        (
            "response_length",
            panel(
                "response length",
                "tokens",
                with_trend("mean", series(steps, |s| s.mean_response_tokens)),
            ),
        ),
        (
            "staleness",
            panel(
                "staleness of trained groups",
                "versions",
                vec![
                    ("max".into(), series(steps, |s| s.max_staleness as f64)),
                    ("mean".into(), series(steps, mean_staleness)),
                ],
            ),
        ),
        (
            "throughput",
            panel(
                "throughput between steps",
                unit,
                with_trend(unit, throughput(steps, size.unwrap_or(1) as f64)),
            ),
        ),
    ]
}

fn eval_panel(evals: &[EvalStats]) -> LinePanel {
    let mut lines = vec![(
        "mean".to_string(),
        evals
            .iter()
            .map(|e| (e.version as f64, e.mean))
            .filter(|(_, y)| y.is_finite())
            .collect(),
    )];
    let families: std::collections::BTreeSet<&String> =
        evals.iter().flat_map(|e| e.per_family.keys()).collect();
    if families.len() > 1 {
        for family in families {
            let points = evals
                .iter()
                .filter_map(|e| e.per_family.get(family).map(|&y| (e.version as f64, y)))
                .filter(|(_, y)| y.is_finite())
                .collect();
            lines.push((family.clone(), points));
        }
    }
    panel("held-out evaluation", "score", lines)
}

/// Draws every plot of `run_dir` into `run_dir/plots/`.
pub fn draw_run_plots(run_dir: &Path) -> Result<Plotted> {
    let metrics = run_dir.join("metrics.jsonl");
    if !metrics.exists() {
        bail!(
            "{}: no metrics.jsonl (is this a `grlhf run` directory?)",
            run_dir.display()
        );
    }
    let (steps, skipped_steps): (Vec<StepStats>, usize) = read_jsonl(&metrics)?;
    let (evals, skipped_evals): (Vec<EvalStats>, usize) = read_jsonl(&run_dir.join("eval.jsonl"))?;
    if steps.is_empty() && evals.is_empty() {
        bail!(
            "{}: holds no learner step yet ({skipped_steps} unreadable lines); nothing to plot",
            metrics.display()
        );
    }
    let dir = run_dir.join("plots");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    if !steps.is_empty() {
        for (name, panel) in training_panels(run_dir, &steps) {
            let path = dir.join(format!("{name}.png"));
            line_charts(&path, &[panel]).with_context(|| format!("drawing {}", path.display()))?;
            files.push(path);
        }
    }
    if !evals.is_empty() {
        let path = dir.join("eval.png");
        line_charts(&path, &[eval_panel(&evals)])
            .with_context(|| format!("drawing {}", path.display()))?;
        files.push(path);
    }
    Ok(Plotted {
        files,
        steps: steps.len(),
        evals: evals.len(),
        skipped_lines: skipped_steps + skipped_evals,
    })
}

/// The run directories at or below `dir` (those holding a `metrics.jsonl`), at most five levels
/// down (`seed-N/sweep/nN/<variant>/` of a reproduce run), in name order; checkpoints and plots are not looked into.
pub fn run_dirs_below(dir: &Path) -> Result<Vec<PathBuf>> {
    fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
        if dir.join("metrics.jsonl").is_file() {
            out.push(dir.to_path_buf());
            return Ok(());
        }
        if depth == 0 {
            return Ok(());
        }
        let mut subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .filter(|p| !p.ends_with("checkpoints") && !p.ends_with("plots") && !p.ends_with("tb"))
            .collect();
        subdirs.sort();
        for sub in subdirs {
            walk(&sub, depth - 1, out)?;
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, 5, &mut out)?;
    Ok(out)
}
