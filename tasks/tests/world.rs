//! The world's splits: determinism, coverage of families, what each out-of-distribution split
//! holds out, label noise, and ties left out.

use std::collections::BTreeSet;
use std::path::Path;

use grlhf_tasks::candidates::ErrorStyle;
use grlhf_tasks::export::export_world;
use grlhf_tasks::oracle::score;
use grlhf_tasks::records::PreferenceRecord;
use grlhf_tasks::score_parser::parse_scores;
use grlhf_tasks::task::Family;
use grlhf_tasks::world::{Split, SplitRecords, SplitSizes, WorldConfig};

fn config(seed: u64, n: usize) -> WorldConfig {
    WorldConfig {
        seed,
        sizes: SplitSizes::scaled(n),
        ..WorldConfig::default()
    }
}

fn pairs(config: &WorldConfig, split: Split) -> Vec<PreferenceRecord> {
    match config.generate(split).unwrap() {
        SplitRecords::Pairs(records) => records,
        other => panic!("{split:?} gave {} non-pair records", other.len()),
    }
}

/// Every file under `dir`, with its bytes, in path order.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((name, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn same_seed_same_bytes_and_different_seeds_differ() {
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, c] = ["a", "b", "c"].map(|name| tmp.path().join(name));
    export_world(&config(5, 56), &a, false, &mut |_, _, _| {}).unwrap();
    export_world(&config(5, 56), &b, false, &mut |_, _, _| {}).unwrap();
    export_world(&config(6, 56), &c, false, &mut |_, _, _| {}).unwrap();
    let (ta, tb, tc) = (tree(&a), tree(&b), tree(&c));
    assert!(ta.len() > 250, "{} files", ta.len());
    assert_eq!(ta, tb, "two exports with one seed differ");
    let names = |t: &[(String, Vec<u8>)]| t.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(&ta),
        names(&tc),
        "the file layout does not depend on the seed"
    );
    let differing = ta.iter().zip(&tc).filter(|(x, y)| x.1 != y.1).count();
    // Everything but the tokenizer (and the seed line of the manifest) changes.
    assert!(
        differing + 2 >= ta.len(),
        "only {differing} of {} files differ",
        ta.len()
    );
}

#[test]
fn records_do_not_depend_on_split_sizes() {
    let small = pairs(&config(3, 40), Split::PairsTrain);
    let large = pairs(&config(3, 400), Split::PairsTrain);
    assert_eq!(small[..], large[..small.len()]);
}

#[test]
fn every_split_holds_its_families_and_excludes_what_it_holds_out() {
    let config = config(11, 700);
    let held_family = config.held_out_family.unwrap();
    let combos: Vec<_> = config.held_out_combos.iter().map(|c| (c.0, c.1)).collect();
    for split in config.splits() {
        let records = config.generate(split).unwrap();
        // Every record of every kind, as (family, scene, styles).
        let rows: Vec<_> = match &records {
            SplitRecords::Prompts(r) => r
                .iter()
                .map(|r| (r.family.unwrap(), r.world.clone().unwrap()))
                .collect(),
            SplitRecords::Pairs(r) => r
                .iter()
                .map(|r| (r.family.unwrap(), r.world.clone().unwrap()))
                .collect(),
            SplitRecords::Sft(r) => r
                .iter()
                .map(|r| (r.family.unwrap(), r.world.clone().unwrap()))
                .collect(),
        };
        assert_eq!(rows.len(), config.size_of(split), "{split:?}");
        let families: BTreeSet<Family> = rows.iter().map(|r| r.0).collect();
        let expected: BTreeSet<Family> = config.families_of(split).into_iter().collect();
        assert_eq!(families, expected, "{split:?} families");
        for (family, world) in &rows {
            assert_eq!(world.task.family(), *family);
            let has_combo = combos.iter().any(|&(c, s)| world.scene.contains(c, s));
            let held_styles = world
                .styles
                .iter()
                .filter(|s| config.held_out_styles.contains(s))
                .count();
            match split {
                Split::PairsTrain
                | Split::SftGrm
                | Split::PairsTest
                | Split::PairsOodFamily
                | Split::PairsVal => {
                    assert!(!has_combo, "{split:?} shows a held-out combination");
                    assert_eq!(held_styles, 0, "{split:?} uses a held-out style");
                }
                Split::PairsOodCombo => {
                    assert!(
                        has_combo,
                        "an ood_combo scene without a held-out combination"
                    );
                    assert_eq!(held_styles, 0);
                }
                Split::PairsOodError => {
                    assert!(!has_combo);
                    assert_eq!(held_styles, 1, "each ood_error pair has one held-out side");
                }
                Split::SftPolicy => assert_eq!(held_styles, 0),
                Split::PromptsTrain | Split::PromptsEval | Split::PromptsVal => {}
            }
            if matches!(
                split,
                Split::PairsTrain
                    | Split::SftGrm
                    | Split::PairsTest
                    | Split::PairsOodCombo
                    | Split::PairsOodError
                    | Split::PairsVal
            ) {
                assert_ne!(*family, held_family);
            }
        }
    }
    // Policy evaluation and validation sets are balanced across families.
    for split in [Split::PromptsEval, Split::PromptsVal] {
        let SplitRecords::Prompts(records) = config.generate(split).unwrap() else {
            panic!("{split:?} holds prompts");
        };
        for family in Family::ALL {
            let n = records.iter().filter(|r| r.family == Some(family)).count();
            assert_eq!(
                n, config.sizes.eval_prompts_per_family,
                "{split:?} {family}"
            );
        }
    }
}

