//! The genomics simulation of DeepLIFT §3.2, with the motif positions kept as ground
//! truth.
//!
//! Sequences of length 200 over A, C, G, T (uniform background). Positives hold both
//! `GATA` and `CAGATG` (each once or twice); negatives hold only one of the two,
//! once or twice. A background that happens to contain an extra copy of either motif
//! is redrawn, so the label is a function of the sequence and the planted motifs are
//! the only motif copies.

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Base order of the one-hot channels.
pub const ALPHABET: [u8; 4] = *b"ACGT";
/// The two motifs.
pub const MOTIFS: [&str; 2] = ["GATA", "CAGATG"];

/// One planted motif copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Motif {
    /// Index into [`MOTIFS`].
    pub motif: usize,
    pub start: usize,
}

impl Motif {
    pub fn len(&self) -> usize {
        MOTIFS[self.motif].len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start..self.start + self.len()
    }
}

/// One simulated sequence.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// Base indices into [`ALPHABET`].
    pub bases: Vec<u8>,
    /// 1 = positive (both motifs), 0 = negative.
    pub label: usize,
    pub motifs: Vec<Motif>,
}

impl Sequence {
    pub fn text(&self) -> String {
        self.bases.iter().map(|&b| ALPHABET[b as usize] as char).collect()
    }
    /// Per position: does a planted copy of motif `m` cover it?
    pub fn mask(&self, m: usize) -> Vec<bool> {
        let mut v = vec![false; self.bases.len()];
        for c in self.motifs.iter().filter(|c| c.motif == m) {
            v[c.range()].iter_mut().for_each(|x| *x = true);
        }
        v
    }
}

/// Simulation settings.
#[derive(Debug, Clone, PartialEq)]
pub struct GenomicsConfig {
    pub n: usize,
    pub length: usize,
    pub positive_fraction: f64,
    pub seed: u64,
    /// Plant motifs only inside the first this-many bases (`None`: anywhere). A model
    /// whose pooling skips the tail (genomics-cnn never reads the last 36 bases)
    /// cannot see a motif planted there.
    pub plant_within: Option<usize>,
}

impl Default for GenomicsConfig {
    fn default() -> Self {
        GenomicsConfig { n: 1000, length: 200, positive_fraction: 0.5, seed: 0, plant_within: None }
    }
}

impl GenomicsConfig {
    /// The training set of `genomics-cnn`.
    pub fn train() -> Self {
        GenomicsConfig { n: 8000, seed: 1, ..Default::default() }
    }
    /// The test set of `genomics-cnn` (an independent seed).
    pub fn test() -> Self {
        GenomicsConfig { n: 2000, seed: 2, ..Default::default() }
    }
}

/// A simulated data set.
#[derive(Debug, Clone)]
pub struct Genomics {
    pub config: GenomicsConfig,
    pub seqs: Vec<Sequence>,
}

/// Start positions of every occurrence of `pat` in `s`.
fn occurrences(s: &[u8], pat: &[u8]) -> Vec<usize> {
    if s.len() < pat.len() {
        return vec![];
    }
    (0..=s.len() - pat.len()).filter(|&i| &s[i..i + pat.len()] == pat).collect()
}

fn encode(m: &str) -> Vec<u8> {
    m.bytes().map(|c| ALPHABET.iter().position(|&a| a == c).expect("motif letters are ACGT") as u8).collect()
}

