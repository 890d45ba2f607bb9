//! Host-side state of a run (x, y and the weights as row-major f32) and its seeded initialisation,
//! identical for every device.

use crate::job::{DataSource, InitScheme, Job};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal, Uniform};

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

    /// `rows` one-hot rows over `classes` columns, each row's class uniform, drawn from `rng`.
    pub fn one_hot_classes(rows: usize, classes: usize, rng: &mut ChaCha8Rng) -> Self {
        let u = Uniform::new(0, classes).expect("at least one class");
        let mut m = Matrix::zeros(rows, classes);
        for r in 0..rows {
            m.data[r * classes + u.sample(rng)] = 1.0;
        }
        m
    }

    /// Entries uniform in [-bound, bound) drawn from `rng`, row by row.
    fn uniform(rows: usize, cols: usize, bound: f32, rng: &mut ChaCha8Rng) -> Self {
        let u = Uniform::new(-bound, bound).expect("the bound is finite and positive");
        let data = (0..rows * cols).map(|_| u.sample(rng)).collect();
        Matrix { rows, cols, data }
    }

    /// A `[1, n]` bias of a layer with `fan_in` inputs drawn by `scheme`: uniform in
    /// ±1/sqrt(fan_in) for `torch` (as nn.Linear), standard normal for `normal`, the constant for
    /// `constant`, zeros for `xavier` and `kaiming` (as their usual setups).
    pub fn init_bias(fan_in: usize, n: usize, scheme: InitScheme, rng: &mut ChaCha8Rng) -> Self {
        match scheme {
            InitScheme::Normal => Self::randn(1, n, rng),
            InitScheme::Torch => Self::uniform(1, n, 1.0 / (fan_in as f32).sqrt(), rng),
            InitScheme::Xavier | InitScheme::Kaiming => Matrix::zeros(1, n),
            InitScheme::Constant(c) => Matrix::from_vec(1, n, vec![c; n]),
        }
    }

    /// A `[fan_in, fan_out]` weight matrix drawn by `scheme` from `rng`, row by row.
    pub fn init(rows: usize, cols: usize, scheme: InitScheme, rng: &mut ChaCha8Rng) -> Self {
        let (fan_in, fan_out) = (rows as f32, cols as f32);
        match scheme {
            InitScheme::Normal => Self::randn(rows, cols, rng),
            InitScheme::Torch => Self::uniform(rows, cols, 1.0 / fan_in.sqrt(), rng),
            InitScheme::Xavier => Self::uniform(rows, cols, (6.0 / (fan_in + fan_out)).sqrt(), rng),
            InitScheme::Kaiming => {
                let std = (2.0 / fan_in).sqrt();
                let mut m = Self::randn(rows, cols, rng);
                m.data.iter_mut().for_each(|v| *v *= std);
                m
            }
            InitScheme::Constant(c) => Matrix::from_vec(rows, cols, vec![c; rows * cols]),
        }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// The trainable tensors of a net (or their gradients): weights and, with `--bias`, biases.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    /// `weights[l]`: `[d_l, d_{l+1}]`
    pub weights: Vec<Matrix>,
    /// `biases[l]`: `[1, d_{l+1}]`; empty for a net without biases.
    pub biases: Vec<Matrix>,
}

impl Params {
    /// Every tensor with its name: w1, w2, ..., then b1, b2, ...
    pub fn named(&self) -> Vec<(String, &Matrix)> {
        let w = self.weights.iter().enumerate();
        let b = self.biases.iter().enumerate();
        w.map(|(l, m)| (format!("w{}", l + 1), m))
            .chain(b.map(|(l, m)| (format!("b{}", l + 1), m)))
            .collect()
    }
}

/// Everything a backend needs to start training: the batch and the initial parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct HostState {
    /// `[batch, d0]`
    pub x: Matrix,
    /// `[batch, dL]`
    pub y: Matrix,
    /// `weights[l]`: `[d_l, d_{l+1}]`
    pub weights: Vec<Matrix>,
    /// `biases[l]`: `[1, d_{l+1}]`; empty for a net without biases.
    pub biases: Vec<Matrix>,
}

