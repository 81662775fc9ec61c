//! `family_curriculum`: a generated prompt source. Prompts of the embedded world, family by
//! family in the order given, issued in that order every epoch (the prompt source still admits
//! them under the staleness rule and checkpoints its position).
//!
//! ```toml
//! [data]
//! source = "family_curriculum"
//!
//! [data.settings]
//! families = ["existence", "counting", "attribute"]
//! per_family = 16
//! ```

use grlhf_actors::prompt_source::{PromptOrder, PromptSet};
use grlhf_actors::registry::{PromptSourceContext, Registry};
use grlhf_tasks::task::Family;
use grlhf_tasks::world::{Split, SplitRecords, SplitSizes, WorldConfig};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CurriculumSettings {
    /// World families (`counting`, `attribute`, `spatial`, `existence`, `description`,
    /// `instruction`, `safety`), easiest first.
    pub families: Vec<String>,
    /// Prompts of each family.
    pub per_family: usize,
    /// The world's seed (default: the run's).
    #[serde(default)]
    pub world_seed: Option<u64>,
}

/// The curriculum's prompts: `per_family` training prompts of each family, in order.
pub fn curriculum(
    settings: CurriculumSettings,
    context: PromptSourceContext,
) -> Result<PromptSet, String> {
    if settings.per_family == 0 {
        return Err("per_family: must be at least 1".into());
    }
    let families = settings
        .families
        .iter()
        .map(|name| {
            Family::ALL
                .into_iter()
                .find(|f| f.name() == name)
                .ok_or_else(|| format!("families: `{name}` is not a world family"))
        })
        .collect::<Result<Vec<_>, String>>()?;
    if families.is_empty() {
        return Err("families: name at least one family".into());
    }
    // Families are drawn about evenly, so 7 × per_family × 2 prompts hold enough of each.
    let world = WorldConfig {
        seed: settings.world_seed.unwrap_or(context.seed),
        sizes: SplitSizes {
            train_prompts: settings.per_family * Family::ALL.len() * 2 + 64,
            ..SplitSizes::scaled(28)
        },
        ..WorldConfig::default()
    };
    let Ok(SplitRecords::Prompts(records)) = world.generate(Split::PromptsTrain) else {
        return Err("the world generated no training prompts".into());
    };
    let mut prompts = Vec::new();
    for family in families {
        let of_family: Vec<_> = records
            .iter()
            .filter(|r| r.world.as_ref().is_some_and(|w| w.task.family() == family))
            .take(settings.per_family)
            .cloned()
            .collect();
        if of_family.len() < settings.per_family {
            return Err(format!(
                "per_family: the world gave only {} `{}` prompts",
                of_family.len(),
                family.name()
            ));
        }
        for record in of_family {
            prompts.push(
                grlhf::run::policy_spec(record, &context.system_prompt)
                    .map_err(|e| e.to_string())?,
            );
        }
    }
    Ok(PromptSet {
        prompts,
        order: PromptOrder::AsGiven,
    })
}

pub fn register(registry: &mut Registry) {
    registry.register_prompt_source(
        "family_curriculum",
        "world prompts family by family, in the order given (a curriculum)",
        curriculum,
    );
}
