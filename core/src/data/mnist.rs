//! MNIST-5k: 5,000 digits bundled in the binary, 500 per class, split per class
//! into the first 400 rows (train) and the last 100 (test).

use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::io::Read;
use std::sync::OnceLock;

static GZ: &[u8] = include_bytes!("../../data/mnist_5k.csv.gz");

pub const TRAIN_PER_CLASS: usize = 400;
pub const TEST_PER_CLASS: usize = 100;
pub const SIDE: usize = 28;
pub const PIXELS: usize = SIDE * SIDE;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::Data(format!("unknown split '{s}' (known: train, test)"))),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// The decoded data set: pixels as bytes (0–255), labels, and the two splits in
/// file order (so `test[0]` is the first test zero).
#[derive(Debug)]
pub struct Mnist {
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

impl Mnist {
    /// The bundled set, decoded once per process.
    pub fn load() -> Result<&'static Mnist> {
        static CELL: OnceLock<std::result::Result<Mnist, String>> = OnceLock::new();
        CELL.get_or_init(|| Mnist::parse_gz(GZ).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Data(e.clone()))
    }

    pub fn parse_gz(gz: &[u8]) -> Result<Mnist> {
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| Error::Data(format!("mnist: cannot decompress: {e}")))?;
        Mnist::parse_csv(&text)
    }

    pub fn parse_csv(text: &str) -> Result<Mnist> {
        let mut pixels = Vec::with_capacity(5000 * PIXELS);
        let mut labels = Vec::with_capacity(5000);
        for (row, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let mut n = 0;
            for field in line.split(',') {
                let v: u8 = field
                    .trim()
                    .parse()
                    .map_err(|_| Error::Data(format!("mnist row {}: bad value '{field}'", row + 1)))?;
                if n < PIXELS {
                    pixels.push(v);
                } else if n == PIXELS {
                    if v > 9 {
                        return Err(Error::Data(format!("mnist row {}: label {v}", row + 1)));
                    }
                    labels.push(v);
                }
                n += 1;
            }
            if n != PIXELS + 1 {
                return Err(Error::Data(format!("mnist row {}: {n} fields, expected {}", row + 1, PIXELS + 1)));
            }
        }
        let mut seen = [0usize; 10];
        let (mut train, mut test) = (vec![], vec![]);
        for (i, &l) in labels.iter().enumerate() {
            let k = seen[l as usize];
            seen[l as usize] += 1;
            if k < TRAIN_PER_CLASS {
                train.push(i);
            } else {
                test.push(i);
            }
        }
        // The test set is ordered class by class in file order.
        test.sort_by_key(|&i| (labels[i], i));
        train.sort_by_key(|&i| (labels[i], i));
        Ok(Mnist { pixels, labels, train, test })
    }

    pub fn indices(&self, split: Split) -> &[usize] {
        match split {
            Split::Train => &self.train,
            Split::Test => &self.test,
        }
    }

    pub fn len(&self, split: Split) -> usize {
        self.indices(split).len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    fn row(&self, split: Split, idx: usize) -> Result<usize> {
        let ids = self.indices(split);
        ids.get(idx).copied().ok_or_else(|| {
            Error::Data(format!("mnist:{}:{idx} is out of range (the {} split has {} images)", split.name(), split.name(), ids.len()))
        })
    }

    /// One image `[1, 28, 28]` in [0, 1] and its label.
    pub fn get(&self, split: Split, idx: usize, device: &Device) -> Result<(Tensor, usize)> {
        let (t, l) = self.batch(split, &[idx], device)?;
        Ok((t.squeeze(0)?, l[0]))
    }

    /// Images `[B, 1, 28, 28]` in [0, 1] and labels, by index within the split.
    pub fn batch(&self, split: Split, idx: &[usize], device: &Device) -> Result<(Tensor, Vec<usize>)> {
        let mut data = Vec::with_capacity(idx.len() * PIXELS);
        let mut labels = Vec::with_capacity(idx.len());
        for &i in idx {
            let r = self.row(split, i)?;
            data.extend(self.pixels[r * PIXELS..(r + 1) * PIXELS].iter().map(|&p| p as f32 / 255.0));
            labels.push(self.labels[r] as usize);
        }
        Ok((Tensor::from_vec(data, (idx.len(), 1, SIDE, SIDE), device)?, labels))
    }

    /// The whole split as one tensor.
    pub fn all(&self, split: Split, device: &Device) -> Result<(Tensor, Vec<usize>)> {
        let idx: Vec<usize> = (0..self.len(split)).collect();
        self.batch(split, &idx, device)
    }

    /// Index within the test split of the first test image of each class.
    pub fn first_of_each_class(&self, split: Split) -> Vec<usize> {
        let ids = self.indices(split);
        (0..10u8).filter_map(|c| ids.iter().position(|&r| self.labels[r] == c)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn split_is_balanced_and_ordered() {
        let m = Mnist::load().unwrap();
        assert_eq!(m.labels.len(), 5000);
        assert_eq!(m.len(Split::Train), 4000);
        assert_eq!(m.len(Split::Test), 1000);
        let (t, l) = m.get(Split::Test, 0, &Device::Cpu).unwrap();
        assert_eq!(l, 0);
        assert_eq!(t.dims(), &[1, 28, 28]);
        assert_eq!(m.get(Split::Test, 999, &Device::Cpu).unwrap().1, 9);
        assert_eq!(m.get(Split::Test, 100, &Device::Cpu).unwrap().1, 1);
        // the first test zero is the 401st zero of the file
        let zeros: Vec<usize> = (0..5000).filter(|&i| m.labels[i] == 0).collect();
        assert_eq!(m.test[0], zeros[400]);
        let e = m.get(Split::Test, 99999, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("99999") && e.contains("1000"), "{e}");
    }
    #[test]
    fn bad_rows_are_reported() {
        assert!(Mnist::parse_csv("1,2,3\n").unwrap_err().to_string().contains("fields"));
    }
}
