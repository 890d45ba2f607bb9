//! The validated description of a run. A [`Job`] is built once from the command line (or by code)
//! and can be trusted afterwards: sizes are non-zero, the learning rate is finite and positive.

use crate::error::{Error, Result};
use serde::Serialize;

/// Default layer widths: input 1000, hidden 100, output 10.
pub const DEFAULT_LAYERS: [usize; 3] = [1000, 100, 10];
pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_LR: f32 = 1e-6;
pub const DEFAULT_EPOCHS: usize = 500;
pub const DEFAULT_LOG_EVERY: usize = 50;

/// One training run: a fully connected net with ReLU between layers (none after the last), no
/// bias, sum-of-squared-errors loss, plain SGD over one fixed batch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Job {
    /// Widths from input to output: `[d0, d1, ..., dL]`, at least two entries.
    pub layers: Vec<usize>,
    pub batch: usize,
    pub lr: f32,
    pub epochs: usize,
    pub seed: u64,
    /// Print (and, on the GPU, read back) every this many epochs; 0 means only at the end.
    pub log_every: usize,
}

impl Default for Job {
    fn default() -> Self {
        Job {
            layers: DEFAULT_LAYERS.to_vec(),
            batch: DEFAULT_BATCH,
            lr: DEFAULT_LR,
            epochs: DEFAULT_EPOCHS,
            seed: 0,
            log_every: DEFAULT_LOG_EVERY,
        }
    }
}

impl Job {
    /// Number of weight matrices.
    pub fn depth(&self) -> usize {
        self.layers.len() - 1
    }

    /// Shape `[rows, cols]` of weight `l` (0-based): `[d_l, d_{l+1}]`, numpy's layout.
    pub fn weight_shape(&self, l: usize) -> [usize; 2] {
        [self.layers[l], self.layers[l + 1]]
    }

    pub fn x_shape(&self) -> [usize; 2] {
        [self.batch, self.layers[0]]
    }

    pub fn y_shape(&self) -> [usize; 2] {
        [self.batch, self.layers[self.depth()]]
    }

    /// Floating-point operations of one epoch (forward and backward products, 2 per multiply-add),
    /// the input-gradient of the first layer excluded since it is never computed.
    pub fn flops_per_epoch(&self) -> f64 {
        let b = self.batch as f64;
        (0..self.depth())
            .map(|l| {
                let [i, o] = self.weight_shape(l);
                let mac = b * i as f64 * o as f64;
                // forward + weight gradient, + input gradient for every layer but the first
                if l == 0 {
                    4.0 * mac
                } else {
                    6.0 * mac
                }
            })
            .sum()
    }

    /// Check every field; the error names the flag at fault.
    pub fn validate(&self) -> Result<()> {
        if self.layers.len() < 2 {
            return Err(Error::arg(
                "--layers",
                "needs at least two widths (input and output), e.g. 1000,100,10",
            ));
        }
        if let Some(i) = self.layers.iter().position(|&d| d == 0) {
            return Err(Error::arg(
                "--layers",
                format!("width #{} is 0; every width must be at least 1", i + 1),
            ));
        }
        if self.batch == 0 {
            return Err(Error::arg("--batch", "must be at least 1"));
        }
        if self.epochs == 0 {
            return Err(Error::arg("--epochs", "must be at least 1"));
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return Err(Error::arg(
                "--lr",
                format!("must be a finite number > 0, got {}", self.lr),
            ));
        }
        // Every tensor's element count must fit in u32 for the GPU kernels' indexing.
        let too_big = |n: usize| n > u32::MAX as usize / 4;
        for l in 0..self.depth() {
            let [i, o] = self.weight_shape(l);
            if i.checked_mul(o).is_none_or(too_big) {
                return Err(Error::arg(
                    "--layers",
                    format!("weight w{} of {i}x{o} is too large", l + 1),
                ));
            }
        }
        for &d in &self.layers {
            if self.batch.checked_mul(d).is_none_or(too_big) {
                return Err(Error::arg(
                    "--batch",
                    format!("a {}x{d} activation is too large", self.batch),
                ));
            }
        }
        Ok(())
    }
}

/// Parse a positive integer flag value.
pub fn parse_count(flag: &'static str, s: &str) -> Result<usize> {
    let v: usize = s
        .trim()
        .parse()
        .map_err(|_| Error::arg(flag, format!("`{s}` is not a whole number")))?;
    Ok(v)
}

/// Parse `--layers 1000,100,10`.
pub fn parse_layers(s: &str) -> Result<Vec<usize>> {
    let parts: Vec<&str> = s.split(',').map(str::trim).collect();
    let mut out = Vec::with_capacity(parts.len());
    for p in parts {
        if p.is_empty() {
            return Err(Error::arg(
                "--layers",
                format!(
                    "`{s}` has an empty width; expected comma-separated numbers like 1000,100,10"
                ),
            ));
        }
        out.push(p.parse::<usize>().map_err(|_| {
            Error::arg(
                "--layers",
                format!("`{p}` in `{s}` is not a whole number; expected e.g. 1000,100,10"),
            )
        })?);
    }
    Ok(out)
}

/// Parse `--lr`.
pub fn parse_lr(s: &str) -> Result<f32> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| Error::arg("--lr", format!("`{s}` is not a number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_job_is_valid_and_counts_flops() {
        let j = Job::default();
        j.validate().unwrap();
        // 4*64*1000*100 + 6*64*100*10
        assert_eq!(j.flops_per_epoch(), 25_600_000.0 + 384_000.0);
    }

    #[test]
    fn bad_values_name_their_flag() {
        let j = Job {
            layers: vec![1000, 0, 10],
            ..Job::default()
        };
        assert!(j.validate().unwrap_err().to_string().contains("--layers"));
        let j = Job {
            lr: f32::NAN,
            ..Job::default()
        };
        assert!(j.validate().unwrap_err().to_string().contains("--lr"));
        assert!(parse_layers("10,,3").is_err());
        assert!(parse_layers("10,x").is_err());
        assert_eq!(parse_layers(" 4, 5 ,6").unwrap(), vec![4, 5, 6]);
    }
}
