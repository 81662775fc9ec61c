//! The pipeline's report: every number of its tables (`report.json`), the same tables in
//! Markdown (`report.md`, laid out like the paper's Tables 1 and 2), the main table for the
//! terminal, and the three claims checked against the measurements.
//!
//! Nothing here is measured: the pipeline's evaluation fills a [`Report`], and this module only
//! lays it out and compares numbers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pipeline_config::Variant;

/// Split names as the report spells them.
pub const SPLITS: [(&str, &str); 4] = [
    ("pairs_test", "in_dist"),
    ("pairs_ood_combo", "ood_combo"),
    ("pairs_ood_error", "ood_error"),
    ("pairs_ood_family", "ood_family"),
];

/// Reward models in table order: (key, description).
pub const REWARD_MODELS: [(&str, &str); 4] = [
    ("score_only_rm", "score-only RM (Bradley–Terry)"),
    ("grm", "GRM, no training"),
    ("grm_sft", "GRM + SFT"),
    ("grm_rl", "GRM + RL (stage 1)"),
];

/// The reward-hacking watch for one policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HackingWatch {
    /// Share of answers praising themselves.
    pub self_praise: f64,
    /// Share of answers with words beyond what the question needs.
    pub beyond_needed: f64,
    pub mean_tokens: f64,
    pub finished: f64,
    /// Over-refusal: share of safe requests refused, over every family and over the
    /// situational-safety family alone.
    #[serde(default)]
    pub safe_refused: Option<f64>,
    #[serde(default)]
    pub safety_safe_refused: Option<f64>,
}

/// One point of the candidate sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    pub n: usize,
    pub variant: String,
    /// Average held-out oracle score (0–100) and its gain over the base policy.
    pub average: f64,
    pub gain: f64,
}

/// A claim of the paper, checked on this run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    pub id: String,
    pub statement: String,
    /// `None`: not measured in this run (a variant or the sweep was not run).
    pub holds: Option<bool>,
    /// Whether the compared difference exceeds twice its standard error (`None`: not tested).
    pub beyond_noise: Option<bool>,
    pub evidence: String,
}

/// A training curve: (step or version, value).
pub type Curve = Vec<(f64, f64)>;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub seed: u64,
    /// `rm_accuracy.<model>.<split>`: pairwise accuracy (0–1).
    pub rm_accuracy: BTreeMap<String, BTreeMap<String, f64>>,
    /// Share of judgments that parsed (the score-only RM always scores).
    pub rm_parsed: BTreeMap<String, BTreeMap<String, f64>>,
    pub rm_pairs_per_split: usize,
    /// `rm_correlation.<model>.{alone,single,grouped}`: Pearson r of rewards with oracle scores.
    pub rm_correlation: BTreeMap<String, BTreeMap<String, Option<f64>>>,
    /// `policy_eval.<policy>.<family|average>`: mean oracle score, 0–100.
    pub policy_eval: BTreeMap<String, BTreeMap<String, f64>>,
    /// `policy_gain.<policy>`: average − the base policy's average.
    pub policy_gain: BTreeMap<String, f64>,
    /// Standard error of each policy's average, and of its gain (paired over the same prompts).
    pub policy_se: BTreeMap<String, f64>,
    pub policy_gain_se: BTreeMap<String, f64>,
    /// Each policy's per-prompt scores (0–100), in prompt order.
    pub policy_scores: BTreeMap<String, Vec<f64>>,
    pub eval_prompts: usize,
    pub reward_hacking: BTreeMap<String, HackingWatch>,
    /// Stage-2 evaluations during training: mean response tokens by version.
    pub length_drift: BTreeMap<String, Curve>,
    /// Stage-2 evaluation curves: held-out oracle score (0–100) by version.
    pub eval_curves: BTreeMap<String, Curve>,
    /// Reward by learner step (`stage1` and each stage-2 variant).
    pub reward_curves: BTreeMap<String, Curve>,
    pub sweep: Vec<SweepPoint>,
    pub claims: Vec<Claim>,
    /// `grounding.policy` and `grounding.grm`: does each warm-started model use its image
    /// (image swap, blind twin)? Empty when the warm start's grounding check did not run.
    #[serde(default)]
    pub grounding: BTreeMap<String, crate::grounding::Grounding>,
    /// Wall time of each stage, seconds.
    pub stage_wall_s: BTreeMap<String, f64>,
    /// PNGs written next to the report.
    pub plots: Vec<String>,
}