impl HostState {
    /// Draw x, y (unless the job gives them), w1, w2, ..., then (with `job.bias`) b1, b2, ... in
    /// that order from a ChaCha8 generator seeded with `job.seed`, each row-major: x and y from a
    /// standard normal (`[rows, d0]` and `[rows, dL]`; for cross-entropy y is a uniform class per
    /// row, one-hot), the parameters by `job.init_scheme`. A
    /// validated job's fixed data fits its shapes. ChaCha8 is portable, so every machine and
    /// device gets the same numbers; a net without biases draws exactly what it drew before
    /// biases existed. A job whose data comes from files is set up with [`HostState::with_data`].
    pub fn seeded(job: &Job) -> Self {
        Self::draw(job, None)
    }

    /// The dataset given (`x` `[rows, d0]`, `y` `[rows, dL]`), the parameters drawn from the seed
    /// as [`HostState::seeded`] draws them after x and y.
    pub fn with_data(job: &Job, x: Matrix, y: Matrix) -> Self {
        Self::draw(job, Some((x, y)))
    }

    fn draw(job: &Job, data: Option<(Matrix, Matrix)>) -> Self {
        let mut rng = crate::job::seeded_stream(job.seed, crate::job::Stream::Init);
        let [b, d0] = job.x_shape();
        let [_, dl] = job.y_shape();
        let (x, y) = match (data, &job.data) {
            (Some(xy), _) => xy,
            (None, DataSource::Normal) => {
                let x = Matrix::randn(b, d0, &mut rng);
                let y = match job.loss.is_classification() {
                    // Cross-entropy's targets: a class per row, uniform, one-hot.
                    true => Matrix::one_hot_classes(b, dl, &mut rng),
                    false => Matrix::randn(b, dl, &mut rng),
                };
                (x, y)
            }
            (None, DataSource::Fixed { x, y }) => (
                Matrix::from_vec(b, d0, x.clone()),
                Matrix::from_vec(b, dl, y.clone()),
            ),
            (None, DataSource::Files { .. }) => {
                unreachable!("a job with data from files is set up with HostState::with_data")
            }
        };
        let weights = (0..job.depth())
            .map(|l| {
                let [i, o] = job.weight_shape(l);
                Matrix::init(i, o, job.init_scheme, &mut rng)
            })
            .collect();
        let biases = if job.bias {
            (0..job.depth())
                .map(|l| {
                    let [i, o] = job.weight_shape(l);
                    Matrix::init_bias(i, o, job.init_scheme, &mut rng)
                })
                .collect()
        } else {
            Vec::new()
        };
        HostState {
            x,
            y,
            weights,
            biases,
        }
    }

    /// The initial parameters.
    pub fn params(&self) -> Params {
        Params {
            weights: self.weights.clone(),
            biases: self.biases.clone(),
        }
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
    use rand::SeedableRng;

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

    /// Mean and variance of a sample.
    fn moments(v: &[f32]) -> (f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        (mean, var)
    }

    #[test]
    fn init_schemes_have_their_bounds_and_variances() {
        let (fi, fo) = (400usize, 100usize);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        // Uniform in ±b: variance b²/3, every value inside.
        for (scheme, b) in [
            (InitScheme::Torch, 1.0 / (fi as f64).sqrt()),
            (InitScheme::Xavier, (6.0 / (fi + fo) as f64).sqrt()),
        ] {
            let w = Matrix::init(fi, fo, scheme, &mut rng);
            assert!(w.data.iter().all(|&v| (v as f64).abs() <= b), "{scheme}");
            let (mean, var) = moments(&w.data);
            assert!(mean.abs() < 0.02 * b, "{scheme}: mean {mean}");
            assert!(
                (var / (b * b / 3.0) - 1.0).abs() < 0.03,
                "{scheme}: var {var}"
            );
        }
        let w = Matrix::init(fi, fo, InitScheme::Kaiming, &mut rng);
        let (mean, var) = moments(&w.data);
        assert!(mean.abs() < 0.002, "kaiming mean {mean}");
        assert!(
            (var / (2.0 / fi as f64) - 1.0).abs() < 0.03,
            "kaiming var {var}"
        );
        let w = Matrix::init(2, 3, InitScheme::Constant(0.5), &mut rng);
        assert_eq!(w.data, vec![0.5; 6]);
        // The default scheme draws exactly what randn draws.
        let mut a = ChaCha8Rng::seed_from_u64(9);
        let mut b = ChaCha8Rng::seed_from_u64(9);
        assert_eq!(
            Matrix::init(5, 4, InitScheme::Normal, &mut a),
            Matrix::randn(5, 4, &mut b)
        );
    }
}
