//! Host-side state of a run (x, y and the weights as row-major f32) and its seeded initialisation,
//! identical for every device.

use crate::job::Job;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// A row-major f32 matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix {
            rows,
            cols,
            data: vec![0.0; rows * cols],
        }
    }

    /// Build from data; `data.len()` must be `rows * cols`.
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            rows * cols,
            "matrix data does not match its shape"
        );
        Matrix { rows, cols, data }
    }

    /// Standard-normal entries drawn from `rng`, row by row.
    pub fn randn(rows: usize, cols: usize, rng: &mut ChaCha8Rng) -> Self {
        let data = (0..rows * cols)
            .map(|_| StandardNormal.sample(rng))
            .collect();
        Matrix { rows, cols, data }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// Everything a backend needs to start training: the batch and the initial weights.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// `[batch, d0]`
    pub x: Matrix,
    /// `[batch, dL]`
    pub y: Matrix,
    /// `weights[l]`: `[d_l, d_{l+1}]`
    pub weights: Vec<Matrix>,
}

impl HostState {
    /// Draw x, y, w1, w2, ... in that order from a ChaCha8 generator seeded with `job.seed`, each
    /// row-major from a standard normal. ChaCha8 is portable, so every machine and device gets the
    /// same numbers.
    pub fn seeded(job: &Job) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(job.seed);
        let [b, d0] = job.x_shape();
        let x = Matrix::randn(b, d0, &mut rng);
        let [_, dl] = job.y_shape();
        let y = Matrix::randn(b, dl, &mut rng);
        let weights = (0..job.depth())
            .map(|l| {
                let [i, o] = job.weight_shape(l);
                Matrix::randn(i, o, &mut rng)
            })
            .collect();
        HostState { x, y, weights }
    }

    /// The state's shapes as a job's `layers` and `batch`.
    pub fn dims(&self) -> (Vec<usize>, usize) {
        let mut layers = vec![self.x.cols];
        layers.extend(self.weights.iter().map(|w| w.cols));
        (layers, self.x.rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_state_other_seed_other_state() {
        let job = Job {
            layers: vec![5, 4, 3],
            batch: 2,
            ..Job::default()
        };
        let a = HostState::seeded(&job);
        assert_eq!(a, HostState::seeded(&job));
        assert_eq!(a.dims(), (vec![5, 4, 3], 2));
        let b = HostState::seeded(&Job { seed: 1, ..job });
        assert_ne!(a.x, b.x);
        // Roughly standard normal.
        let big = Job {
            layers: vec![1000, 100, 10],
            ..Job::default()
        };
        let s = HostState::seeded(&big);
        let n = s.weights[0].data.len() as f64;
        let mean: f64 = s.weights[0].data.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var: f64 = s.weights[0]
            .data
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
    }
}
