//! How packs present their methods, so the host names no pack: picture renderers
//! for explanations that carry more than a heatmap (CLEAR's class colours), and the
//! gallery presets of slow or model-specific methods (lighter settings, the model to
//! show them on, their column).
//!
//! Both are registered with one line from the owning pack
//! ([`submit_renderer!`](crate::submit_renderer), [`submit_gallery_preset!`](crate::submit_gallery_preset))
//! and collected through `inventory`, like methods; a plugin pack's items are seen
//! once the pack is loaded into the shared runtime.

use crate::candle::Tensor;
use crate::explanation::Explanation;
use crate::guard::guard;
use crate::registry::Registry;
use crate::Result;
use image::RgbImage;

/// What a renderer may use besides the explanation.
pub struct RenderRequest<'a> {
    /// Which example of the batch to draw.
    pub example: usize,
    /// The model's class labels.
    pub labels: &'a [String],
    /// The example's input `[C, H, W]` (for overlays).
    pub input: Option<&'a Tensor>,
    /// Range of the raw input.
    pub input_range: (f32, f32),
}

/// A pack's own picture of an explanation, written beside the ordinary heatmap.
pub struct RendererEntry {
    pub name: &'static str,
    pub pack: &'static str,
    /// What the picture shows (printed after the file name).
    pub summary: &'static str,
    /// The picture's file is `{stem}_{suffix}.png`.
    pub suffix: &'static str,
    /// Whether the explanation carries what this renderer draws.
    pub applies: fn(&Explanation) -> bool,
    pub render: fn(&Explanation, &RenderRequest) -> Result<RgbImage>,
}

crate::entry_kind!(RendererEntry, "renderer", 70);

/// How the gallery shows one method.
pub struct GalleryPreset {
    pub method: &'static str,
    pub pack: &'static str,
    /// The model to show the method on when it does not apply to the gallery's model.
    pub model: Option<&'static str>,
    /// Lighter settings than the defaults (`NAME`, `VALUE`), applied where the method
    /// has the parameter, unless the gallery runs with `--full`.
    pub light: &'static [(&'static str, &'static str)],
    /// Column position: lower ranks first; methods without a preset come last, by name.
    pub rank: u32,
}

// A preset is named by its method (one preset per method across packs).
impl crate::entry::Entry for GalleryPreset {
    const KIND: &'static str = "gallery preset";
    fn name(&self) -> &'static str {
        self.method
    }
    fn pack(&self) -> &'static str {
        self.pack
    }
    fn summary(&self) -> &'static str {
        "how the gallery shows this method"
    }
}
inventory::collect!(GalleryPreset);
inventory::submit! {
    crate::entry::Kind { name: "gallery preset", rank: 80, collect: crate::entry::collect::<GalleryPreset> }
}

// Both kinds go through the registry, so only the items of packs it accepted are seen
// (a refused plugin's code never runs), and calls into a renderer are guarded.

/// Every registered renderer, by name.
pub fn renderers(reg: &Registry) -> Vec<&'static RendererEntry> {
    reg.entries::<RendererEntry>().map(|(e, _)| e).collect()
}

/// The pictures of every renderer that applies to `e`, as (renderer, image). A
/// renderer's panic or error is an error naming its pack.
pub fn render_all(
    reg: &Registry,
    e: &Explanation,
    req: &RenderRequest,
) -> Result<Vec<(&'static RendererEntry, RgbImage)>> {
    let mut out = vec![];
    for (r, origin) in reg.entries::<RendererEntry>() {
        if guard(&origin.pack, || Ok((r.applies)(e)))? {
            out.push((r, guard(&origin.pack, || (r.render)(e, req))?));
        }
    }
    Ok(out)
}

/// The preset of `method`, if its pack registered one.
pub fn gallery_preset(reg: &Registry, method: &str) -> Option<&'static GalleryPreset> {
    reg.entry::<GalleryPreset>(method).ok().map(|(p, _)| p)
}

/// The light settings of `method` that it has a parameter for, as `NAME=VALUE`.
pub fn light_settings(reg: &Registry, method: &str, has_param: impl Fn(&str) -> bool) -> Vec<String> {
    gallery_preset(reg, method)
        .map(|p| p.light.iter().filter(|(k, _)| has_param(k)).map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default()
}

/// Registers a picture renderer from the pack that owns the tensors it draws.
#[macro_export]
macro_rules! submit_renderer {
    ($name:expr, $summary:expr, $suffix:expr, $applies:expr, $render:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::present::RendererEntry {
                name: $name,
                pack: env!("CARGO_PKG_NAME"),
                summary: $summary,
                suffix: $suffix,
                applies: $applies,
                render: $render,
            }
        }
    };
}

/// Registers how the gallery shows a method: its column rank, the model to show it
/// on when the gallery's model does not fit (or `None`), and its light settings.
#[macro_export]
macro_rules! submit_gallery_preset {
    ($method:expr, $rank:expr, $model:expr, $light:expr $(,)?) => {
        $crate::inventory::submit! {
            $crate::present::GalleryPreset {
                method: $method,
                pack: env!("CARGO_PKG_NAME"),
                model: $model,
                light: $light,
                rank: $rank,
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::Target;

    crate::submit_gallery_preset!("present-test-method", 7, Some("present-test-model"), &[("steps", "3"), ("absent", "1")]);

    #[test]
    fn presets_are_found_and_filtered_by_the_method_parameters() {
        let reg = Registry::from_inventory().unwrap();
        let p = gallery_preset(&reg, "present-test-method").expect("registered above");
        assert_eq!((p.rank, p.model, p.pack), (7, Some("present-test-model"), "lumen-core"));
        assert_eq!(light_settings(&reg, "present-test-method", |k| k == "steps"), vec!["steps=3".to_string()]);
        assert!(light_settings(&reg, "no-such-method", |_| true).is_empty());
        // Not in a registry that did not accept the pack.
        assert!(gallery_preset(&Registry::new(), "present-test-method").is_none());
    }

    crate::submit_renderer!(
        "present-test-renderer",
        "a test picture",
        "test",
        |e: &Explanation| e.tensors.contains_key("present_test"),
        |e: &Explanation, _: &RenderRequest| {
            if e.tensors.contains_key("present_panic") {
                panic!("renderer bug");
            }
            Ok(RgbImage::new(1, 1))
        },
    );

    #[test]
    fn renderers_apply_by_what_the_explanation_carries_and_are_guarded() {
        let reg = Registry::from_inventory().unwrap();
        assert!(renderers(&reg).iter().any(|r| r.name == "present-test-renderer"));
        let t = Tensor::zeros((1, 1), crate::candle::DType::F32, &crate::candle::Device::Cpu).unwrap();
        let req = RenderRequest { example: 0, labels: &[], input: None, input_range: (0.0, 1.0) };
        let e = Explanation::new("m", t.clone(), Target::Classes(vec![0]));
        assert!(render_all(&reg, &e, &req).unwrap().iter().all(|(r, _)| r.name != "present-test-renderer"));
        let e = e.with_tensor("present_test", t.clone());
        let pics = render_all(&reg, &e, &req).unwrap();
        let (_, img) = pics.iter().find(|(r, _)| r.name == "present-test-renderer").expect("applies");
        assert_eq!(img.dimensions(), (1, 1));
        let err = match render_all(&reg, &e.with_tensor("present_panic", t), &req) {
            Ok(_) => panic!("a panicking renderer must be an error"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("lumen-core") && err.contains("renderer bug"), "{err}");
    }
}
