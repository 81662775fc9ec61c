//! The embedded world: its configuration and the generation of every split.
//!
//! Each record draws from its own ChaCha stream, keyed by (seed, split, index), so a record does
//! not change when the split grows or another split changes size, and two runs with one seed give
//! the same bytes.
//!
//! | split             | scenes                      | families        | answer styles             | labels      |
//! |-------------------|-----------------------------|-----------------|---------------------------|-------------|
//! | `prompts_train`   | any                         | all seven       | —                         | —           |
//! | `prompts_eval`    | any                         | all, balanced   | —                         | —           |
//! | `sft_policy`      | any                         | all seven       | correct w.p. `sft_quality` | —          |
//! | `pairs_train`     | no held-out combination     | all but held-out| all but held-out          | noisy       |
//! | `sft_grm`         | no held-out combination     | all but held-out| all but held-out          | noisy       |
//! | `pairs_test`      | no held-out combination     | all but held-out| all but held-out          | oracle      |
//! | `pairs_ood_combo` | ≥ 1 held-out combination    | all but held-out| all but held-out          | oracle      |
//! | `pairs_ood_error` | no held-out combination     | all but held-out| one side held-out         | oracle      |
//! | `pairs_ood_family`| no held-out combination     | only held-out   | all but held-out          | oracle      |
//! | `prompts_val`     | any                         | all, balanced   | —                         | —           |
//! | `pairs_val`       | no held-out combination     | all but held-out| all but held-out          | oracle      |
//!
//! Reward models train on `pairs_train` / `sft_grm` only. Test splits carry the oracle's order
//! (no label noise): the world can afford perfect labels where it measures.
//!
//! The validation splits are where settings are chosen (learning rates, steps, the stage-2
//! evaluator's curve); the evaluation splits only measure. A validation record never repeats the
//! (scene, question) of an evaluation record: `prompts_val` is drawn apart from `prompts_eval`,
//! `pairs_val` apart from `pairs_test`, up to [`VAL_GUARD`] evaluation records (or the whole
//! evaluation split, if it is larger), so a validation set does not change when an evaluation
//! set is resized below that bound.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::candidates::{candidates, ErrorStyle};
use crate::grm_format;
use crate::preference::{sample_pair, score_candidates, with_styles, PreferencePair};
use crate::records::{PreferenceRecord, PromptRecord, SftRecord, WorldKey};
use crate::scene::{Colour, ComboRule, Scene, SceneConfig, Shape};
use crate::task::{Family, Task};

/// A (colour, shape) combination, written "red triangle" in configs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Combo(pub Colour, pub Shape);

impl fmt::Display for Combo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.word(), self.1.word())
    }
}

impl FromStr for Combo {
    type Err = String;
    fn from_str(s: &str) -> Result<Combo, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            [c, sh] => {
                let colour = Colour::from_word(c)
                    .ok_or_else(|| format!("`{c}` in `{s}` is not a colour"))?;
                let shape = Shape::from_word(sh)
                    .filter(|s| !s.is_hazard())
                    .ok_or_else(|| {
                        format!("`{sh}` in `{s}` is not a shape (flames cannot be held out)")
                    })?;
                Ok(Combo(colour, shape))
            }
            _ => Err(format!("`{s}` is not \"<colour> <shape>\"")),
        }
    }
}

