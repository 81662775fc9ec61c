//! One reproduction over several seeds (`grlhf reproduce CONFIG --seeds 0,1,2`).
//!
//! Each seed runs the whole pipeline in `RUN_DIR/seed-N` (its own world draw, initialisation and
//! sampling). Then every number of the per-seed reports becomes a mean ± standard error across
//! seeds (`seeds.json`, `seeds.md`), and each claim is judged on the per-seed differences: it
//! holds when their mean favours it, and is beyond noise when that mean exceeds twice its
//! standard error across seeds. One seed gives no between-seed error, so nothing is called
//! beyond noise from one seed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::pipeline_config::Variant;
use crate::report::{claims_table, slope, standard_error, Claim, Report, SPLITS};

/// A number's spread across seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcrossSeeds {
    pub mean: f64,
    /// Standard error of the mean across seeds (sample standard deviation / √k; 0 for one seed).
    pub se: f64,
    /// Each seed's value, in the order of `seeds` (only seeds that measured it).
    pub values: Vec<f64>,
}

impl AcrossSeeds {
    pub fn of(values: Vec<f64>) -> AcrossSeeds {
        let mean = values.iter().sum::<f64>() / values.len().max(1) as f64;
        AcrossSeeds {
            mean,
            se: standard_error(&values),
            values,
        }
    }

    /// `mean ± se` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        format!("{:.digits$} ± {:.digits$}", self.mean, self.se)
    }
}

/// `seeds.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeedsReport {
    pub seeds: Vec<u64>,
    /// Every number of the reports by its path in `report.json` (`policy_eval.base.average`,
    /// `rm_accuracy.grm_rl.ood_combo`, `grounding.policy.image_swap_changed`, …).
    pub numbers: BTreeMap<String, AcrossSeeds>,
    /// The claims judged across seeds.
    pub claims: Vec<Claim>,
    /// Each seed's run directory.
    pub runs: Vec<PathBuf>,
}

/// Parts of a report that are not one number per run: per-prompt scores, curves, plots, the
/// per-seed claims (judged again across seeds), the seed itself.
const NOT_AGGREGATED: [&str; 8] = [
    "seed",
    "policy_scores",
    "reward_curves",
    "eval_curves",
    "length_drift",
    "plots",
    "claims",
    "sweep",
];

/// Every number of `report` by its dotted path (the candidate sweep as `sweep.<variant>.n<N>.gain`).
pub fn flatten(report: &Report) -> BTreeMap<String, f64> {
    fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, f64>) {
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.insert(prefix.to_string(), x);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&path, v, out);
                }
            }
            // Booleans, strings, nulls (not measured) and arrays carry no per-run number.
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(map) = serde_json::to_value(report).expect("a report serialises") {
        for (k, v) in &map {
            if !NOT_AGGREGATED.contains(&k.as_str()) {
                walk(k, v, &mut out);
            }
        }
    }
    for p in &report.sweep {
        out.insert(format!("sweep.{}.n{}.gain", p.variant, p.n), p.gain);
        out.insert(format!("sweep.{}.n{}.average", p.variant, p.n), p.average);
    }
    out
}

fn mean_ood(report: &Report, model: &str) -> Option<f64> {
    crate::report::mean_ood(report.rm_accuracy.get(model)?)
}