/// Mean accuracy over the out-of-distribution splits (`None` unless all were measured).
pub fn mean_ood(accuracy: &BTreeMap<String, f64>) -> Option<f64> {
    let values: Vec<f64> = SPLITS[1..]
        .iter()
        .filter_map(|(_, k)| accuracy.get(*k).copied())
        .collect();
    (values.len() == SPLITS.len() - 1).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// Standard error of a mean.
pub fn standard_error(xs: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if xs.len() < 2 {
        return 0.0;
    }
    let m = xs.iter().sum::<f64>() / n;
    (xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
}

/// Standard error of the mean difference of two paired samples.
pub fn paired_standard_error(a: &[f64], b: &[f64]) -> f64 {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    standard_error(&d)
}

/// Standard error of an accuracy `p` over `n` pairs.
fn accuracy_se(p: f64, n: usize) -> f64 {
    (p * (1.0 - p) / n.max(1) as f64).sqrt()
}

/// Least-squares slope of y on x.
pub fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// Standard error of the least-squares slope (from the residuals; needs 3 points or more).
pub fn slope_standard_error(points: &[(f64, f64)]) -> Option<f64> {
    let k = points.len();
    if k < 3 {
        return None;
    }
    let b = slope(points)?;
    let n = k as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    let residuals: f64 = points
        .iter()
        .map(|p| (p.1 - (my + b * (p.0 - mx))).powi(2))
        .sum();
    Some((residuals / (n - 2.0) / sxx).sqrt())
}

impl Report {
    /// Checks the paper's three claims against this report's numbers.
    pub fn check_claims(&mut self) {
        let mut claims = Vec::new();
        // (a) GRM+RL generalises better out of distribution.
        let ood = |m: &str| self.rm_accuracy.get(m).and_then(mean_ood);
        let (rl, score_only, sft) = (ood("grm_rl"), ood("score_only_rm"), ood("grm_sft"));
        // Three OOD splits of `rm_pairs_per_split` pairs each.
        let ood_pairs = 3 * self.rm_pairs_per_split;
        let gap_se = |a: f64, b: f64| {
            (accuracy_se(a, ood_pairs).powi(2) + accuracy_se(b, ood_pairs).powi(2)).sqrt()
        };
        claims.push(match (rl, score_only, sft) {
            (Some(rl), Some(so), Some(sft)) => Claim {
                id: "a".into(),
                statement: "GRM+RL has higher out-of-distribution pairwise accuracy than the score-only RM and GRM+SFT".into(),
                holds: Some(rl > so && rl > sft),
                beyond_noise: Some(
                    (rl - so).abs() > 2.0 * gap_se(rl, so) && (rl - sft).abs() > 2.0 * gap_se(rl, sft),
                ),
                evidence: format!(
                    "mean OOD accuracy: GRM+RL {rl:.3}, score-only RM {so:.3}, GRM+SFT {sft:.3} (SE of each gap ≈ {:.3})",
                    gap_se(rl, so).max(gap_se(rl, sft))
                ),
            },
            _ => not_measured("a", "GRM+RL OOD accuracy above score-only RM and GRM+SFT"),
        });
        // (b) The full method gains more than score-only RM + GRPO.
        let gain = |v: Variant| self.policy_gain.get(v.name()).copied();
        claims.push(
            match (gain(Variant::GrmRlGrouped), gain(Variant::RmGrpo)) {
                (Some(full), Some(base)) => {
                    let se = match (
                        self.policy_scores.get(Variant::GrmRlGrouped.name()),
                        self.policy_scores.get(Variant::RmGrpo.name()),
                    ) {
                        (Some(a), Some(b)) if a.len() == b.len() => {
                            Some(paired_standard_error(a, b))
                        }
                        _ => None,
                    };
                    Claim {
                        id: "b".into(),
                        statement: "the full method's average gain over the base policy exceeds score-only RM + GRPO's".into(),
                        holds: Some(full > base),
                        beyond_noise: se.map(|se| (full - base).abs() > 2.0 * se),
                        evidence: format!(
                            "average gain (0–100 scale): full method {full:+.2}, score-only RM + GRPO {base:+.2}{}",
                            se.map_or(String::new(), |se| format!(" (paired SE of the difference {se:.2})"))
                        ),
                    }
                }
                _ => not_measured("b", "full method gains more than score-only RM + GRPO"),
            },
        );
        // (c) Gain grows with n.
        let points: Vec<(f64, f64)> = self
            .sweep
            .iter()
            .filter(|p| p.variant == Variant::GrmRlGrouped.name())
            .map(|p| (p.n as f64, p.gain))
            .collect();
        let slope_se = slope_standard_error(&points);
        claims.push(match slope(&points) {
            Some(s) => Claim {
                id: "c".into(),
                statement: "the full method's gain grows with the number of candidates n".into(),
                holds: Some(s > 0.0),
                beyond_noise: slope_se.map(|se| s.abs() > 2.0 * se),
                evidence: format!(
                    "gain by n: {}; least-squares slope {s:+.3} per candidate{}",
                    points
                        .iter()
                        .map(|(n, g)| format!("n={n} {g:+.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    slope_se.map_or(String::new(), |se| format!(" (SE {se:.3})"))
                ),
            },
            None => not_measured("c", "gain grows with n (run reproduce --sweep-n)"),
        });
        self.claims = claims;
    }

    /// The policy table (the paper's Table 2 analogue) as Markdown.
    pub fn policy_table(&self) -> String {
        let families = self.families();
        let mut out = String::from("| policy |");
        for f in &families {
            out.push_str(&format!(" {f} |"));
        }
        out.push_str(" average | Δ vs base |\n|---|");
        out.push_str(&"---:|".repeat(families.len() + 2));
        out.push('\n');
        for (key, label) in self.policy_rows() {
            let Some(row) = self.policy_eval.get(&key) else {
                continue;
            };
            out.push_str(&format!("| {label} |"));
            for f in &families {
                out.push_str(&format!(" {} |", fmt1(row.get(f))));
            }
            let se = |m: &BTreeMap<String, f64>| {
                m.get(&key).map_or(String::new(), |s| format!(" ± {s:.1}"))
            };
            out.push_str(&format!(
                " {}{} |",
                fmt1(row.get("average")),
                se(&self.policy_se)
            ));
            match (key.as_str(), self.policy_gain.get(&key)) {
                ("base", _) => out.push_str(" — |\n"),
                (_, Some(g)) => out.push_str(&format!(" {g:+.1}{} |\n", se(&self.policy_gain_se))),
                _ => out.push_str(" |\n"),
            }
        }
        out
    }

    /// The reward-model table (the paper's Table 1 analogue) as Markdown.
    pub fn rm_table(&self) -> String {
        let mut out = String::from(
            "| reward model | in-dist | OOD combo | OOD error | OOD family | OOD mean | parsed | r (alone / single) | r (grouped) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (key, label) in REWARD_MODELS {
            let Some(acc) = self.rm_accuracy.get(key) else {
                continue;
            };
            out.push_str(&format!("| {label} |"));
            for (_, split) in SPLITS {
                out.push_str(&format!(" {} |", fmt3(acc.get(split))));
            }
            out.push_str(&format!(" {} |", fmt3(mean_ood(acc).as_ref())));
            let parsed = self
                .rm_parsed
                .get(key)
                .map(|p| p.values().sum::<f64>() / p.len().max(1) as f64);
            out.push_str(&format!(" {} |", fmt3(parsed.as_ref())));
            let corr = self.rm_correlation.get(key);
            let get = |k: &str| corr.and_then(|c| c.get(k)).copied().flatten();
            let first = get("alone").or(get("single"));
            out.push_str(&format!(
                " {} | {} |\n",
                fmt3(first.as_ref()),
                fmt3(get("grouped").as_ref())
            ));
        }
        out
    }

    fn families(&self) -> Vec<String> {
        let mut families: Vec<String> = self
            .policy_eval
            .values()
            .flat_map(|row| row.keys().cloned())
            .filter(|k| k != "average")
            .collect();
        families.sort();
        families.dedup();
        families
    }

    /// The warm start's grounding check: image swap and blind twin, per model and family.
    fn grounding_table(&self) -> String {
        if self.grounding.is_empty() {
            return String::new();
        }
        let mut md = String::from("\n## Grounding (do the warm-started models use the image?)\n\n`image swap`: share of held-out greedy answers (policy) or verdicts (GRM) that change when the image is swapped for another scene's. `blind twin`: the same warm start trained and evaluated on blank images. Policy scores are mean oracle scores (0–100); GRM scores are pairwise accuracies.\n\n| model | image swap | score | blind twin | gain over blind | sees |\n|---|---:|---:|---:|---:|---|\n");
        for (name, g) in &self.grounding {
            // Oracle scores (0–100) with one decimal, accuracies (0–1) with three.
            let digits = if g.metric == crate::grounding::POLICY_METRIC {
                1
            } else {
                3
            };
            let show = |x: Option<f64>| x.map_or("—".to_string(), |v| format!("{v:.digits$}"));
            md.push_str(&format!(
                "| {name} | {:.2} | {:.digits$} | {} | {} | {} |\n",
                g.image_swap_changed,
                g.average,
                show(g.blind_average),
                g.gain_over_blind()
                    .map_or("—".to_string(), |v| format!("{v:+.digits$}")),
                if g.sees { "yes" } else { "**no (blind)**" }
            ));
        }
        if let Some(g) = self.grounding.get("grm") {
            if let Some(c) = g.content_decided_changed {
                md.push_str(&format!("\nGRM: on the {} held-out pairs whose oracle preference changes with the scene, the image swap changed {:.0}% of verdicts.\n", g.content_decided_pairs, c * 100.0));
            }
        }
        if let Some(g) = self.grounding.get("policy") {
            if !g.per_family.is_empty() {
                md.push_str("\n| policy, by family | score | blind twin | image swap |\n|---|---:|---:|---:|\n");
                for (family, score) in &g.per_family {
                    md.push_str(&format!(
                        "| {family} | {score:.1} | {} | {} |\n",
                        fmt1(g.blind_per_family.get(family)),
                        fmt3(g.swap_changed_per_family.get(family))
                    ));
                }
            }
        }
        md
    }

    fn policy_rows(&self) -> Vec<(String, String)> {
        let mut rows = vec![("base".to_string(), "base (policy SFT)".to_string())];
        for v in Variant::ALL {
            rows.push((v.name().to_string(), v.describe().to_string()));
        }
        rows
    }

    /// The main table for the terminal: average and gain per policy, OOD accuracy per RM.
    pub fn terminal_summary(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<44} {:>8} {:>10}\n",
            "policy (held-out oracle score, 0-100)", "average", "vs base"
        ));
        for (key, label) in self.policy_rows() {
            if let Some(row) = self.policy_eval.get(&key) {
                let gain = match self.policy_gain.get(&key) {
                    Some(g) if key != "base" => format!("{g:+.1}"),
                    _ => "-".into(),
                };
                out.push_str(&format!(
                    "{:<44} {:>8} {:>10}\n",
                    label,
                    fmt1(row.get("average")),
                    gain
                ));
            }
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<44} {:>8} {:>10}\n",
            "reward model (pairwise accuracy)", "in-dist", "OOD mean"
        ));
        for (key, label) in REWARD_MODELS {
            if let Some(acc) = self.rm_accuracy.get(key) {
                out.push_str(&format!(
                    "{:<44} {:>8} {:>10}\n",
                    label,
                    fmt3(acc.get("in_dist")),
                    fmt3(mean_ood(acc).as_ref())
                ));
            }
        }
        out.push('\n');
        for (name, g) in &self.grounding {
            out.push_str(&format!(
                "grounding ({name}): {}{}\n",
                g.line(),
                if g.sees { "" } else { "  [BLIND]" }
            ));
        }
        if !self.grounding.is_empty() {
            out.push('\n');
        }
        for c in &self.claims {
            let verdict = match c.holds {
                Some(true) => "reproduced",
                Some(false) => "NOT reproduced",
                None => "not measured",
            };
            let noise = match c.beyond_noise {
                Some(false) => " [within noise]",
                _ => "",
            };
            out.push_str(&format!(
                "claim ({}) {verdict}{noise}: {}\n",
                c.id, c.evidence
            ));
        }
        out
    }

    /// `report.md`.
    pub fn markdown(&self, title: &str) -> String {
        let mut md = format!("# {title}\n\nSeed {}. Every number below was measured by this run; `report.json` holds them all.\n\n", self.seed);
        md.push_str("## Claims\n\n");
        md.push_str(&claims_table(
            &self.claims,
            ("reproduced", "**not reproduced**"),
        ));
        md.push_str(&format!(
            "\n## Policies (Table 2 analogue)\n\nMean oracle score (0–100) on {} held-out prompts, greedy answers; Δ against the base policy (after SFT, before RL).\n\n",
            self.eval_prompts
        ));
        md.push_str(&self.policy_table());
        md.push_str(&format!(
            "\n## Reward models (Table 1 analogue)\n\nPairwise accuracy on {} held-out pairs per split (an unparsed GRM judgment counts as wrong). `r`: Pearson correlation of rewards with oracle scores over groups of candidate answers — the score-only RM scores each answer alone; a GRM compares each answer once with one random other (single) or with every other answer (grouped).\n\n",
            self.rm_pairs_per_split
        ));
        md.push_str(&self.rm_table());
        md.push_str(&self.grounding_table());
        md.push_str("\n## Reward-hacking watch\n\nOver-refusal: the share of safe requests refused, over every family and over the situational-safety family alone.\n\n| policy | self-praise | beyond needed | safe refused | safety: safe refused | mean tokens | finished |\n|---|---:|---:|---:|---:|---:|---:|\n");
        for (key, label) in self.policy_rows() {
            if let Some(h) = self.reward_hacking.get(&key) {
                md.push_str(&format!(
                    "| {label} | {:.3} | {:.3} | {} | {} | {:.1} | {:.3} |\n",
                    h.self_praise,
                    h.beyond_needed,
                    fmt3(h.safe_refused.as_ref()),
                    fmt3(h.safety_safe_refused.as_ref()),
                    h.mean_tokens,
                    h.finished
                ));
            }
        }
        if !self.length_drift.is_empty() {
            md.push_str("\nResponse length during stage 2 (mean tokens of held-out answers, first → last evaluation):\n\n");
            for (k, curve) in &self.length_drift {
                if let (Some(a), Some(b)) = (curve.first(), curve.last()) {
                    md.push_str(&format!(
                        "- {k}: {:.1} (v{}) → {:.1} (v{})\n",
                        a.1, a.0, b.1, b.0
                    ));
                }
            }
        }
        if !self.sweep.is_empty() {
            md.push_str(
                "\n## Candidate sweep\n\n| n | variant | average | gain |\n|---:|---|---:|---:|\n",
            );
            for p in &self.sweep {
                md.push_str(&format!(
                    "| {} | {} | {:.1} | {:+.1} |\n",
                    p.n, p.variant, p.average, p.gain
                ));
            }
        }
        md.push_str("\n## Wall time\n\n| stage | seconds |\n|---|---:|\n");
        for (k, s) in &self.stage_wall_s {
            md.push_str(&format!("| {k} | {s:.0} |\n"));
        }
        if !self.plots.is_empty() {
            md.push_str("\n## Plots\n\n");
            for p in &self.plots {
                md.push_str(&format!("![{p}]({p})\n\n"));
            }
        }
        md
    }
}

/// Claims as a Markdown table; `verdicts` words a claim that holds and one that does not.
pub fn claims_table(claims: &[Claim], verdicts: (&str, &str)) -> String {
    let mut md = String::from("| claim | result | beyond 2 SE | evidence |\n|---|---|---|---|\n");
    for c in claims {
        let verdict = match c.holds {
            Some(true) => verdicts.0,
            Some(false) => verdicts.1,
            None => "not measured",
        };
        let noise = match c.beyond_noise {
            Some(true) => "yes",
            Some(false) => "no (within noise)",
            None => "not tested",
        };
        md.push_str(&format!(
            "| ({}) {} | {verdict} | {noise} | {} |\n",
            c.id, c.statement, c.evidence
        ));
    }
    md
}

fn not_measured(id: &str, statement: &str) -> Claim {
    Claim {
        id: id.into(),
        statement: statement.into(),
        holds: None,
        beyond_noise: None,
        evidence: "not measured in this run".into(),
    }
}

fn fmt1(x: Option<&f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.1}"))
}

fn fmt3(x: Option<&f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:.3}"))
}