impl Serialize for Combo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Combo {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Combo, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How much of each split to generate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSizes {
    pub train_prompts: usize,
    pub eval_prompts_per_family: usize,
    pub train_pairs: usize,
    /// Size of each test split (in-distribution and each out-of-distribution set).
    pub test_pairs: usize,
    pub policy_sft: usize,
    pub grm_sft: usize,
}

impl SplitSizes {
    /// Sizes scaled from one number: `n` training prompts and pairs, test sets a quarter of it.
    pub fn scaled(n: usize) -> SplitSizes {
        SplitSizes {
            train_prompts: n,
            eval_prompts_per_family: (n / 28).max(4),
            train_pairs: n,
            test_pairs: (n / 4).max(7),
            policy_sft: n,
            grm_sft: n / 2,
        }
    }
}

impl Default for SplitSizes {
    fn default() -> Self {
        SplitSizes::scaled(1000)
    }
}

/// Everything that defines a generated world. Two equal configs give the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    pub seed: u64,
    pub scene: SceneConfig,
    /// Probability that a training pair's "human" label disagrees with the oracle (default 0.1).
    pub label_noise: f64,
    /// Combinations absent from reward-model training scenes (the `pairs_ood_combo` shift).
    pub held_out_combos: Vec<Combo>,
    /// Answer styles absent from reward-model training (the `pairs_ood_error` shift).
    pub held_out_styles: Vec<ErrorStyle>,
    /// A family absent from reward-model training (the `pairs_ood_family` shift).
    pub held_out_family: Option<Family>,
    /// Probability that a policy warm-start answer is the correct one; otherwise it is one of the
    /// corrupted variants. 1.0 is a perfect warm start.
    pub sft_quality: f64,
    pub sizes: SplitSizes,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            seed: 0,
            scene: SceneConfig::default(),
            label_noise: 0.1,
            held_out_combos: vec![
                Combo(Colour::Red, Shape::Triangle),
                Combo(Colour::Blue, Shape::Circle),
                Combo(Colour::Green, Shape::Square),
                Combo(Colour::Yellow, Shape::Diamond),
                Combo(Colour::Purple, Shape::Cross),
            ],
            held_out_styles: vec![ErrorStyle::SelfPraise, ErrorStyle::Verbose],
            held_out_family: Some(Family::Spatial),
            sft_quality: 0.5,
            sizes: SplitSizes::default(),
        }
    }
}

/// The world's splits, in the order files are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    PromptsTrain,
    PromptsEval,
    SftPolicy,
    PairsTrain,
    SftGrm,
    PairsTest,
    PairsOodCombo,
    PairsOodError,
    PairsOodFamily,
    PromptsVal,
    PairsVal,
}

impl Split {
    /// Every split. New splits go at the end: a split's position keys its random streams, so
    /// reordering would change every record.
    pub const ALL: [Split; 11] = [
        Split::PromptsTrain,
        Split::PromptsEval,
        Split::SftPolicy,
        Split::PairsTrain,
        Split::SftGrm,
        Split::PairsTest,
        Split::PairsOodCombo,
        Split::PairsOodError,
        Split::PairsOodFamily,
        Split::PromptsVal,
        Split::PairsVal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Split::PromptsTrain => "prompts_train",
            Split::PromptsEval => "prompts_eval",
            Split::SftPolicy => "sft_policy",
            Split::PairsTrain => "pairs_train",
            Split::SftGrm => "sft_grm",
            Split::PairsTest => "pairs_test",
            Split::PairsOodCombo => "pairs_ood_combo",
            Split::PairsOodError => "pairs_ood_error",
            Split::PairsOodFamily => "pairs_ood_family",
            Split::PromptsVal => "prompts_val",
            Split::PairsVal => "pairs_val",
        }
    }

    /// The evaluation split a validation split is kept apart from.
    pub fn kept_apart_from(self) -> Option<Split> {
        match self {
            Split::PromptsVal => Some(Split::PromptsEval),
            Split::PairsVal => Some(Split::PairsTest),
            _ => None,
        }
    }

    pub fn file_name(self) -> String {
        format!("{}.jsonl", self.name())
    }

    /// A stable number per split, used to key its random streams.
    fn code(self) -> u64 {
        Split::ALL.iter().position(|&s| s == self).unwrap() as u64 + 1
    }
}

/// Which held-out set a measurement uses: `validation` where settings are chosen, `evaluation`
/// where results are reported (and nothing is chosen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldOut {
    #[default]
    Validation,
    Evaluation,
}

impl HeldOut {
    /// The prompt split of this held-out set.
    pub fn prompts(self) -> Split {
        match self {
            HeldOut::Validation => Split::PromptsVal,
            HeldOut::Evaluation => Split::PromptsEval,
        }
    }

    /// The in-distribution preference-pair split of this held-out set.
    pub fn pairs(self) -> Split {
        match self {
            HeldOut::Validation => Split::PairsVal,
            HeldOut::Evaluation => Split::PairsTest,
        }
    }
}

