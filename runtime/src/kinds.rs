//! The kinds a binary knows, per role, as `grlhf kinds` lists them: the registry's kinds with
//! the runtime's own prompt sources (`world`, `jsonl`) beside them.

use grlhf_actors::registry::{KindInfo, Registry, Role};

/// The `[data]` fields the `world` source reads (see [`crate::run_config::DataConfig`]).
#[derive(serde::Deserialize)]
#[allow(dead_code)] // only traced, for the listing
struct WorldFields {
    world_size: usize,
    world_seed: Option<u64>,
}

/// The `[data]` fields the `parquet` source reads.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // only traced, for the listing
struct ParquetFields {
    path: std::path::PathBuf,
    skip_bad: bool,
    fields: Option<grlhf_tasks::parquet::FieldNames>,
}

/// The `[data]` fields the `jsonl` source reads.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // only traced, for the listing
struct JsonlFields {
    path: std::path::PathBuf,
    skip_bad: bool,
    image_root: Option<std::path::PathBuf>,
    allow_images_outside_root: bool,
}

/// Every kind of `registry`, with the runtime's own prompt sources (`world`, `jsonl`) listed
/// beside the registered ones.
pub fn all_kinds(registry: &mut Registry) -> Vec<KindInfo> {
    registry.describe::<WorldFields>(
        Role::PromptSource,
        "world",
        "the embedded world, generated in memory (fields in [data] itself)",
    );
    registry.describe::<JsonlFields>(
        Role::PromptSource,
        "jsonl",
        "a JSONL prompt or preference-pair file (fields in [data] itself)",
    );
    registry.describe::<ParquetFields>(
        Role::PromptSource,
        "parquet",
        "a Hugging Face preference dataset (align-anything or RLAIF-V layout; [data.fields] renames columns)",
    );
    registry.describe_all()
}

/// The listing as text: one block per role, one line per kind, one indented line per field.
pub fn render(kinds: &[KindInfo]) -> String {
    let mut out = String::new();
    for role in Role::ALL {
        out.push_str(&format!("{} ({}):\n", role.name(), role.config_key()));
        for info in kinds.iter().filter(|k| k.role == role) {
            out.push_str(&format!("  {:<20} {}\n", info.kind, info.about));
            for field in &info.fields {
                out.push_str(&format!("      {:<28} {}\n", field.name, field.format));
            }
        }
    }
    out
}