impl Genomics {
    pub fn simulate(cfg: &GenomicsConfig) -> Result<Genomics> {
        let longest = MOTIFS.iter().map(|m| m.len()).max().unwrap_or(0);
        if cfg.length < 4 * longest {
            return Err(Error::Data(format!("sequence length {} is too short for four motif copies", cfg.length)));
        }
        let span = cfg.plant_within.unwrap_or(cfg.length).min(cfg.length);
        if span < 4 * longest {
            return Err(Error::Data(format!("plant_within {span} is too short for four motif copies")));
        }
        if !(0.0..=1.0).contains(&cfg.positive_fraction) {
            return Err(Error::Data(format!("positive_fraction {} is not in [0, 1]", cfg.positive_fraction)));
        }
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let pats: Vec<Vec<u8>> = MOTIFS.iter().map(|m| encode(m)).collect();
        let mut seqs = Vec::with_capacity(cfg.n);
        for _ in 0..cfg.n {
            let label = usize::from(rng.gen_bool(cfg.positive_fraction));
            let mut kinds = vec![];
            if label == 1 {
                for m in 0..2 {
                    kinds.extend(std::iter::repeat_n(m, rng.gen_range(1..=2)));
                }
            } else {
                let m = rng.gen_range(0..2);
                kinds.extend(std::iter::repeat_n(m, rng.gen_range(1..=2)));
            }
            // Non-overlapping positions (with a one-base gap), drawn by rejection.
            let motifs = loop {
                let mut placed: Vec<Motif> = vec![];
                let mut ok = true;
                for &m in &kinds {
                    let len = MOTIFS[m].len();
                    let start = rng.gen_range(0..=span - len);
                    if placed.iter().any(|p| start < p.start + p.len() + 1 && p.start < start + len + 1) {
                        ok = false;
                        break;
                    }
                    placed.push(Motif { motif: m, start });
                }
                if ok {
                    placed.sort_by_key(|p| p.start);
                    break placed;
                }
            };
            // Redraw the background until the planted copies are the only ones.
            let bases = loop {
                let mut s: Vec<u8> = (0..cfg.length).map(|_| rng.gen_range(0..4u8)).collect();
                for p in &motifs {
                    s[p.range()].copy_from_slice(&pats[p.motif]);
                }
                let clean = (0..2).all(|m| {
                    let want: Vec<usize> = motifs.iter().filter(|p| p.motif == m).map(|p| p.start).collect();
                    occurrences(&s, &pats[m]) == want
                });
                if clean {
                    break s;
                }
            };
            seqs.push(Sequence { bases, label, motifs });
        }
        Ok(Genomics { config: cfg.clone(), seqs })
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn labels(&self) -> Vec<usize> {
        self.seqs.iter().map(|s| s.label).collect()
    }

    /// One-hot `[B, 4, L]` of the sequences `idx`.
    pub fn onehot(&self, idx: &[usize], device: &Device) -> Result<Tensor> {
        let l = self.config.length;
        let mut data = vec![0f32; idx.len() * 4 * l];
        for (b, &i) in idx.iter().enumerate() {
            let s = self.seqs.get(i).ok_or_else(|| Error::Data(format!("sequence {i} of {}", self.seqs.len())))?;
            for (p, &base) in s.bases.iter().enumerate() {
                data[b * 4 * l + base as usize * l + p] = 1.0;
            }
        }
        Ok(Tensor::from_vec(data, (idx.len(), 4, l), device)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_motifs_and_onehot_agree() {
        let g = Genomics::simulate(&GenomicsConfig { n: 300, seed: 7, ..Default::default() }).unwrap();
        let again = Genomics::simulate(&GenomicsConfig { n: 300, seed: 7, ..Default::default() }).unwrap();
        assert_eq!(g.seqs[5].bases, again.seqs[5].bases, "seeded");
        let mut pos = 0;
        for s in &g.seqs {
            let text = s.text();
            let has = |m: &str| text.matches(m).count();
            let (a, b) = (has("GATA"), has("CAGATG"));
            assert_eq!(a, s.motifs.iter().filter(|p| p.motif == 0).count());
            assert_eq!(b, s.motifs.iter().filter(|p| p.motif == 1).count());
            if s.label == 1 {
                pos += 1;
                assert!((1..=2).contains(&a) && (1..=2).contains(&b), "{text}");
            } else {
                assert!((a == 0) != (b == 0) && a + b <= 2, "{text}");
            }
            for p in &s.motifs {
                assert_eq!(&text[p.range()], MOTIFS[p.motif]);
            }
        }
        assert!(pos > 100 && pos < 200, "{pos}");
        // Restricted planting keeps every copy inside the window.
        let w = Genomics::simulate(&GenomicsConfig { n: 200, seed: 7, plant_within: Some(164), ..Default::default() }).unwrap();
        assert!(w.seqs.iter().flat_map(|s| &s.motifs).all(|m| m.start + m.len() <= 164));
        assert!(w.seqs.iter().flat_map(|s| &s.motifs).any(|m| m.start + m.len() > 150));
        assert!(Genomics::simulate(&GenomicsConfig { plant_within: Some(20), ..Default::default() }).is_err());
        let x = g.onehot(&[0, 1], &Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 4, 200]);
        let sums = x.sum(1).unwrap().to_vec2::<f32>().unwrap();
        assert!(sums.iter().flatten().all(|v| *v == 1.0));
        let first = x.get(0).unwrap().to_vec2::<f32>().unwrap();
        let b0 = g.seqs[0].bases[0] as usize;
        assert_eq!(first[b0][0], 1.0);
    }
}
