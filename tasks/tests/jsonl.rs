//! Loaders read back what the export wrote, and report bad lines with file, line and field.

use std::path::Path;

use grlhf_tasks::export::export_world;
use grlhf_tasks::jsonl::{load_pairs, load_prompts, load_sft, DataError, LoadOptions};
use grlhf_tasks::render::render;
use grlhf_tasks::world::{Split, SplitRecords, SplitSizes, WorldConfig};

#[test]
fn loaders_round_trip_what_the_export_wrote() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("world");
    let config = WorldConfig {
        seed: 3,
        sizes: SplitSizes::scaled(56),
        ..WorldConfig::default()
    };
    let mut calls = 0;
    let manifest = export_world(&config, &dir, false, &mut |_, done, total| {
        assert!(done <= total);
        calls += 1;
    })
    .unwrap();
    // Every split, the two validation splits included.
    assert_eq!(manifest.files.len(), 11);
    assert_eq!(
        calls,
        manifest.files.iter().map(|f| f.records).sum::<usize>()
    );
    let options = LoadOptions::default();
    for file in &manifest.files {
        let path = dir.join(&file.file);
        let with_dir = |image: &Path| dir.join(image);
        match config.generate(file.split).unwrap() {
            SplitRecords::Prompts(expected) => {
                let loaded = load_prompts(&path, options.clone()).unwrap();
                assert!(loaded.skipped.is_empty());
                assert_eq!(loaded.records.len(), file.records);
                for (mut e, l) in expected.into_iter().zip(&loaded.records) {
                    e.image = with_dir(&e.image);
                    assert_eq!(&e, l);
                }
            }
            SplitRecords::Pairs(expected) => {
                let loaded = load_pairs(&path, options.clone()).unwrap();
                assert_eq!(loaded.records.len(), file.records);
                for (mut e, l) in expected.into_iter().zip(&loaded.records) {
                    e.image = with_dir(&e.image);
                    assert_eq!(&e, l);
                }
            }
            SplitRecords::Sft(expected) => {
                let loaded = load_sft(&path, options.clone()).unwrap();
                assert_eq!(loaded.records.len(), file.records);
                for (mut e, l) in expected.into_iter().zip(&loaded.records) {
                    e.image = with_dir(&e.image);
                    assert_eq!(&e, l);
                }
            }
        }
    }
    // The PNG on disk is the scene the record describes.
    let pairs = load_pairs(&dir.join(Split::PairsTest.file_name()), options).unwrap();
    let first = &pairs.records[0];
    let on_disk = image::open(&first.image).unwrap().to_rgb8();
    assert_eq!(on_disk, render(&first.world.as_ref().unwrap().scene));
    assert_eq!(on_disk.dimensions(), (112, 112));
    // A second export into the same folder is refused unless allowed.
    let err = export_world(&config, &dir, false, &mut |_, _, _| {}).unwrap_err();
    assert!(err.to_string().contains("not empty"), "{err}");
}

const GOOD: &str = r#"{"image": "a.png", "question": "is it red?", "response_1": "yes.", "response_2": "no.", "preferred": 1, "extra_field": {"ignored": true}}"#;

