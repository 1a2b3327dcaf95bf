//! What packs need to write modified backward passes: the rule and composite types
//! (defined with the graph, in [`crate::model::rule`]), the two autograd building
//! blocks ([`crate::autograd`]) and named composite presets as registry items
//! ([`CompositeEntry`]). Core defines no rule: LRP and DeepLIFT live in
//! `lumen-std-relevance`, Guided Backprop and Deconvnet in `lumen-std-propagation`.

pub use crate::autograd::{grad_hook, surrogate};
pub use crate::model::rule::{Composite, Matcher, NodeInfo, Rule, RuleCtx, RuleMap};

use crate::{Error, Result};
use std::any::Any;

/// A named composite preset that a pack provides.
///
/// A preset is a recipe; the numbers its rules take (LRP's ε, DeepLIFT's threshold)
/// come from the method that applies it, as a typed settings value of the type the
/// preset's family defines (see [`settings`]). Presets without numbers ignore it.
pub struct CompositeEntry {
    pub name: &'static str,
    pub pack: &'static str,
    pub summary: &'static str,
    pub build: fn(&dyn Any) -> Result<RuleMap>,
}
crate::entry_kind!(CompositeEntry, "composite", 60);

/// The settings of type `T` that composite `name` was given; `T::default()` when it
/// was given `()` (no settings), an error for any other type.
pub fn settings<T: Any + Clone + Default>(name: &str, s: &dyn Any) -> Result<T> {
    if let Some(t) = s.downcast_ref::<T>() {
        return Ok(t.clone());
    }
    if s.is::<()>() {
        return Ok(T::default());
    }
    Err(Error::msg(format!("composite '{name}' takes settings of type {}", std::any::type_name::<T>())))
}

/// Declares a composite preset in the calling pack:
/// `submit_composite!(NAME, SUMMARY, |settings| ...)`.
#[macro_export]
macro_rules! submit_composite {
    ($name:expr, $summary:expr, $build:expr $(,)?) => {
        $crate::submit_entry!($crate::rules::CompositeEntry { name: $name, summary: $summary, build: $build });
    };
}
