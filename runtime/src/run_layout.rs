//! The pipeline's run directory (`grlhf pipeline` / `grlhf reproduce`): where each stage writes
//! and the later ones read, one method per place, so no path is spelled twice.
//!
//! ```text
//! RUN/pipeline.toml        the pipeline config as run
//! RUN/stages.json          each stage's wall time
//! RUN/warm/policy/         policy SFT on the world's answers           (a WarmStartDir)
//! RUN/warm/policy_blind/   … its blind twin (blank images)
//! RUN/warm/grm/            GRM SFT on judgments; init/ = the untrained GRM
//! RUN/warm/grm_blind/      … its blind twin
//! RUN/warm/rm/             score-only Bradley–Terry reward model
//! RUN/warm/grounding.json  the grounding check of the warm-started models
//! RUN/stage1/              the GRM trained by GRPO on preference pairs (a `grlhf run` directory)
//! RUN/stage2/<v>/          the policy trained by GRPO, one `grlhf run` directory per variant
//! RUN/sweep/n<N>/<v>/      the candidate sweep (reproduce --sweep-n)
//! RUN/eval/                policy_eval.json, answers.jsonl, judgments.jsonl (every RM verdict)
//! RUN/report.md, report.json, plots/*.png
//! RUN/seed-N/              with --seeds: one whole run per seed; seeds.json, seeds.md beside
//! ```

use std::path::{Path, PathBuf};

use crate::variant::Variant;

/// A pipeline run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    pub fn new(root: impl Into<PathBuf>) -> RunLayout {
        RunLayout { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The pipeline config as run (`pipeline.toml`).
    pub fn pipeline_config(&self) -> PathBuf {
        self.root.join("pipeline.toml")
    }

    /// Each stage's wall time, kept across stage-alone runs (`stages.json`).
    pub fn stage_walls(&self) -> PathBuf {
        self.root.join("stages.json")
    }

    /// The warm-started policy.
    pub fn warm_policy(&self) -> WarmStartDir {
        WarmStartDir::new(self.root.join("warm/policy"))
    }

    /// The warm-started policy's blind twin (trained on blank images).
    pub fn warm_policy_blind(&self) -> WarmStartDir {
        WarmStartDir::new(self.root.join("warm/policy_blind"))
    }

    /// The warm-started GRM (`init/` holds the untrained one).
    pub fn warm_grm(&self) -> WarmStartDir {
        WarmStartDir::new(self.root.join("warm/grm"))
    }

    /// The warm-started GRM's blind twin.
    pub fn warm_grm_blind(&self) -> WarmStartDir {
        WarmStartDir::new(self.root.join("warm/grm_blind"))
    }

    /// The score-only Bradley–Terry reward model.
    pub fn warm_rm(&self) -> WarmStartDir {
        WarmStartDir::new(self.root.join("warm/rm"))
    }

    /// The grounding check's results, read back by the evaluation into the report.
    pub fn grounding(&self) -> PathBuf {
        self.root.join("warm/grounding.json")
    }

    /// Stage 1: the GRM trained by RL (its `policy` is the trained GRM).
    pub fn stage1(&self) -> StageRunDir {
        StageRunDir::new(self.root.join("stage1"))
    }

    /// Stage 2 of one variant.
    pub fn stage2(&self, variant: Variant) -> StageRunDir {
        StageRunDir::new(self.root.join("stage2").join(variant.name()))
    }

    /// One point of the candidate sweep: `variant` with `n` candidates per prompt.
    pub fn sweep(&self, n: usize, variant: Variant) -> StageRunDir {
        StageRunDir::new(self.root.join(format!("sweep/n{n}")).join(variant.name()))
    }

    /// The evaluation's own files.
    pub fn eval_dir(&self) -> PathBuf {
        self.root.join("eval")
    }

    /// Every policy's held-out `EvalStats`.
    pub fn policy_eval(&self) -> PathBuf {
        self.eval_dir().join("policy_eval.json")
    }

    /// Every policy's answer to every held-out prompt, with the oracle's score.
    pub fn answers(&self) -> PathBuf {
        self.eval_dir().join("answers.jsonl")
    }

    /// Every reward-model verdict on the held-out and out-of-distribution pairs.
    pub fn judgments(&self) -> PathBuf {
        self.eval_dir().join("judgments.jsonl")
    }

    pub fn report_json(&self) -> PathBuf {
        self.root.join("report.json")
    }

    pub fn report_md(&self) -> PathBuf {
        self.root.join("report.md")
    }

    /// The report's charts.
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }

    /// Reward by learner step, stage 1 and stage 2.
    pub fn reward_curves_plot(&self) -> PathBuf {
        self.plots().join("reward_curves.png")
    }

    /// Stage 2's held-out oracle score and response length by policy version.
    pub fn eval_curves_plot(&self) -> PathBuf {
        self.plots().join("eval_curves.png")
    }

    /// Each reward model's pairwise accuracy per split.
    pub fn rm_accuracy_plot(&self) -> PathBuf {
        self.plots().join("rm_accuracy.png")
    }

    /// The gain over the base policy against the candidate count.
    pub fn sweep_plot(&self) -> PathBuf {
        self.plots().join("sweep_n.png")
    }

    /// `path` relative to the run directory, `/`-separated (how the report names its plots).
    pub fn relative(&self, path: &Path) -> String {
        let relative = path.strip_prefix(&self.root).unwrap_or(path);
        relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy())
            .collect::<Vec<_>>()
            .join("/")
    }

    /// With `--seeds`: where seed `seed`'s whole run lives.
    pub fn seed(&self, seed: u64) -> RunLayout {
        RunLayout::new(self.root.join(format!("seed-{seed}")))
    }

    /// With `--seeds`: every number across seeds.
    pub fn seeds_json(&self) -> PathBuf {
        self.root.join("seeds.json")
    }

    /// With `--seeds`: the across-seed tables and claims.
    pub fn seeds_md(&self) -> PathBuf {
        self.root.join("seeds.md")
    }
}

