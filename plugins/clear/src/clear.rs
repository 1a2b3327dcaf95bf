//! The `clear` method: attentive response maps R(x|c) for every class kernel, the
//! dominant class map Ĉ(x) = argmax_c R(x|c) (eq. 4), the dominant response map
//! D(x) = R(x|Ĉ(x)) (eq. 5) and the HSV picture of the two (eq. 6).
//!
//! R(x|c) is Zeiler's deconvolution of the class-c kernel's activation map z_L^c: the
//! backward pass of the `deconvnet` rule preset (transposed convolutions, unpooling
//! through the forward switches, ReLU on the backward signal), seeded at the tapped
//! class layer with z_L^c itself (eq. 3) and summed over input channels.
//! `activation=positive` seeds with max(z_L^c, 0) instead (see [`Seed`]).

use crate::render;
use lumen_core::candle::{DType, Tensor, Var};
use lumen_core::method::{chunks, prepare};
use lumen_core::model::{ForwardOptions, LayerKind};
use lumen_core::{Attributor, Choice, Classifier, Config, Error, Explanation, Method, MethodProps, Result, Target};

/// What a model must look like for CLEAR; quoted in every refusal.
pub const NEEDS: &str = "CLEAR needs an all-convolutional classifier whose last conv layer has one kernel per \
class (out_channels = number of classes) and feeds a global average pooling that gives the logits";

/// Configuration of [`Clear`].
///
/// `top_k`: models with more classes are explained over the `top_k` classes with the
/// largest logits only (the paper's §5 suggestion).
#[derive(Debug, Clone, Config)]
pub struct ClearConfig {
    /// explain only the k classes with the largest logits (all when the model has ≤ k)
    #[param(positive, max = 100_000)]
    pub top_k: usize,
    /// back-projections (example × class) per backward pass
    #[param(positive, max = lumen_core::params::MAX_BATCH_SIZE)]
    pub batch_size: usize,
    /// seed of the back-projection: signed = z_L^c as it is (eq. 3), positive = max(z_L^c, 0)
    #[param(name = "activation")]
    pub seed: Seed,
}

/// What the back-projection of a class kernel starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Choice)]
pub enum Seed {
    /// z_L^c as it is, negative responses included (eq. 3 read literally).
    #[default]
    Signed,
    /// max(z_L^c, 0): only where the kernel responds, as Zeiler's deconvnet does with
    /// post-ReLU activations. Class kernels without a ReLU are strongly negative for
    /// the classes an image is not, and a signed seed back-projects that "evidence
    /// against" through the transposed 1×1 conv with the weights' signs flipped.
    Positive,
}

impl Default for ClearConfig {
    fn default() -> Self {
        ClearConfig { top_k: 10, batch_size: 64, seed: Seed::Signed }
    }
}

/// The class layer CLEAR starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassLayer {
    /// Name of the conv layer with one kernel per class.
    pub name: String,
    /// Number of classes (= its output channels).
    pub classes: usize,
}

/// Finds the per-class conv layer that feeds the final global average pooling, or
/// says why the model does not have one.
pub fn class_layer(model: &dyn Classifier) -> Result<ClassLayer> {
    let name = &model.info().name;
    let refuse = |why: String| Error::unsupported("clear", format!("{NEEDS}; model '{name}' {why}"));
    let net = model
        .network()
        .ok_or_else(|| refuse("is not built from the explainable layer vocabulary".into()))?;
    let nodes = net.nodes();
    let gap = nodes
        .iter()
        .rposition(|n| n.kind == LayerKind::GlobalAvgPool)
        .ok_or_else(|| refuse("has no global average pooling layer".into()))?;
    if let Some(n) = nodes[gap + 1..].iter().find(|n| !matches!(n.kind, LayerKind::Flatten | LayerKind::Softmax)) {
        return Err(refuse(format!(
            "has layer '{}' ({}) after its global average pooling '{}'",
            n.name,
            n.kind.type_name(),
            nodes[gap].name
        )));
    }
    let src = match nodes[gap].inputs.as_slice() {
        [i] if *i > 0 => *i - 1,
        _ => return Err(refuse(format!("feeds its input straight into '{}'", nodes[gap].name))),
    };
    let conv = &nodes[src];
    let k = model.info().num_classes();
    match conv.kind {
        LayerKind::Conv1d { out_channels, .. } | LayerKind::Conv2d { out_channels, .. } if out_channels == k => {
            Ok(ClassLayer { name: conv.name.clone(), classes: k })
        }
        LayerKind::Conv1d { out_channels, .. } | LayerKind::Conv2d { out_channels, .. } => Err(refuse(format!(
            "has conv layer '{}' with {out_channels} kernels before its global average pooling, but {k} classes",
            conv.name
        ))),
        ref other => Err(refuse(format!(
            "has layer '{}' ({}) before its global average pooling, not a conv layer",
            conv.name,
            other.type_name()
        ))),
    }
}

