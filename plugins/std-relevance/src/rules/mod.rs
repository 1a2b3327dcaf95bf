//! The rules of this pack's methods, moved here from lumen-core (core knows no
//! rule): DeepLIFT's multipliers and LRP's relevance rules, with their composite
//! presets, which register as this pack's items.

pub mod deeplift;
pub mod fused;
pub mod lrp;