/// What a warm start writes (`grlhf sft --out DIR`, and each `RUN/warm/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarmStartDir {
    dir: PathBuf,
}

impl WarmStartDir {
    pub fn new(dir: impl Into<PathBuf>) -> WarmStartDir {
        WarmStartDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trained model, with its tokenizer and processor files.
    pub fn model(&self) -> PathBuf {
        self.dir.join("model")
    }

    /// The untrained model, when the warm start began from `world:<preset>`.
    pub fn init(&self) -> PathBuf {
        self.dir.join("init")
    }

    /// The SFT record (`sft.json`).
    pub fn sft_record(&self) -> PathBuf {
        self.dir.join("sft.json")
    }

    /// The Bradley–Terry reward model's record (`rm.json`).
    pub fn rm_record(&self) -> PathBuf {
        self.dir.join("rm.json")
    }
}

/// The files of a `grlhf run` directory that the pipeline reads (`crate::run` writes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRunDir {
    dir: PathBuf,
}

impl StageRunDir {
    pub fn new(dir: impl Into<PathBuf>) -> StageRunDir {
        StageRunDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The trained model.
    pub fn policy(&self) -> PathBuf {
        self.dir.join("policy")
    }

    /// One line per learner step.
    pub fn metrics(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// One line per held-out evaluation.
    pub fn evals(&self) -> PathBuf {
        self.dir.join("eval.jsonl")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout is the one earlier runs wrote: existing run directories stay readable.
    #[test]
    fn paths_are_the_documented_ones() {
        let run = RunLayout::new("/r");
        let p = |path: PathBuf| path.to_string_lossy().into_owned();
        assert_eq!(p(run.warm_policy().model()), "/r/warm/policy/model");
        assert_eq!(p(run.warm_grm().init()), "/r/warm/grm/init");
        assert_eq!(p(run.warm_rm().rm_record()), "/r/warm/rm/rm.json");
        assert_eq!(p(run.warm_grm_blind().model()), "/r/warm/grm_blind/model");
        assert_eq!(p(run.stage1().policy()), "/r/stage1/policy");
        assert_eq!(
            p(run.stage2(Variant::RmGrpo).evals()),
            "/r/stage2/rm_grpo/eval.jsonl"
        );
        assert_eq!(
            p(run.sweep(4, Variant::GrmRlGrouped).policy()),
            "/r/sweep/n4/grm_rl_grouped/policy"
        );
        assert_eq!(p(run.judgments()), "/r/eval/judgments.jsonl");
        assert_eq!(p(run.seed(3).report_json()), "/r/seed-3/report.json");
        assert_eq!(
            run.relative(&run.eval_curves_plot()),
            "plots/eval_curves.png"
        );
    }
}