/// Back-projects class kernels to the input: for example `b` and every class in
/// `classes[b]` (the same number per example), the deconvolution of that kernel's
/// activation map, per input channel: `[B, k, C, ...spatial]`. Summing over dim 2
/// gives R(x|c).
///
/// The batch is expanded to one row per (example, class), each seeded with its own
/// channel, and processed `batch_size` rows at a time.
pub fn attentive_responses(
    model: &dyn Classifier,
    xs: &Tensor,
    classes: &[Vec<usize>],
    batch_size: usize,
    seed: Seed,
) -> Result<Tensor> {
    let layer = class_layer(model)?;
    model.info().check_input(xs)?;
    let b = xs.dim(0)?;
    if classes.len() != b {
        return Err(Error::BadTarget(format!("{} class lists for a batch of {b}", classes.len())));
    }
    let k = classes.first().map(|c| c.len()).unwrap_or(0);
    if k == 0 || classes.iter().any(|c| c.len() != k) {
        return Err(Error::BadTarget("every example needs the same, non-zero number of classes".into()));
    }
    if let Some(c) = classes.iter().flatten().find(|c| **c >= layer.classes) {
        return Err(Error::BadTarget(format!("class {c} is out of range for a model with {} classes", layer.classes)));
    }
    let rows: Vec<(u32, usize)> =
        classes.iter().enumerate().flat_map(|(i, cs)| cs.iter().map(move |c| (i as u32, *c))).collect();
    // Zeiler's deconvnet rules, from the pack that owns them (an explicit dependency).
    let composite = lumen_std_propagation::rules::deconvnet();
    let dev = xs.device();
    let mut parts = Vec::new();
    for r in chunks(rows.len(), batch_size) {
        let rows = &rows[r];
        let n = rows.len();
        let idx = Tensor::from_vec(rows.iter().map(|(i, _)| *i).collect::<Vec<_>>(), n, dev)?;
        let var = Var::from_tensor(&xs.index_select(&idx, 0)?.detach())?;
        let opts = ForwardOptions {
            composite: Some(&composite),
            stop_after: Some(layer.name.clone()),
            ..Default::default()
        };
        let z = model.forward_with(var.as_tensor(), &opts)?.output;
        if z.rank() < 3 || z.dim(1)? != layer.classes {
            return Err(Error::shape(
                format!("[batch, {}, ...] from class layer '{}'", layer.classes, layer.name),
                format!("{:?}", z.dims()),
            ));
        }
        // One-hot over channels, so each row back-projects only its own class kernel.
        let mut onehot = vec![0f32; n * layer.classes];
        for (j, (_, c)) in rows.iter().enumerate() {
            onehot[j * layer.classes + c] = 1.0;
        }
        let mut shape = vec![n, layer.classes];
        shape.resize(z.rank(), 1);
        let mask = Tensor::from_vec(onehot, shape, dev)?.to_dtype(z.dtype())?;
        // d(Σ z·seed)/dz = seed = z_L^c on channel c (eq. 3); the seed is detached.
        let act = match seed {
            Seed::Signed => z.detach(),
            Seed::Positive => z.detach().relu()?,
        };
        let seed = act.broadcast_mul(&mask)?;
        let grads = (&z * &seed)?.sum_all()?.backward()?;
        parts.push(lumen_core::method::grad_or_zeros(&grads, var.as_tensor())?);
    }
    let g = Tensor::cat(&parts, 0)?;
    let mut shape = vec![b, k];
    shape.extend_from_slice(&xs.dims()[1..]);
    Ok(g.reshape(shape)?)
}