fn pairs_file(dir: &Path, lines: &[&str]) -> std::path::PathBuf {
    std::fs::write(dir.join("a.png"), b"not checked for content").unwrap();
    let path = dir.join("pairs.jsonl");
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

#[test]
fn bad_lines_are_reported_with_their_line_number_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: [(&str, &str); 9] = [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        (
            r#"{"image": "a.png", "question": "q", "response_1": "a", "response_2": "b"}"#,
            "field `preferred`: missing",
        ),
        (
            r#"{"image": "a.png", "question": "q", "response_1": "a", "response_2": "b", "preferred": 3}"#,
            "field `preferred`: expected 1 or 2, found 3",
        ),
        (
            r#"{"image": "missing.png", "question": "q", "response_1": "a", "response_2": "b", "preferred": 2}"#,
            "field `image`: image file",
        ),
        (
            r#"{"image": "a.png", "question": 7, "response_1": "a", "response_2": "b", "preferred": 2}"#,
            "field `question`: expected a string, found 7",
        ),
        (
            r#"{"image": "a.png", "question": "q", "response_1": "a", "response_2": "b", "preferred": 2, "family": "poetry"}"#,
            "field `family`: unknown family `poetry`",
        ),
        (
            r#"{"image": "a.png", "question": "q", "response_1": "a", "response_2": "b", "preferred": 2, "world": {"scene": 1}}"#,
            "field `world`",
        ),
        (
            r#"{"image": "", "question": "q", "response_1": "a", "response_2": "b", "preferred": 2}"#,
            "field `image`: empty path",
        ),
    ];
    for (bad, expected) in cases {
        // Line 1 good, line 2 blank (allowed), line 3 bad, line 4 good.
        let path = pairs_file(tmp.path(), &[GOOD, "", bad, GOOD]);
        let err = load_pairs(&path, LoadOptions::default()).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, DataError::Line(ref b) if b.line == 3),
            "{message}"
        );
        assert!(
            message.starts_with(&format!("{}:3: ", path.display())),
            "{message}"
        );
        assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        // --skip-bad: the good lines load, the bad one is counted and kept for the report.
        let loaded = load_pairs(
            &path,
            LoadOptions {
                skip_bad: true,
                ..LoadOptions::default()
            },
        )
        .unwrap();
        assert_eq!(loaded.records.len(), 2);
        assert_eq!(loaded.skipped.len(), 1);
        assert_eq!(loaded.skipped[0].line, 3);
    }
    let empty = pairs_file(tmp.path(), &["", "  "]);
    assert!(matches!(
        load_pairs(&empty, LoadOptions::default()),
        Err(DataError::Empty { .. })
    ));
    let missing = load_prompts(&tmp.path().join("nope.jsonl"), LoadOptions::default()).unwrap_err();
    assert!(missing.to_string().contains("nope.jsonl"), "{missing}");
}

#[test]
fn real_data_shapes_load_with_integer_ids_and_relative_images() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("imgs")).unwrap();
    std::fs::write(tmp.path().join("imgs/x.jpg"), b"").unwrap();
    let path = tmp.path().join("prompts.jsonl");
    std::fs::write(
        &path,
        "{\"id\": 17, \"image\": \"imgs/x.jpg\", \"question\": \"What is shown?\"}\n\
         {\"id\": \"b\", \"image\": \"imgs/x.jpg\", \"question\": \"Why?\", \"reference\": \"Because.\"}\n",
    )
    .unwrap();
    let loaded = load_prompts(&path, LoadOptions::default()).unwrap();
    assert_eq!(loaded.records[0].id, "17");
    assert_eq!(loaded.records[0].image, tmp.path().join("imgs/x.jpg"));
    assert_eq!(loaded.records[1].reference.as_deref(), Some("Because."));
    assert!(loaded.records[0].world.is_none());
}

#[test]
fn image_paths_may_not_leave_the_data_root() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(data.join("imgs")).unwrap();
    std::fs::write(data.join("imgs/in.png"), b"png").unwrap();
    std::fs::write(tmp.path().join("secret.png"), b"png").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(tmp.path().join("secret.png"), data.join("imgs/link.png")).unwrap();
    let file = data.join("prompts.jsonl");
    let line = |image: &str| format!("{{\"id\": 1, \"image\": {image:?}, \"question\": \"q\"}}\n");
    let secret = tmp.path().join("secret.png").display().to_string();
    let mut escapes = vec!["../secret.png", "imgs/../../secret.png", secret.as_str()];
    if cfg!(unix) {
        escapes.push("imgs/link.png"); // a link inside the root pointing out of it
    }
    for escape in escapes {
        std::fs::write(&file, line(escape)).unwrap();
        let error = load_prompts(&file, LoadOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("prompts.jsonl:1: field `image`: image path")
                && error.contains("leaves the data root")
                && error.contains("allow_images_outside_root"),
            "{escape}: {error}"
        );
        // Allowed when the config says so.
        let allowed = LoadOptions {
            allow_images_outside_root: true,
            ..LoadOptions::default()
        };
        assert_eq!(load_prompts(&file, allowed).unwrap().records.len(), 1);
    }
    // Inside the root, `..` that stays inside is fine; a wider root admits the parent folder.
    std::fs::write(&file, line("imgs/../imgs/in.png")).unwrap();
    assert_eq!(
        load_prompts(&file, LoadOptions::default())
            .unwrap()
            .records
            .len(),
        1
    );
    std::fs::write(&file, line("../secret.png")).unwrap();
    let wider = LoadOptions {
        image_root: Some(tmp.path().to_path_buf()),
        ..LoadOptions::default()
    };
    assert_eq!(load_prompts(&file, wider).unwrap().records.len(), 1);
    // Escaping paths are refused before the existence check: a missing file outside says so too.
    std::fs::write(&file, line("../../nowhere/x.png")).unwrap();
    let error = load_prompts(&file, LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(error.contains("leaves the data root"), "{error}");
}