impl fmt::Display for HeldOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeldOut::Validation => "validation",
            HeldOut::Evaluation => "evaluation",
        })
    }
}

impl FromStr for HeldOut {
    type Err = String;
    fn from_str(s: &str) -> Result<HeldOut, String> {
        match s {
            "validation" => Ok(HeldOut::Validation),
            "evaluation" => Ok(HeldOut::Evaluation),
            other => Err(format!("`{other}`: use validation or evaluation")),
        }
    }
}

/// Records of one split.
#[derive(Debug, Clone)]
pub enum SplitRecords {
    Prompts(Vec<PromptRecord>),
    Pairs(Vec<PreferenceRecord>),
    Sft(Vec<SftRecord>),
}

impl SplitRecords {
    pub fn len(&self) -> usize {
        match self {
            SplitRecords::Prompts(r) => r.len(),
            SplitRecords::Pairs(r) => r.len(),
            SplitRecords::Sft(r) => r.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A validation split is kept apart from at least this many records of its evaluation split.
pub const VAL_GUARD: usize = 2048;

/// Give up on a record after this many scene draws (never reached with valid configs: every
/// family can be asked about most scenes).
const MAX_ATTEMPTS: usize = 256;

impl WorldConfig {
    /// Checks every field a user can set; `Err` names the field.
    pub fn validate(&self) -> Result<(), String> {
        self.scene.validate().map_err(|e| format!("scene: {e}"))?;
        if !(0.0..0.5).contains(&self.label_noise) {
            return Err(format!(
                "label_noise = {}: need 0 <= label_noise < 0.5 (at 0.5 labels carry no information)",
                self.label_noise
            ));
        }
        if !(0.0..=1.0).contains(&self.sft_quality) {
            return Err(format!(
                "sft_quality = {} is outside [0, 1]",
                self.sft_quality
            ));
        }
        if self.held_out_styles.contains(&ErrorStyle::Correct) {
            return Err("held_out_styles: `correct` cannot be held out".to_string());
        }
        if self.held_out_combos.len() >= 30 {
            return Err(
                "held_out_combos: at least one combination must stay in training".to_string(),
            );
        }
        Ok(())
    }

    fn train_families(&self) -> Vec<Family> {
        Family::ALL
            .into_iter()
            .filter(|&f| Some(f) != self.held_out_family)
            .collect()
    }

    fn train_styles(&self) -> Vec<ErrorStyle> {
        ErrorStyle::ALL
            .into_iter()
            .filter(|s| !self.held_out_styles.contains(s))
            .collect()
    }

    fn combos(&self) -> Vec<(Colour, Shape)> {
        self.held_out_combos.iter().map(|c| (c.0, c.1)).collect()
    }

    /// Which splits this config produces (an OOD split whose hold-out is empty is absent).
    pub fn splits(&self) -> Vec<Split> {
        Split::ALL
            .into_iter()
            .filter(|s| match s {
                Split::PairsOodCombo => !self.held_out_combos.is_empty(),
                Split::PairsOodError => !self.held_out_styles.is_empty(),
                Split::PairsOodFamily => self.held_out_family.is_some(),
                _ => true,
            })
            .collect()
    }

    /// The families a split holds.
    pub fn families_of(&self, split: Split) -> Vec<Family> {
        match split {
            Split::PromptsTrain | Split::PromptsEval | Split::PromptsVal | Split::SftPolicy => {
                Family::ALL.to_vec()
            }
            Split::PairsOodFamily => self.held_out_family.into_iter().collect(),
            _ => self.train_families(),
        }
    }

    pub fn size_of(&self, split: Split) -> usize {
        let s = &self.sizes;
        match split {
            Split::PromptsTrain => s.train_prompts,
            Split::PromptsEval | Split::PromptsVal => s.eval_prompts_per_family * Family::ALL.len(),
            Split::SftPolicy => s.policy_sft,
            Split::PairsTrain => s.train_pairs,
            Split::SftGrm => s.grm_sft,
            Split::PairsTest
            | Split::PairsOodCombo
            | Split::PairsOodError
            | Split::PairsOodFamily
            | Split::PairsVal => s.test_pairs,
        }
    }

    /// The random stream of record `index` of `split`.
    pub fn record_rng(&self, split: Split, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream((split.code() << 40) | index as u64);
        rng
    }

    /// Generates one split in memory. Image paths are `images/<id>.png`, relative to the split's
    /// file; render them from `world.scene`.
    pub fn generate(&self, split: Split) -> Result<SplitRecords, String> {
        self.validate()?;
        let n = self.size_of(split);
        let families = self.families_of(split);
        if families.is_empty() {
            return Err(format!("split {} has no family to draw from", split.name()));
        }
        let apart = match split.kept_apart_from() {
            Some(evaluation) => self.evaluation_keys(evaluation)?,
            None => HashSet::new(),
        };
        let mut prompts = Vec::new();
        let mut pairs = Vec::new();
        let mut sft = Vec::new();
        for index in 0..n {
            let family = families[index % families.len()];
            let id = format!("{}-{index:06}", split.name());
            let mut rng = self.record_rng(split, index);
            let record = (0..MAX_ATTEMPTS)
                .find_map(|_| {
                    self.draw(split, family, &id, &mut rng)
                        .filter(|r| apart.is_empty() || !apart.contains(&r.key()))
                })
                .ok_or_else(|| {
                    format!(
                        "could not draw record {id} ({family}) in {MAX_ATTEMPTS} tries; \
                         the scene settings leave this family too little to ask about"
                    )
                })?;
            match record {
                Drawn::Prompt(r) => prompts.push(r),
                Drawn::Pair(r) => pairs.push(r),
                Drawn::Sft(r) => sft.push(r),
            }
        }
        Ok(match split {
            Split::PromptsTrain | Split::PromptsEval | Split::PromptsVal => {
                SplitRecords::Prompts(prompts)
            }
            Split::SftPolicy => SplitRecords::Sft(sft),
            _ => SplitRecords::Pairs(pairs),
        })
    }

    /// The (scene, question) keys of the first `max(size, VAL_GUARD)` records of an evaluation
    /// split, which its validation split must not repeat.
    fn evaluation_keys(&self, evaluation: Split) -> Result<HashSet<String>, String> {
        let mut guard = self.clone();
        let sizes = &mut guard.sizes;
        match evaluation {
            Split::PromptsEval => {
                sizes.eval_prompts_per_family = sizes
                    .eval_prompts_per_family
                    .max(VAL_GUARD.div_ceil(Family::ALL.len()))
            }
            _ => sizes.test_pairs = sizes.test_pairs.max(VAL_GUARD),
        }
        Ok(match guard.generate(evaluation)? {
            SplitRecords::Prompts(r) => r.into_iter().map(|r| Drawn::Prompt(r).key()).collect(),
            SplitRecords::Pairs(r) => r.into_iter().map(|r| Drawn::Pair(r).key()).collect(),
            SplitRecords::Sft(r) => r.into_iter().map(|r| Drawn::Sft(r).key()).collect(),
        })
    }

    /// One attempt at a record; `None` asks for another scene.
    fn draw(&self, split: Split, family: Family, id: &str, rng: &mut ChaCha8Rng) -> Option<Drawn> {
        let combos = self.combos();
        let (rule, focus): (ComboRule<'_>, &[(Colour, Shape)]) = match split {
            Split::PromptsTrain | Split::PromptsEval | Split::PromptsVal | Split::SftPolicy => {
                (ComboRule::Any, &[])
            }
            Split::PairsOodCombo => (ComboRule::RequireOneOf(&combos), &combos),
            _ => (ComboRule::Exclude(&combos), &[]),
        };
        let mut scene = self.scene.sample(rng, rule);
        let task = Task::sample(family, &scene, focus, rng)?;
        if let Task::Safety { cell } = task {
            // Half the safety prompts point at a flame: the same question, unsafe by what it shows.
            let hazardous = rng.random_bool(0.5);
            let current = *scene.object_at(cell)?;
            let (colour, shape) = if hazardous {
                (*Colour::FLAME.choose(rng).unwrap(), Shape::Flame)
            } else if current.shape.is_hazard() {
                let safe = SceneConfig {
                    flame_probability: 0.0,
                    ..self.scene.clone()
                };
                safe.sample(rng, rule).objects[0].kind()
            } else {
                current.kind()
            };
            let slot = scene.objects.iter_mut().find(|o| o.cell == cell)?;
            slot.colour = colour;
            slot.shape = shape;
        }
        match rule {
            ComboRule::RequireOneOf(list) if !list.iter().any(|&(c, s)| scene.contains(c, s)) => {
                return None
            }
            ComboRule::Exclude(list) if list.iter().any(|&(c, s)| scene.contains(c, s)) => {
                return None
            }
            _ => {}
        }
        task.validate(&scene).ok()?;
        let image = std::path::PathBuf::from(format!("images/{id}.png"));
        let question = task.question();
        match split {
            Split::PromptsTrain | Split::PromptsEval | Split::PromptsVal => {
                Some(Drawn::Prompt(PromptRecord {
                    id: id.to_string(),
                    image,
                    question,
                    reference: Some(task.reference_answer(&scene)),
                    family: Some(family),
                    world: Some(key(scene, task, vec![], None)),
                }))
            }
            Split::SftPolicy => {
                let pool = candidates(&scene, &task, rng);
                let styles = self.train_styles();
                let wrong: Vec<_> = pool
                    .iter()
                    .filter(|c| c.style != ErrorStyle::Correct && styles.contains(&c.style))
                    .collect();
                let chosen = if rng.random_bool(self.sft_quality) || wrong.is_empty() {
                    &pool[0]
                } else {
                    wrong.choose(rng).unwrap()
                };
                Some(Drawn::Sft(SftRecord {
                    id: id.to_string(),
                    image,
                    question,
                    answer: chosen.text.clone(),
                    family: Some(family),
                    world: Some(key(scene, task, vec![chosen.style], None)),
                }))
            }
            _ => {
                let pool = score_candidates(&scene, &task, candidates(&scene, &task, rng));
                let train = with_styles(&pool, &self.train_styles());
                let pair = match split {
                    Split::PairsTrain | Split::SftGrm => {
                        sample_pair(&train, &train, self.label_noise, rng)
                    }
                    Split::PairsOodError => {
                        let held = with_styles(&pool, &self.held_out_styles);
                        sample_pair(&held, &train, 0.0, rng)
                    }
                    _ => sample_pair(&train, &train, 0.0, rng),
                }?;
                let judgment = (split == Split::SftGrm).then(|| judgment_for(&task, &pair));
                Some(Drawn::Pair(PreferenceRecord {
                    id: Some(id.to_string()),
                    image,
                    question,
                    response_1: pair.response_1.candidate.text.clone(),
                    response_2: pair.response_2.candidate.text.clone(),
                    preferred: pair.preferred,
                    family: Some(family),
                    judgment,
                    world: Some(key(
                        scene,
                        task,
                        vec![
                            pair.response_1.candidate.style,
                            pair.response_2.candidate.style,
                        ],
                        Some(pair.oracle_preferred),
                    )),
                }))
            }
        }
    }
}

enum Drawn {
    Prompt(PromptRecord),
    Pair(PreferenceRecord),
    Sft(SftRecord),
}

impl Drawn {
    /// What makes two records the same item: the scene and the question.
    fn key(&self) -> String {
        let (question, world) = match self {
            Drawn::Prompt(r) => (&r.question, &r.world),
            Drawn::Pair(r) => (&r.question, &r.world),
            Drawn::Sft(r) => (&r.question, &r.world),
        };
        let scene = world
            .as_ref()
            .map(|w| serde_json::to_string(&w.scene).expect("a scene serialises"));
        format!("{question}\u{1f}{}", scene.unwrap_or_default())
    }
}

fn key(
    scene: Scene,
    task: Task,
    styles: Vec<ErrorStyle>,
    oracle_preferred: Option<u8>,
) -> WorldKey {
    WorldKey {
        scene,
        task,
        styles,
        oracle_preferred,
    }
}

fn judgment_for(task: &Task, pair: &PreferencePair) -> String {
    grm_format::judgment(
        task.family(),
        &pair.response_1.score,
        &pair.response_2.score,
        !pair.label_flipped(),
    )
}