/// A claim judged on per-seed differences (`None` for a seed that did not measure it).
fn judge(id: &str, statement: &str, unit: &str, differences: Vec<Option<f64>>) -> Claim {
    let measured: Vec<f64> = differences.into_iter().flatten().collect();
    if measured.is_empty() {
        return Claim {
            id: id.into(),
            statement: statement.into(),
            holds: None,
            beyond_noise: None,
            evidence: "not measured in these runs".into(),
        };
    }
    let d = AcrossSeeds::of(measured);
    let k = d.values.len();
    Claim {
        id: id.into(),
        statement: statement.into(),
        holds: Some(d.mean > 0.0),
        beyond_noise: (k >= 2).then(|| d.mean.abs() > 2.0 * d.se),
        evidence: format!(
            "difference {} {unit} over {k} seed{} (per seed: {})",
            d.show(3),
            if k == 1 { "" } else { "s" },
            d.values
                .iter()
                .map(|x| format!("{x:+.3}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The claims of the paper (and the RL goal) across seeds.
pub fn claims_across_seeds(reports: &[Report]) -> Vec<Claim> {
    let per_seed = |f: &dyn Fn(&Report) -> Option<f64>| reports.iter().map(f).collect::<Vec<_>>();
    let gain = |r: &Report, v: Variant| r.policy_gain.get(v.name()).copied();
    vec![
        judge(
            "a",
            "GRM+RL has higher out-of-distribution pairwise accuracy than GRM+SFT",
            "(accuracy)",
            per_seed(&|r| Some(mean_ood(r, "grm_rl")? - mean_ood(r, "grm_sft")?)),
        ),
        judge(
            "a-rm",
            "GRM+RL has higher out-of-distribution pairwise accuracy than the score-only RM",
            "(accuracy)",
            per_seed(&|r| Some(mean_ood(r, "grm_rl")? - mean_ood(r, "score_only_rm")?)),
        ),
        judge(
            "b",
            "the full method's average gain over the base policy exceeds score-only RM + GRPO's",
            "points (0–100)",
            per_seed(&|r| Some(gain(r, Variant::GrmRlGrouped)? - gain(r, Variant::RmGrpo)?)),
        ),
        judge(
            "b-base",
            "the full method beats the SFT base policy",
            "points (0–100)",
            per_seed(&|r| gain(r, Variant::GrmRlGrouped)),
        ),
        judge(
            "c",
            "the full method's gain grows with the number of candidates n",
            "points per candidate (slope)",
            per_seed(&|r| {
                let points: Vec<(f64, f64)> = r
                    .sweep
                    .iter()
                    .filter(|p| p.variant == Variant::GrmRlGrouped.name())
                    .map(|p| (p.n as f64, p.gain))
                    .collect();
                slope(&points)
            }),
        ),
        judge(
            "rl",
            "GRPO on the oracle's own score gains at least 10 points over the base",
            "points beyond +10",
            per_seed(&|r| Some(gain(r, Variant::OracleGrpo)? - 10.0)),
        ),
    ]
}

/// Aggregates per-seed reports (`seeds[i]` produced `reports[i]` in `runs[i]`).
pub fn aggregate(seeds: &[u64], reports: &[Report], runs: Vec<PathBuf>) -> SeedsReport {
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for report in reports {
        for (path, x) in flatten(report) {
            values.entry(path).or_default().push(x);
        }
    }
    SeedsReport {
        seeds: seeds.to_vec(),
        numbers: values
            .into_iter()
            .map(|(k, v)| (k, AcrossSeeds::of(v)))
            .collect(),
        claims: claims_across_seeds(reports),
        runs,
    }
}

/// Where seed `seed` of a multi-seed reproduction runs.
pub fn seed_dir(run_dir: &Path, seed: u64) -> PathBuf {
    crate::run_layout::RunLayout::new(run_dir)
        .seed(seed)
        .root()
        .to_path_buf()
}

impl SeedsReport {
    fn get(&self, path: &str) -> Option<&AcrossSeeds> {
        self.numbers.get(path)
    }

    fn cell(&self, path: &str, digits: usize) -> String {
        self.get(path).map_or("—".into(), |s| s.show(digits))
    }

    /// `seeds.md`: the main tables as mean ± SE across seeds, and the claims.
    pub fn markdown(&self, title: &str) -> String {
        let seeds: Vec<String> = self.seeds.iter().map(|s| s.to_string()).collect();
        let mut md = format!(
            "# {title}\n\nSeeds {} — every cell is the mean ± standard error across seeds; `seeds.json` holds every number with its per-seed values, and each seed's own report is in `seed-N/`.\n\n## Claims across seeds\n\n",
            seeds.join(", ")
        );
        md.push_str(&claims_table(&self.claims, ("holds", "**does not hold**")));
        md.push_str("\n## Policies: held-out oracle score (0–100)\n\n| policy | average | Δ vs base |\n|---|---:|---:|\n");
        let mut policies: Vec<&str> = vec!["base"];
        policies.extend(Variant::ALL.iter().map(|v| v.name()));
        for p in policies {
            if self.get(&format!("policy_eval.{p}.average")).is_some() {
                md.push_str(&format!(
                    "| {p} | {} | {} |\n",
                    self.cell(&format!("policy_eval.{p}.average"), 1),
                    self.cell(&format!("policy_gain.{p}"), 1)
                ));
            }
        }
        md.push_str("\n## Reward models: pairwise accuracy\n\n| reward model |");
        for (_, split) in SPLITS {
            md.push_str(&format!(" {split} |"));
        }
        md.push_str("\n|---|");
        md.push_str(&"---:|".repeat(SPLITS.len()));
        md.push('\n');
        for model in ["score_only_rm", "grm", "grm_sft", "grm_rl"] {
            if self.get(&format!("rm_accuracy.{model}.in_dist")).is_none() {
                continue;
            }
            md.push_str(&format!("| {model} |"));
            for (_, split) in SPLITS {
                md.push_str(&format!(
                    " {} |",
                    self.cell(&format!("rm_accuracy.{model}.{split}"), 3)
                ));
            }
            md.push('\n');
        }
        let grounding: Vec<&str> = ["policy", "grm"]
            .into_iter()
            .filter(|m| self.get(&format!("grounding.{m}.average")).is_some())
            .collect();
        if !grounding.is_empty() {
            md.push_str("\n## Grounding\n\n| model | image swap | score | blind twin |\n|---|---:|---:|---:|\n");
            for m in grounding {
                md.push_str(&format!(
                    "| {m} | {} | {} | {} |\n",
                    self.cell(&format!("grounding.{m}.image_swap_changed"), 3),
                    self.cell(&format!("grounding.{m}.average"), 3),
                    self.cell(&format!("grounding.{m}.blind_average"), 3)
                ));
            }
        }
        md.push_str("\n## Reward-hacking watch\n\n| policy | safe refused | self-praise | beyond needed |\n|---|---:|---:|---:|\n");
        for v in std::iter::once("base").chain(Variant::ALL.iter().map(|v| v.name())) {
            if self
                .get(&format!("reward_hacking.{v}.self_praise"))
                .is_some()
            {
                md.push_str(&format!(
                    "| {v} | {} | {} | {} |\n",
                    self.cell(&format!("reward_hacking.{v}.safe_refused"), 3),
                    self.cell(&format!("reward_hacking.{v}.self_praise"), 3),
                    self.cell(&format!("reward_hacking.{v}.beyond_needed"), 3)
                ));
            }
        }
        md
    }

    /// The claims and the policy averages for the terminal.
    pub fn terminal_summary(&self) -> String {
        let mut out = format!("across seeds {:?} (mean ± SE):\n", self.seeds);
        for p in std::iter::once("base").chain(Variant::ALL.iter().map(|v| v.name())) {
            if let Some(avg) = self.get(&format!("policy_eval.{p}.average")) {
                out.push_str(&format!(
                    "  {p:<18} average {:>14}   vs base {}\n",
                    avg.show(1),
                    self.cell(&format!("policy_gain.{p}"), 1)
                ));
            }
        }
        for c in &self.claims {
            let verdict = match (c.holds, c.beyond_noise) {
                (None, _) => "not measured",
                (Some(true), Some(true)) => "holds, beyond 2 SE",
                (Some(true), _) => "holds within noise",
                (Some(false), Some(true)) => "does NOT hold, beyond 2 SE",
                (Some(false), _) => "does not hold (within noise)",
            };
            out.push_str(&format!("claim ({}) {verdict}: {}\n", c.id, c.evidence));
        }
        out
    }
}
