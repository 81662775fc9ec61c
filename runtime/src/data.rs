//! `grlhf data`: writes the embedded world to disk and shows records of any prompt, preference
//! or warm-start file with the oracle's score of each response.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use grlhf_tasks::export::{export_world, Manifest};
use grlhf_tasks::jsonl::{load_pairs, load_prompts, load_sft, BadLine, LoadOptions};
use grlhf_tasks::oracle::{score, OracleScore};
use grlhf_tasks::parquet::{load_pairs_parquet, FieldNames};
use grlhf_tasks::records::WorldKey;
use grlhf_tasks::world::{Split, SplitSizes, WorldConfig};
use indicatif::{ProgressBar, ProgressStyle};

/// Generates the world with `seed` and `n` training prompts/pairs into `out`.
pub fn generate(out: &Path, seed: u64, n: usize, overwrite: bool) -> Result<Manifest> {
    if n == 0 {
        bail!("--n must be at least 1");
    }
    let config = WorldConfig {
        seed,
        sizes: SplitSizes::scaled(n),
        ..WorldConfig::default()
    };
    let total: usize = config.splits().iter().map(|&s| config.size_of(s)).sum();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} records ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut done_before = 0usize;
    let mut current: Option<Split> = None;
    let mut last_total = 0usize;
    let started = Instant::now();
    let manifest = export_world(&config, out, overwrite, &mut |split, done, split_total| {
        if current != Some(split) {
            done_before += last_total;
            current = Some(split);
            last_total = split_total;
            bar.set_message(split.name());
        }
        bar.set_position((done_before + done) as u64);
    })
    .with_context(|| format!("generating the world into {}", out.display()))?;
    bar.finish_and_clear();
    let mut summary = String::new();
    for file in &manifest.files {
        writeln!(summary, "  {:<24} {:>7} records", file.file, file.records)?;
    }
    println!(
        "wrote the embedded world (seed {seed}) to {} in {:.1} s:\n{summary}  tokenizer.json, manifest.json, images/",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(manifest)
}

/// The kind of records a JSONL file holds, from the fields of its first record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Prompts,
    Pairs,
    Sft,
}

fn file_kind(path: &Path) -> Result<FileKind> {
    if path.extension().is_some_and(|e| e == "parquet") {
        return Ok(FileKind::Pairs); // a preference dataset, in either published layout
    }
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not JSON", path.display(), index + 1))?;
        return Ok(if value.get("response_1").is_some() {
            FileKind::Pairs
        } else if value.get("answer").is_some() {
            FileKind::Sft
        } else {
            FileKind::Prompts
        });
    }
    bail!("{}: no records", path.display())
}

fn oracle_note(world: Option<&WorldKey>, response: &str) -> String {
    match world {
        Some(w) => {
            let s: OracleScore = score(&w.scene, &w.task, response);
            let findings: Vec<&str> = s.findings.iter().map(|f| f.phrase()).collect();
            format!("oracle {:>5.2}  ({})", s.total, findings.join(", "))
        }
        None => "oracle n/a (no `world` key: not a generated record)".to_string(),
    }
}

/// Prints the first `k` records of `path`.
pub fn show(path: &Path, k: usize, skip_bad: bool) -> Result<()> {
    let options = LoadOptions {
        skip_bad,
        ..LoadOptions::default()
    };
    let mut out = String::new();
    let skipped: Vec<BadLine> = match file_kind(path)? {
        FileKind::Prompts => {
            let loaded = load_prompts(path, options)?;
            for r in loaded.records.iter().take(k) {
                let family = r.family.map(|f| f.name()).unwrap_or("-");
                writeln!(out, "{}  [{family}]  {}", r.id, r.image.display())?;
                writeln!(out, "  question:   {}", r.question)?;
                if let Some(reference) = &r.reference {
                    writeln!(out, "  reference:  {reference}")?;
                    writeln!(
                        out,
                        "              {}",
                        oracle_note(r.world.as_ref(), reference)
                    )?;
                }
            }
            writeln!(
                out,
                "{} of {} records shown",
                k.min(loaded.records.len()),
                loaded.records.len()
            )?;
            loaded.skipped
        }
        FileKind::Sft => {
            let loaded = load_sft(path, options)?;
            for r in loaded.records.iter().take(k) {
                let family = r.family.map(|f| f.name()).unwrap_or("-");
                writeln!(out, "{}  [{family}]  {}", r.id, r.image.display())?;
                writeln!(out, "  question:   {}", r.question)?;
                writeln!(out, "  answer:     {}", r.answer)?;
                writeln!(
                    out,
                    "              {}",
                    oracle_note(r.world.as_ref(), &r.answer)
                )?;
            }
            writeln!(
                out,
                "{} of {} records shown",
                k.min(loaded.records.len()),
                loaded.records.len()
            )?;
            loaded.skipped
        }
        FileKind::Pairs => {
            let loaded = if path.extension().is_some_and(|e| e == "parquet") {
                // Embedded images are written where `show` can point at them.
                let images = std::env::temp_dir().join("grlhf-data-show");
                let fields = FieldNames::default();
                load_pairs_parquet(path, &fields, &options, &images)?
            } else {
                load_pairs(path, options)?
            };
            for r in loaded.records.iter().take(k) {
                let family = r.family.map(|f| f.name()).unwrap_or("-");
                let id = r.id.as_deref().unwrap_or("-");
                writeln!(out, "{id}  [{family}]  {}", r.image.display())?;
                writeln!(out, "  question:   {}", r.question)?;
                for (n, response) in [(1, &r.response_1), (2, &r.response_2)] {
                    writeln!(out, "  response {n}: {response}")?;
                    writeln!(
                        out,
                        "              {}",
                        oracle_note(r.world.as_ref(), response)
                    )?;
                }
                let oracle = r
                    .world
                    .as_ref()
                    .and_then(|w| w.oracle_preferred)
                    .map(|p| format!(" (oracle: {p})"))
                    .unwrap_or_default();
                writeln!(out, "  preferred:  {}{oracle}", r.preferred)?;
                if let Some(judgment) = &r.judgment {
                    writeln!(
                        out,
                        "  judgment:   {}",
                        judgment.replace('\n', "\n              ")
                    )?;
                }
            }
            writeln!(
                out,
                "{} of {} records shown",
                k.min(loaded.records.len()),
                loaded.records.len()
            )?;
            loaded.skipped
        }
    };
    print!("{out}");
    if !skipped.is_empty() {
        eprintln!("skipped {} bad lines:", skipped.len());
        for bad in &skipped {
            eprintln!("  {bad}");
        }
    }
    Ok(())
}