/// (scene, question) of every record of a split.
fn items(config: &WorldConfig, split: Split) -> Vec<(String, String)> {
    let key = |q: &str, w: &Option<grlhf_tasks::records::WorldKey>| {
        let scene = serde_json::to_string(&w.as_ref().unwrap().scene).unwrap();
        (q.to_string(), scene)
    };
    match config.generate(split).unwrap() {
        SplitRecords::Prompts(r) => r.iter().map(|r| key(&r.question, &r.world)).collect(),
        SplitRecords::Pairs(r) => r.iter().map(|r| key(&r.question, &r.world)).collect(),
        SplitRecords::Sft(r) => r.iter().map(|r| key(&r.question, &r.world)).collect(),
    }
}

#[test]
fn validation_never_repeats_an_evaluation_item() {
    // A small world (one or two objects per scene) makes chance repeats common, so the guard has
    // something to keep apart; the evaluation splits here are larger than the guard, which must
    // then cover all of them.
    let scene = grlhf_tasks::scene::SceneConfig {
        min_objects: 1,
        max_objects: 2,
        ..Default::default()
    };
    let config = WorldConfig {
        seed: 11,
        scene,
        sizes: SplitSizes {
            train_prompts: 2800,
            train_pairs: 2500,
            eval_prompts_per_family: 400,
            test_pairs: 2500,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    for (val, eval, unguarded) in [
        (Split::PromptsVal, Split::PromptsEval, Split::PromptsTrain),
        (Split::PairsVal, Split::PairsTest, Split::PairsTrain),
    ] {
        let evaluation: BTreeSet<_> = items(&config, eval).into_iter().collect();
        let repeats = |split: Split| {
            items(&config, split)
                .iter()
                .filter(|item| evaluation.contains(item))
                .count()
        };
        // A training split, drawn the same way but without a guard, does repeat evaluation
        // items in this world: the assertion below could fail.
        assert!(
            repeats(unguarded) > 0,
            "{unguarded:?} never repeats {eval:?}"
        );
        assert_eq!(items(&config, val).len(), config.size_of(val));
        assert_eq!(repeats(val), 0, "{val:?} repeats items of {eval:?}");
    }
}

#[test]
fn validation_does_not_move_when_evaluation_is_resized_below_the_guard() {
    let small = config(9, 56);
    let large = WorldConfig {
        sizes: SplitSizes {
            eval_prompts_per_family: 100,
            ..small.sizes.clone()
        },
        ..small.clone()
    };
    let a = items(&small, Split::PromptsVal);
    let b = items(&large, Split::PromptsVal);
    assert_eq!(a[..], b[..a.len()]);
    assert_ne!(a, items(&small, Split::PromptsEval)[..a.len()].to_vec());
}

#[test]
fn label_noise_is_the_setting_and_ties_are_left_out() {
    for noise in [0.1, 0.25] {
        let config = WorldConfig {
            label_noise: noise,
            sizes: SplitSizes {
                train_pairs: 10_000,
                ..SplitSizes::scaled(7)
            },
            ..WorldConfig::default()
        };
        let records = pairs(&config, Split::PairsTrain);
        assert_eq!(records.len(), 10_000);
        let mut flipped = 0;
        for r in &records {
            let world = r.world.as_ref().unwrap();
            let s1 = score(&world.scene, &world.task, &r.response_1).total;
            let s2 = score(&world.scene, &world.task, &r.response_2).total;
            assert_ne!(s1, s2, "a tie was kept: {r:?}");
            let oracle = if s1 > s2 { 1 } else { 2 };
            assert_eq!(world.oracle_preferred, Some(oracle));
            flipped += (r.preferred != oracle) as usize;
        }
        let rate = flipped as f64 / records.len() as f64;
        assert!(
            (rate - noise).abs() <= 0.02,
            "noise {noise}: measured {rate}"
        );
    }
    // Test splits carry the oracle's order.
    let config = config(2, 400);
    for r in pairs(&config, Split::PairsTest) {
        assert_eq!(Some(r.preferred), r.world.unwrap().oracle_preferred);
    }
}

#[test]
fn grm_warm_start_judgments_parse_and_follow_the_label() {
    let config = config(4, 600);
    let records = pairs(&config, Split::SftGrm);
    assert_eq!(records.len(), 300);
    let mut kinds = BTreeSet::new();
    for r in records {
        let judgment = r.judgment.as_ref().unwrap();
        let (s1, s2) = parse_scores(judgment).unwrap_or_else(|e| panic!("{judgment:?}: {e}"));
        assert_ne!(s1, s2);
        assert_eq!(r.preferred, if s1 > s2 { 1 } else { 2 }, "{judgment}");
        assert!(judgment.starts_with("criteria: "));
        assert!(judgment.contains("\nanalysis: response 1 "));
        kinds.extend(r.world.unwrap().styles);
    }
    assert!(
        kinds.contains(&ErrorStyle::Correct) && kinds.len() >= 6,
        "{kinds:?}"
    );
}

#[test]
fn policy_warm_start_quality_knob_sets_the_share_of_correct_answers() {
    for quality in [0.2, 0.9] {
        let config = WorldConfig {
            sft_quality: quality,
            ..config(9, 2000)
        };
        let SplitRecords::Sft(records) = config.generate(Split::SftPolicy).unwrap() else {
            unreachable!()
        };
        let correct = records
            .iter()
            .filter(|r| r.world.as_ref().unwrap().styles == [ErrorStyle::Correct])
            .count() as f64
            / records.len() as f64;
        assert!(
            (correct - quality).abs() < 0.04,
            "quality {quality}: {correct}"
        );
    }
}

#[test]
fn bad_world_configs_name_the_field() {
    let bad = |edit: fn(&mut WorldConfig), field: &str| {
        let mut c = WorldConfig::default();
        edit(&mut c);
        let err = c.validate().unwrap_err();
        assert!(err.contains(field), "{err:?} does not name {field}");
    };
    bad(|c| c.label_noise = 0.5, "label_noise");
    bad(|c| c.sft_quality = 1.5, "sft_quality");
    bad(|c| c.scene.max_objects = 7, "max_objects");
    bad(|c| c.scene.image_size = 8, "image_size");
    bad(
        |c| c.held_out_styles = vec![ErrorStyle::Correct],
        "held_out_styles",
    );
    let err = toml_like_parse("held_out_combos = [\"red flame\"]");
    assert!(err.contains("flame"), "{err}");
}

/// Parses a config from JSON with one field set (the TOML loader lives in the runtime).
fn toml_like_parse(line: &str) -> String {
    let (key, value) = line.split_once(" = ").unwrap();
    let json = format!("{{\"{key}\": {value}}}");
    serde_json::from_str::<WorldConfig>(&json)
        .unwrap_err()
        .to_string()
}
