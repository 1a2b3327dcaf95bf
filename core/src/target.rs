//! What an explanation explains: a class, a contrast, or a hidden unit.

use crate::model::{Classifier, ForwardOptions, Taps};
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

/// The quantity whose attribution is wanted, per example.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Target {
    /// The model's top class for each example.
    Predicted,
    /// The same class for every example.
    Class(usize),
    /// One class per example.
    Classes(Vec<usize>),
    /// "Why `a` and not `b`": the logit difference `z_a − z_b`, per example.
    Contrast { a: Vec<usize>, b: Vec<usize> },
    /// A hidden unit: the channel of a tapped layer at one position, or the mean
    /// over the channel's feature map when `position` is `None`.
    Hidden { layer: String, channel: usize, position: Option<Vec<usize>> },
}

impl Default for Target {
    fn default() -> Self {
        Target::Predicted
    }
}

impl Target {
    /// Replaces `Predicted` and `Class` by explicit per-example classes, checking
    /// ranges, so wrappers can expand the batch without changing the target.
    pub fn resolve(&self, model: &dyn Classifier, xs: &Tensor) -> Result<Target> {
        let b = xs.dim(0)?;
        let k = model.info().num_classes();
        let check = |c: &usize| {
            if *c >= k {
                Err(Error::BadTarget(format!("class {c} is out of range for a model with {k} classes")))
            } else {
                Ok(())
            }
        };
        let check_len = |v: &Vec<usize>| {
            if v.len() != b {
                Err(Error::BadTarget(format!("{} per-example targets for a batch of {b}", v.len())))
            } else {
                Ok(())
            }
        };
        Ok(match self {
            Target::Predicted => Target::Classes(predict(model, xs)?),
            Target::Class(c) => {
                check(c)?;
                Target::Classes(vec![*c; b])
            }
            Target::Classes(v) => {
                check_len(v)?;
                v.iter().try_for_each(check)?;
                self.clone()
            }
            Target::Contrast { a, b: bb } => {
                check_len(a)?;
                check_len(bb)?;
                a.iter().chain(bb).try_for_each(check)?;
                self.clone()
            }
            Target::Hidden { .. } => self.clone(),
        })
    }

    /// Repeats each example's target `n` times (`[t0, t0, .., t1, t1, ..]`), matching
    /// a batch expanded with `repeat_interleave`.
    pub fn repeat_each(&self, n: usize) -> Target {
        let rep = |v: &Vec<usize>| v.iter().flat_map(|c| std::iter::repeat_n(*c, n)).collect();
        match self {
            Target::Classes(v) => Target::Classes(rep(v)),
            Target::Contrast { a, b } => Target::Contrast { a: rep(a), b: rep(b) },
            other => other.clone(),
        }
    }

    /// The targets of rows `rows` of the batch that repeats each example `n` times:
    /// `repeat_each(n).select(rows)` without building the whole repeated list.
    pub fn select_repeated(&self, n: usize, rows: std::ops::Range<usize>) -> Target {
        let pick = |v: &Vec<usize>| rows.clone().map(|i| v[i / n.max(1)]).collect();
        match self {
            Target::Classes(v) => Target::Classes(pick(v)),
            Target::Contrast { a, b } => Target::Contrast { a: pick(a), b: pick(b) },
            other => other.clone(),
        }
    }

    /// Selects the targets of the examples `idx` (for chunking a batch).
    pub fn select(&self, idx: std::ops::Range<usize>) -> Target {
        match self {
            Target::Classes(v) => Target::Classes(v[idx].to_vec()),
            Target::Contrast { a, b } => Target::Contrast { a: a[idx.clone()].to_vec(), b: b[idx].to_vec() },
            other => other.clone(),
        }
    }

    /// Per-example classes, when the target is a class target.
    pub fn classes(&self) -> Option<&[usize]> {
        match self {
            Target::Classes(v) => Some(v),
            Target::Contrast { a, .. } => Some(a),
            _ => None,
        }
    }

    /// Parses `predicted`, `N`, `N,M,...` (per example), `A-B` / `A,B-C,D` (contrast)
    /// and `hidden:LAYER:CHANNEL[:Y,X]` (a hidden unit; the channel's mean without a
    /// position).
    pub fn parse(s: &str) -> Result<Target> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix("hidden:") {
            let bad = || Error::BadTarget(format!("'{s}' is not of the form hidden:LAYER:CHANNEL or hidden:LAYER:CHANNEL:Y,X"));
            let parts: Vec<&str> = rest.split(':').collect();
            if parts.len() < 2 || parts.len() > 3 || parts[0].is_empty() {
                return Err(bad());
            }
            let num = |t: &str| t.trim().parse::<usize>().map_err(|_| bad());
            let position = parts.get(2).map(|p| p.split(',').map(num).collect::<Result<Vec<_>>>()).transpose()?;
            return Ok(Target::Hidden { layer: parts[0].to_string(), channel: num(parts[1])?, position });
        }
        let nums = |t: &str| -> Result<Vec<usize>> {
            t.split(',')
                .map(|x| x.trim().parse::<usize>().map_err(|_| Error::BadTarget(format!("'{s}' is not a target"))))
                .collect()
        };
        if s.is_empty() || s == "predicted" || s == "pred" {
            return Ok(Target::Predicted);
        }
        if let Some((a, b)) = s.split_once('-') {
            return Ok(Target::Contrast { a: nums(a)?, b: nums(b)? });
        }
        let v = nums(s)?;
        Ok(if v.len() == 1 { Target::Class(v[0]) } else { Target::Classes(v) })
    }
}

