//! Looking up composite presets by name.

use super::{CompositeEntry, RuleMap};
use crate::{Error, Result};

/// All registered composite presets (core's and those of linked packs).
pub fn all() -> Vec<&'static CompositeEntry> {
    let mut v: Vec<_> = inventory::iter::<CompositeEntry>.into_iter().collect();
    v.sort_by_key(|e| e.name);
    v
}

/// Builds the preset called `name`.
pub fn build(name: &str) -> Result<RuleMap> {
    all().into_iter().find(|e| e.name == name).map(|e| (e.build)()).ok_or_else(|| Error::Unknown {
        kind: "composite",
        name: name.to_string(),
        known: all().iter().map(|e| e.name.to_string()).collect(),
    })
}