/// The CLEAR method.
#[derive(Debug, Clone, Default)]
pub struct Clear {
    pub config: ClearConfig,
}

impl Clear {
    pub fn new(config: ClearConfig) -> Self {
        Clear { config }
    }
}

/// Indices of the `k` largest values, largest first (ties: lower index first).
fn top_k(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|a, b| v[*b].total_cmp(&v[*a]).then(a.cmp(b)));
    idx.truncate(k);
    idx
}

impl Method for Clear {
    const NAME: &'static str = "clear";
    const SUMMARY: &'static str =
        "CLEAR (Kumar et al.): per-class deconvnet back-projections of the class kernels, dominant class and response maps";
    type Config = ClearConfig;
    const PROPS: MethodProps = MethodProps { needs_rules: true, ..MethodProps::NONE };
    fn new(config: ClearConfig) -> Result<Self> {
        Ok(Clear { config })
    }
    fn config(&self) -> &ClearConfig {
        &self.config
    }

    /// Tensors of the explanation (B examples, k explained classes, spatial dims S):
    /// * `attribution` `[B, C, S]`: the back-projection of the *target* class kernel
    ///   per input channel; its channel sum is R(x|target);
    /// * `class_maps` `[B, k, S]`: R(x|c) for the explained classes, listed in `classes`
    ///   `[B, k]` (all classes in index order when the model has ≤ top_k, else the
    ///   top-k by logit, largest first);
    /// * `class_map` `[B, S]`: Ĉ(x) as class indices; `level` `[B, S]`: D(x), raw;
    /// * `clear_rgb` `[B, 3, S]` in [0, 1]: H = F(Ĉ) (the class's position in `classes`
    ///   spread over the hue circle), S = 1, V = max(D, 0) / max D of the example;
    /// * `binary_rgb` `[B, 3, S]`: the target kernel's response on a hot scale where it
    ///   exceeds the strongest other kernel, that other response in green elsewhere;
    /// * `red_blue` `[B, 3, S]`: red where Ĉ is the target, blue where another class
    ///   dominates, brightness V.
    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let layer = class_layer(model)?;
        if let Target::Hidden { .. } = target {
            return Err(Error::BadTarget("clear explains classes, not hidden units".into()));
        }
        let target = prepare(model, inputs, target)?;
        let tclasses: Vec<usize> = target
            .classes()
            .ok_or_else(|| Error::BadTarget("clear explains class targets".into()))?
            .to_vec();
        let b = inputs.dim(0)?;
        let kk = layer.classes;
        let k = self.config.top_k.min(kk);
        let slots: Vec<Vec<usize>> = if k == kk {
            vec![(0..kk).collect(); b]
        } else {
            let logits = model.forward(inputs)?.to_dtype(DType::F32)?.to_vec2::<f32>()?;
            logits.iter().map(|l| top_k(l, k)).collect()
        };
        let per_channel = attentive_responses(model, inputs, &slots, self.config.batch_size, self.config.seed)?; // [B, k, C, S]
        let class_maps = per_channel.sum(2)?; // [B, k, S]

