//! Hugging Face preference datasets as published (parquet, written by pyarrow in
//! `scripts/make_fixtures.py`): both known layouts, renamed columns, embedded PNG and JPEG
//! bytes, and a bad row named by file, row and field.

use std::path::{Path, PathBuf};

use grlhf_tasks::jsonl::{DataError, LoadOptions};
use grlhf_tasks::parquet::{load_pairs_parquet, load_prompts_parquet, FieldNames};

fn fixtures() -> PathBuf {
    let root = std::env::var_os("GRLHF_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fixtures"));
    let dir = root.join("parquet");
    assert!(
        dir.exists(),
        "{} missing: run `make fixtures`",
        dir.display()
    );
    dir
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

#[test]
fn both_published_layouts_and_renamed_columns_load_with_their_images() {
    let images = tempfile::tempdir().unwrap();
    let renamed = FieldNames {
        question: Some("prompt".into()),
        image: Some("img".into()),
        chosen: Some("good".into()),
        rejected: Some("bad".into()),
        ..FieldNames::default()
    };
    for (file, fields) in [
        ("align_anything.parquet", FieldNames::default()),
        ("rlaif_v.parquet", FieldNames::default()),
        ("renamed.parquet", renamed),
    ] {
        let path = fixtures().join(file);
        let loaded =
            load_pairs_parquet(&path, &fields, &LoadOptions::default(), images.path()).unwrap();
        let want = expected()[file].clone();
        let want = want.as_array().unwrap();
        assert_eq!(loaded.records.len(), want.len(), "{file}");
        assert!(loaded.skipped.is_empty());
        for (record, want) in loaded.records.iter().zip(want) {
            assert_eq!(record.question, want["question"], "{file}");
            assert_eq!(record.response_1, want["response_1"], "{file}");
            assert_eq!(record.response_2, want["response_2"], "{file}");
            assert_eq!(record.preferred as u64, want["preferred"].as_u64().unwrap());
            // The embedded bytes became a file the image reader opens, at the stored size.
            assert!(record.image.starts_with(images.path()));
            let decoded = image::open(&record.image).unwrap();
            let size = [decoded.width() as u64, decoded.height() as u64];
            assert_eq!(serde_json::json!(size), want["size"], "{file}");
        }
        // As prompts: the question, the image and the preferred response as the reference.
        let prompts =
            load_prompts_parquet(&path, &fields, &LoadOptions::default(), images.path()).unwrap();
        for (prompt, pair) in prompts.records.iter().zip(&loaded.records) {
            let preferred = if pair.preferred == 1 {
                &pair.response_1
            } else {
                &pair.response_2
            };
            assert_eq!(prompt.reference.as_ref(), Some(preferred));
            assert_eq!(prompt.question, pair.question);
        }
    }
}

#[test]
fn a_bad_row_is_named_by_file_row_and_field_and_can_be_skipped() {
    let images = tempfile::tempdir().unwrap();
    let path = fixtures().join("bad_row.parquet");
    let fields = FieldNames::default();
    let err = load_pairs_parquet(&path, &fields, &LoadOptions::default(), images.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad_row.parquet:2: field `overall_response`: expected 1 or 2, found 3"),
        "{err}"
    );
    let options = LoadOptions {
        skip_bad: true,
        ..LoadOptions::default()
    };
    let loaded = load_pairs_parquet(&path, &fields, &options, images.path()).unwrap();
    assert_eq!(loaded.records.len(), 2);
    assert_eq!(loaded.skipped.len(), 1);
    assert_eq!(loaded.skipped[0].line, 2);
    // A column the dataset does not have is named; a file that is not parquet is refused.
    let missing = FieldNames {
        question: Some("prompt".into()),
        ..FieldNames::default()
    };
    let err = load_pairs_parquet(&path, &missing, &LoadOptions::default(), images.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains(":1: field `prompt`: missing"), "{err}");
    let not_parquet = images.path().join("x.parquet");
    std::fs::write(&not_parquet, b"{\"question\": 1}\n").unwrap();
    let err = load_pairs_parquet(
        &not_parquet,
        &fields,
        &LoadOptions::default(),
        images.path(),
    )
    .unwrap_err();
    assert!(matches!(err, DataError::Line(_)), "{err}");
    assert!(
        err.to_string().contains("not a readable parquet file"),
        "{err}"
    );
}
