//! The data sets of an evaluation: seeded draws of examples, with fixed targets and
//! ground-truth masks where the data has them (the bias square, planted motifs).

use crate::{bail, Result};
use lumen_core::candle::{Device, Tensor};
use lumen_core::data::biased::BiasSquare;
use lumen_core::data::genomics::{Genomics, GenomicsConfig};
use lumen_core::data::{Mnist, Split};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// The data kinds [`load`] knows.
pub const KINDS: &[&str] = &["mnist", "biased", "genomics"];

/// The evaluated examples.
pub struct EvalData {
    pub xs: Tensor,
    /// Fixed target per example, or `None` for the predicted class.
    pub targets: Option<Vec<usize>>,
    pub labels: Vec<usize>,
    /// Index of each example in its data set.
    pub index: Vec<usize>,
    pub masks: Option<Tensor>,
    pub description: String,
}

/// `n` examples of a data kind (`mnist`, `biased`, `genomics`), drawn with `seed`.
pub fn load(kind: &str, n: usize, seed: u64, device: &Device) -> Result<EvalData> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let take = |mut pool: Vec<usize>, what: &str, rng: &mut rand::rngs::StdRng| -> Result<Vec<usize>> {
        if n > pool.len() {
            bail!("--n {n} exceeds the {} examples of {what}", pool.len());
        }
        pool.shuffle(rng);
        pool.truncate(n);
        Ok(pool)
    };
    match kind {
        "mnist" => {
            let data = Mnist::load()?;
            let idx = take((0..data.len(Split::Test)).collect(), "the MNIST-5k test split", &mut rng)?;
            let (xs, labels) = data.batch(Split::Test, &idx, device)?;
            Ok(EvalData {
                xs,
                targets: None,
                labels,
                index: idx,
                masks: None,
                description: "MNIST-5k test digits (a seeded draw), each explained for its predicted class".into(),
            })
        }
        "biased" => {
            let data = Mnist::load()?;
            let sq = BiasSquare::default();
            let test = data.indices(Split::Test);
            let pool: Vec<usize> = (0..test.len()).filter(|&i| data.labels[test[i]] != 8).collect();
            let idx = take(pool, "MNIST-5k test digits other than 8", &mut rng)?;
            let (xs, labels) = data.batch(Split::Test, &idx, device)?;
            let xs = sq.apply(&xs)?;
            let (h, w) = (xs.dim(2)?, xs.dim(3)?);
            let masks = sq.mask(h, w, device)?.unsqueeze(0)?.repeat((n, 1, 1, 1))?;
            Ok(EvalData {
                xs,
                targets: Some(vec![8; n]),
                labels,
                index: idx,
                masks: Some(masks),
                description: format!(
                    "MNIST-5k test digits other than 8 with the bias square ({}×{} at row {}, column {}, value {}), \
                     each explained for class 8; the ground-truth mask is the square",
                    sq.size, sq.size, sq.top, sq.left, sq.value
                ),
            })
        }
        "genomics" => {
            let g = Genomics::simulate(&GenomicsConfig::test())?;
            let pool: Vec<usize> = (0..g.seqs.len()).filter(|&i| g.seqs[i].label == 1).collect();
            let idx = take(pool, "positive genomics test sequences", &mut rng)?;
            let xs = g.onehot(&idx, device)?;
            let l = g.config.length;
            let mut m = vec![0f32; n * l];
            for (b, &i) in idx.iter().enumerate() {
                for k in 0..lumen_core::data::genomics::MOTIFS.len() {
                    for (p, inside) in g.seqs[i].mask(k).into_iter().enumerate() {
                        if inside {
                            m[b * l + p] = 1.0;
                        }
                    }
                }
            }
            Ok(EvalData {
                xs,
                targets: Some(vec![1; n]),
                labels: vec![1; n],
                index: idx,
                masks: Some(Tensor::from_vec(m, (n, l), device)?),
                description: "positive sequences of the genomics test simulation (seed 2), explained for class 1; \
                              the ground-truth mask is the planted motifs"
                    .into(),
            })
        }
        other => bail!("unknown --data '{other}' (known: mnist, biased, genomics)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biased_masks_mark_the_square_and_draws_are_seeded() {
        let d = load("biased", 3, 1, &Device::Cpu).unwrap();
        assert_eq!(d.targets, Some(vec![8; 3]));
        assert!(d.labels.iter().all(|&l| l != 8));
        let m = d.masks.unwrap();
        assert_eq!(m.dims(), &[3, 1, 28, 28]);
        let sq = BiasSquare::default();
        let total: f32 = m.sum_all().unwrap().to_scalar().unwrap();
        assert_eq!(total, (3 * sq.size * sq.size) as f32);
        assert_eq!(load("biased", 3, 1, &Device::Cpu).unwrap().index, d.index);
        assert_ne!(load("biased", 3, 2, &Device::Cpu).unwrap().index, d.index);
    }

    #[test]
    fn genomics_masks_are_the_motifs_and_bad_kinds_are_named() {
        let d = load("genomics", 2, 0, &Device::Cpu).unwrap();
        let m = d.masks.unwrap();
        assert_eq!(m.dim(0).unwrap(), 2);
        assert!(m.sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
        let e = load("nope", 1, 0, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("unknown --data 'nope'"), "{e}");
        assert!(load("mnist", 1_000_000, 0, &Device::Cpu).err().unwrap().to_string().contains("exceeds"));
    }
}
