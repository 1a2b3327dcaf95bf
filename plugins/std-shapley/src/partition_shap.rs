//! Partition SHAP: exact Owen values of the feature game over a binary hierarchy of
//! the features, as shap's Partition explainer computes for images. The hierarchy
//! is agglomerative clustering of adjacent features by their mean values and
//! centroid (Ward distance), so similar neighbouring superpixels join first. Owen
//! values satisfy efficiency and cost O(M²) coalitions on a balanced tree, against
//! 2^M for exact Shapley values.

use crate::ablation::finish_shapley;
use crate::game::{Features, Game, Query};
use crate::mask::FeatureMask;
use crate::partition::{cluster, label_adjacency, owen_values, Tree};
use lumen_core::candle::Tensor;
use lumen_core::{Attributor, Classifier, Config, Error, Explanation, Method, Result, Target};

/// Configuration of [`PartitionShap`].
#[derive(Debug, Clone, Default, Config)]
pub struct PartitionShapConfig {
    #[param(flatten)]
    pub features: Features,
}

#[derive(Debug, Clone, Default)]
pub struct PartitionShap {
    pub config: PartitionShapConfig,
}

/// The most features the hierarchy takes (its cost grows as M²).
pub const MAX_FEATURES: usize = 4096;

/// The feature hierarchy of one example `x` (flattened, of shape `dims`).
pub fn hierarchy(mask: &FeatureMask, x: &[f32], dims: &[usize]) -> Result<Tree> {
    let n = mask.n;
    // Spatial layout: the last two dims of an image, the last of a sequence.
    let (h, w) = match dims.len() {
        3 => (dims[1], dims[2]),
        _ => (1, *dims.last().unwrap_or(&1)),
    };
    let plane = h * w;
    let lead = x.len() / plane.max(1);
    // Descriptor: mean value per channel, then the centroid in [0, 1]².
    let mut desc = vec![vec![0.0f64; lead + 2]; n];
    let mut sizes = vec![0usize; n];
    for (j, (&id, &v)) in mask.ids.iter().zip(x).enumerate() {
        let (c, p) = (j / plane, j % plane);
        let d = &mut desc[id as usize];
        d[c] += v as f64;
        if c == 0 {
            d[lead] += (p / w) as f64 / h.max(1) as f64;
            d[lead + 1] += (p % w) as f64 / w.max(1) as f64;
            sizes[id as usize] += 1;
        }
    }
    for (d, &s) in desc.iter_mut().zip(&sizes) {
        let s = s.max(1) as f64;
        d.iter_mut().for_each(|v| *v /= s);
    }
    let adjacent = label_adjacency(&mask.ids[..plane], h, w);
    cluster(&desc, &sizes.iter().map(|s| (*s).max(1)).collect::<Vec<_>>(), &adjacent).map_err(Error::msg)
}

impl Method for PartitionShap {
    const NAME: &'static str = "partition_shap";
    const SUMMARY: &'static str =
        "Partition SHAP: exact Owen values over a hierarchical clustering of the features (superpixels)";
    type Config = PartitionShapConfig;
    fn new(config: PartitionShapConfig) -> Result<Self> {
        config.features.check(Self::NAME)?;
        Ok(PartitionShap { config })
    }
    fn config(&self) -> &PartitionShapConfig {
        &self.config
    }

    fn explain(&self, model: &dyn Classifier, inputs: &Tensor, target: &Target) -> Result<Explanation> {
        let game = Game::new(Self::NAME, model, inputs, target, &self.config.features)?;
        let (mut values, mut f_x, mut f_b, mut evals) = (vec![], vec![], vec![], vec![]);
        for ex in 0..game.len() {
            let mask = &game.masks[ex];
            if mask.n > MAX_FEATURES {
                return Err(Error::unsupported(
                    Self::NAME,
                    format!("the mask has {} features, more than {MAX_FEATURES}; use a coarser mask", mask.n),
                ));
            }
            let tree = hierarchy(mask, &game.xs[ex], &game.dims)?;
            let mut failure = None;
            let mut eval = |zs: &[Vec<bool>]| -> std::result::Result<Vec<f64>, String> {
                let qs: Vec<Query> = zs.iter().map(|z| Query::new(ex, z.clone())).collect();
                game.eval(&qs).map_err(|e| {
                    let s = e.to_string();
                    failure = Some(e);
                    s
                })
            };
            let owen = owen_values(&tree, game.batch_size, &mut eval);
            let owen = match (owen, failure) {
                (_, Some(e)) => return Err(e),
                (r, None) => r.map_err(Error::msg)?,
            };
            f_x.push(owen.v_full);
            f_b.push(owen.v_empty);
            evals.push(owen.evaluations);
            values.push(owen.values);
        }
        Ok(finish_shapley(Self::NAME, &game, inputs, values, self.params(), f_x, f_b)?.with_diag("samples", evals))
    }
}
