//! The command line's closed choices that the library does not own as an enum of its own
//! (`--dtype`, `--preset`, `--split` / `--eval-split`), as clap `ValueEnum`s: `--help` lists
//! them and clap rejects anything else. Choices the library owns (`--target`, `--stage`,
//! `--variants`) derive `ValueEnum` on the library's enum.

use clap::ValueEnum;
use grlhf_tasks::world::HeldOut;
use tch::Kind;

/// A floating dtype: the short names, and the long ones `parse_dtype` also accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Dtype {
    #[value(name = "f32", alias = "float32", alias = "float")]
    F32,
    #[value(name = "bf16", alias = "bfloat16")]
    Bf16,
    #[value(name = "f16", alias = "float16", alias = "half")]
    F16,
}

impl Dtype {
    pub fn kind(self) -> Kind {
        match self {
            Dtype::F32 => Kind::Float,
            Dtype::Bf16 => Kind::BFloat16,
            Dtype::F16 => Kind::Half,
        }
    }
}

/// A size preset of `crate::model_presets` (the names of `PRESETS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    #[value(name = "tiny")]
    Tiny,
    #[value(name = "small")]
    Small,
    #[value(name = "100m")]
    M100,
    #[value(name = "0.5b")]
    B05,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Tiny => "tiny",
            Preset::Small => "small",
            Preset::M100 => "100m",
            Preset::B05 => "0.5b",
        }
    }
}

/// A held-out set of the world ([`HeldOut`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HeldOutSet {
    Validation,
    Evaluation,
}

impl From<HeldOutSet> for HeldOut {
    fn from(set: HeldOutSet) -> HeldOut {
        match set {
            HeldOutSet::Validation => HeldOut::Validation,
            HeldOutSet::Evaluation => HeldOut::Evaluation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every spelling clap accepts means what the library's parser makes of it.
    #[test]
    fn dtype_spellings_match_parse_dtype() {
        for dtype in Dtype::value_variants() {
            let value = dtype.to_possible_value().unwrap();
            for name in value.get_name_and_aliases() {
                let parsed = grlhf_models::device::parse_dtype(name).unwrap();
                assert_eq!(parsed, dtype.kind(), "{name}");
            }
        }
    }

    #[test]
    fn presets_are_the_librarys() {
        let names: Vec<&str> = Preset::value_variants()
            .iter()
            .map(|p| {
                assert_eq!(p.to_possible_value().unwrap().get_name(), p.name());
                p.name()
            })
            .collect();
        let library: Vec<&str> = crate::model_presets::PRESETS.iter().map(|p| p.0).collect();
        assert_eq!(names, library);
        for name in names {
            crate::model_presets::preset(name).unwrap();
        }
    }

    #[test]
    fn held_out_sets_are_spelled_like_held_out() {
        for set in HeldOutSet::value_variants() {
            let name = set.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(HeldOut::from(*set).to_string(), name);
        }
    }
}