        // The target's own back-projection, computed apart when it is not among the slots.
        let missing: Vec<usize> = (0..b).filter(|i| !slots[*i].contains(&tclasses[*i])).collect();
        let extra = if missing.is_empty() {
            None
        } else {
            let idx = Tensor::from_vec(missing.iter().map(|i| *i as u32).collect::<Vec<_>>(), missing.len(), inputs.device())?;
            let xs = inputs.index_select(&idx, 0)?;
            let cls: Vec<Vec<usize>> = missing.iter().map(|i| vec![tclasses[*i]]).collect();
            Some(attentive_responses(model, &xs, &cls, self.config.batch_size, self.config.seed)?.squeeze(1)?)
        };
        let mut attr = Vec::with_capacity(b);
        for i in 0..b {
            attr.push(match slots[i].iter().position(|c| *c == tclasses[i]) {
                Some(s) => per_channel.get(i)?.get(s)?,
                None => {
                    let j = missing.iter().position(|m| *m == i).ok_or_else(|| Error::msg("internal: missing row"))?;
                    extra.as_ref().ok_or_else(|| Error::msg("internal: no extra rows"))?.get(j)?
                }
            });
        }
        let attribution = Tensor::stack(&attr, 0)?;

        // Ĉ, D and the pictures, per example on the host (small: k × pixels).
        let spatial = class_maps.dims()[2..].to_vec();
        let npix: usize = spatial.iter().product();
        let maps = class_maps.to_dtype(DType::F32)?.reshape((b, k, npix))?.to_vec3::<f32>()?;
        let (mut cmap, mut level, mut rgb, mut binary, mut redblue) = (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..b {
            let dom = render::dominant(&maps[i])?;
            let v = render::normalise(&dom.level);
            cmap.extend(dom.slot.iter().map(|s| slots[i][*s] as f32));
            level.extend_from_slice(&dom.level);
            let t_slot = slots[i].iter().position(|c| *c == tclasses[i]);
            let pos: Vec<f32> = match t_slot {
                Some(s) => maps[i][s].clone(),
                None => attribution.get(i)?.to_dtype(DType::F32)?.sum(0)?.flatten_all()?.to_vec1::<f32>()?,
            };
            let neg: Vec<f32> = (0..npix)
                .map(|p| (0..k).filter(|s| Some(*s) != t_slot).map(|s| maps[i][s][p]).fold(f32::NEG_INFINITY, f32::max))
                .map(|m| if m.is_finite() { m } else { 0.0 })
                .collect();
            let is_t: Vec<bool> = dom.slot.iter().map(|s| Some(*s) == t_slot).collect();
            planar(&mut rgb, &render::clear_pixels(&dom.slot, &v, k));
            planar(&mut binary, &render::binary_pixels(&pos, &neg));
            planar(&mut redblue, &render::red_blue_pixels(&is_t, &v));
        }
        let dev = inputs.device();
        let shape = |lead: &[usize]| -> Vec<usize> { lead.iter().copied().chain(spatial.iter().copied()).collect() };
        let classes_t = Tensor::from_vec(
            slots.iter().flatten().map(|c| *c as f32).collect::<Vec<_>>(),
            (b, k),
            dev,
        )?;
        let e = Explanation::new("clear", attribution, target)
            .with_tensor("class_maps", class_maps)
            .with_tensor("classes", classes_t)
            .with_tensor("class_map", Tensor::from_vec(cmap, shape(&[b]), dev)?)
            .with_tensor("level", Tensor::from_vec(level, shape(&[b]), dev)?)
            .with_tensor("clear_rgb", Tensor::from_vec(rgb, shape(&[b, 3]), dev)?)
            .with_tensor("binary_rgb", Tensor::from_vec(binary, shape(&[b, 3]), dev)?)
            .with_tensor("red_blue", Tensor::from_vec(redblue, shape(&[b, 3]), dev)?)
            .with_params(self.params())
            .with_diag("class_layer", layer.name.as_str())
            .with_diag("explained_classes", k);
        Ok(e)
    }
}

/// Appends pixels `[r, g, b]` as three planes (channel-first).
fn planar(out: &mut Vec<f32>, px: &[[f32; 3]]) {
    for ch in 0..3 {
        out.extend(px.iter().map(|p| p[ch]));
    }
}

lumen_core::submit_method!(Clear);

#[cfg(test)]
mod tests;
