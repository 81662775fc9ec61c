//! An example of a user's crate that plugs its own kinds into grlhf — one per role — without
//! changing grlhf:
//!
//! | role | kind | module |
//! |---|---|---|
//! | workflow | `clarify`: the policy may ask one clarifying question, the environment answers in a second user turn, then the policy answers | [`clarify`] |
//! | prompt source | `family_curriculum`: world prompts, family by family, in the order given | [`curriculum`] |
//! | loss | `dr_grpo` (Dr. GRPO) and `rloo` (REINFORCE leave-one-out) | [`dr_grpo`], [`rloo`] |
//! | metric | `family_exact_match`: exact match with the reference, per family | [`exact_match`] |
//!
//! [`register`] adds them to a registry; `src/main.rs` is a complete `grlhf` command line with
//! them registered (`grlhf-plugins run examples/plugins/plugins.toml`). docs/plugins.md walks
//! through writing each kind.

pub mod clarify;
pub mod curriculum;
pub mod dr_grpo;
pub mod exact_match;
pub mod rloo;

use grlhf_actors::registry::Registry;

/// Registers every kind of this crate.
pub fn register(registry: &mut Registry) {
    clarify::register(registry);
    curriculum::register(registry);
    dr_grpo::register(registry);
    rloo::register(registry);
    exact_match::register(registry);
}