/// Top-1 class per example.
pub fn predict(model: &dyn Classifier, xs: &Tensor) -> Result<Vec<usize>> {
    let logits = model.forward(xs)?;
    Ok(logits.argmax(D::Minus1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter().map(|c| c as usize).collect())
}

/// `d objective / d logits` of a class target, `[rows, K]`, for its first `rows`
/// examples: `e_a` (or `e_a − e_b`), centred per row when `centre` (the objective is
/// then read from mean-centred logits). `None` for other targets, or a target whose
/// length is not `len` or whose classes are not below `k`: the autograd path then
/// reports it.
pub fn class_seed(target: &Target, len: usize, rows: usize, k: usize, centre: bool, like: &Tensor) -> Result<Option<Tensor>> {
    let (a, b): (&[usize], &[usize]) = match target {
        Target::Classes(a) => (a, &[]),
        Target::Contrast { a, b } => (a, b),
        _ => return Ok(None),
    };
    let contrast = matches!(target, Target::Contrast { .. });
    if rows > len || a.len() != len || (contrast && b.len() != len) || a.iter().chain(b).any(|&c| c >= k) {
        return Ok(None);
    }
    let mut seed = vec![0f64; rows * k];
    for (i, row) in seed.chunks_mut(k.max(1)).enumerate() {
        row[a[i]] += 1.0;
        if contrast {
            row[b[i]] -= 1.0;
        }
        if centre {
            let mean = row.iter().sum::<f64>() / k as f64;
            row.iter_mut().for_each(|v| *v -= mean);
        }
    }
    Ok(Some(Tensor::from_vec(seed, (rows, k), like.device())?.to_dtype(like.dtype())?))
}

/// `z_c` (or `z_a − z_b`) per example from the logits `[B, K]`, for the class
/// targets; other targets are an error.
pub fn class_objective(output: &Tensor, target: &Target) -> Result<Tensor> {
    let dev = output.device();
    let pick = |v: &[usize]| -> Result<Tensor> {
        let idx = Tensor::from_vec(v.iter().map(|c| *c as u32).collect::<Vec<_>>(), (v.len(), 1), dev)?;
        Ok(output.gather(&idx, 1)?)
    };
    Ok(match target {
        Target::Classes(v) => pick(v)?.squeeze(1)?,
        Target::Contrast { a, b } => (pick(a)? - pick(b)?)?.squeeze(1)?,
        _ => return Err(Error::msg("internal: class_objective needs a class target")),
    })
}

/// The per-example objective `[B]` for a resolved target, computed through
/// `forward_with` (so rules apply), together with the logits when available.
pub fn objective(
    model: &dyn Classifier,
    xs: &Tensor,
    target: &Target,
    opts: ForwardOptions,
) -> Result<(Tensor, Tensor)> {
    match target {
        Target::Classes(_) | Target::Contrast { .. } => {
            let fwd = model.forward_with(xs, &opts)?;
            Ok((class_objective(&fwd.output, target)?, fwd.output))
        }
        Target::Hidden { layer, channel, position } => {
            let opts = ForwardOptions { taps: Taps::Names(vec![layer.clone()]), ..opts };
            let fwd = model.forward_with(xs, &opts)?;
            let h = fwd.tap(layer)?;
            let dims = h.dims().to_vec();
            if dims.len() < 2 || *channel >= dims[1] {
                return Err(Error::BadTarget(format!("layer '{layer}' has shape {dims:?}; channel {channel} is out of range")));
            }
            let ch = h.narrow(1, *channel, 1)?.squeeze(1)?; // [B, ...]
            let obj = match position {
                None => {
                    if ch.rank() == 1 {
                        ch
                    } else {
                        ch.flatten_from(1)?.mean(1)?
                    }
                }
                Some(pos) => {
                    if pos.len() + 2 != dims.len() || pos.iter().zip(&dims[2..]).any(|(p, d)| p >= d) {
                        return Err(Error::BadTarget(format!(
                            "position {pos:?} does not fit layer '{layer}' of shape {dims:?}"
                        )));
                    }
                    let mut t = ch;
                    for p in pos {
                        t = t.narrow(1, *p, 1)?.squeeze(1)?;
                    }
                    t
                }
            };
            Ok((obj, fwd.output))
        }
        Target::Predicted | Target::Class(_) => {
            Err(Error::BadTarget("internal: target must be resolved before computing the objective".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn hidden_targets_parse() {
        let t = Target::parse("hidden:conv2:3:7,8").unwrap();
        assert_eq!(t, Target::Hidden { layer: "conv2".into(), channel: 3, position: Some(vec![7, 8]) });
        assert_eq!(Target::parse("hidden:fc1:5").unwrap(), Target::Hidden { layer: "fc1".into(), channel: 5, position: None });
        for bad in ["hidden:conv2", "hidden::1", "hidden:conv2:x", "hidden:conv2:1:a", "hidden:a:1:2:3"] {
            assert!(Target::parse(bad).unwrap_err().to_string().contains("hidden:LAYER:CHANNEL"), "{bad}");
        }
    }

    #[test]
    fn parse_forms() {
        assert_eq!(Target::parse("predicted").unwrap(), Target::Predicted);
        assert_eq!(Target::parse("3").unwrap(), Target::Class(3));
        assert_eq!(Target::parse("1,2").unwrap(), Target::Classes(vec![1, 2]));
        assert_eq!(Target::parse("4-9").unwrap(), Target::Contrast { a: vec![4], b: vec![9] });
        assert!(Target::parse("x").is_err());
        assert_eq!(Target::Classes(vec![1, 2]).repeat_each(2), Target::Classes(vec![1, 1, 2, 2]));
        let c = Target::Contrast { a: vec![1, 2, 3], b: vec![4, 5, 6] };
        for r in [0..9, 2..5, 8..9] {
            assert_eq!(c.select_repeated(3, r.clone()), c.repeat_each(3).select(r));
        }
    }
}
