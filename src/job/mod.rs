//! The validated description of a run. A [`Job`] is built once from the command line (or by code)
//! and can be trusted afterwards: sizes are non-zero, the learning rate is finite and positive.

use crate::error::{Error, Result};
pub use crate::schedule::LrSchedule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use serde::{Serialize, Serializer};
use std::fmt;

mod activation;
mod init_scheme;
mod loss;
mod named;
mod optimizer;
mod presets;
mod rng;
#[cfg(test)]
mod tests;
mod validate;

pub use activation::*;
pub use init_scheme::*;
pub use loss::*;
pub use named::*;
pub use optimizer::*;
pub use presets::*;
pub use rng::*;
pub use validate::*;

/// Default layer widths: input 1000, hidden 100, output 10.
pub const DEFAULT_LAYERS: [usize; 3] = [1000, 100, 10];
pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_LR: f32 = 1e-6;
pub const DEFAULT_EPOCHS: usize = 500;
pub const DEFAULT_LOG_EVERY: usize = 50;
/// Most uses of the shared layer `--dynamic-depth` allows in one epoch.
pub const MAX_DYNAMIC_DEPTH: usize = 32;

/// Where x and y come from.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DataSource {
    /// Drawn from a standard normal with the job's seed.
    #[default]
    Normal,
    /// Given: `x` is `[batch, d0]` and `y` is `[batch, dL]`, row-major (a preset's worked example).
    Fixed { x: Vec<f32>, y: Vec<f32> },
    /// Loaded from files (`--x`/`--y`, `--data`, `--init`); the paths are recorded for the summary.
    Files { x: String, y: String },
}

impl Serialize for DataSource {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        match self {
            DataSource::Normal => s.serialize_str("normal"),
            DataSource::Fixed { x, y } => {
                let mut st = s.serialize_struct("fixed", 2)?;
                st.serialize_field("x", x)?;
                st.serialize_field("y", y)?;
                st.end()
            }
            DataSource::Files { x, y } => {
                let mut st = s.serialize_struct("files", 2)?;
                st.serialize_field("x_file", x)?;
                st.serialize_field("y_file", y)?;
                st.end()
            }
        }
    }
}

/// Dynamic depth with weight sharing, as in the control-flow example of PyTorch's tutorial: the
/// last hidden -> hidden layer (weight `L-1` of `L`) is one shared layer that each epoch runs a
/// number of times drawn from `0..=max`, one after the other; the net before and after it runs
/// once. Its gradient is the sum over its uses. In an epoch where it is not used it gets no
/// gradient and no optimizer step at all (as PyTorch skips a parameter whose `.grad` is None:
/// no momentum decay, and Adam's step count for it does not advance).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DynamicDepth {
    /// Most uses in one epoch (`--dynamic-depth MAX`).
    pub max: usize,
    /// Uses per epoch, cycled, given instead of drawn (to replay a reference run's depths);
    /// empty: drawn from the seed (see [`Job::uses`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub schedule: Vec<usize>,
}

/// One training run: a fully connected net trained over one fixed batch; by default the tutorial's
/// job (ReLU between layers and none after the last, no bias, sum-of-squared-errors loss, plain
/// SGD).
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
    #[serde(serialize_with = "by_display")]
    pub activation: Activation,
    #[serde(serialize_with = "by_name")]
    pub loss: Loss,
    #[serde(serialize_with = "by_display")]
    pub init_scheme: InitScheme,
    /// A bias per layer, added before the activation, trained like the weights.
    pub bias: bool,
    pub optimizer: Optimizer,
    /// The learning rate of each optimizer step (`job.lr` at every step by default).
    pub lr_schedule: LrSchedule,
    pub data: DataSource,
    /// A shared layer run a varying number of times per step (`--dynamic-depth`).
    pub dynamic: Option<DynamicDepth>,
    /// Rows of the dataset (x is `[rows, d0]`), trained in mini-batches of `batch` rows, the last
    /// one shorter when `batch` does not divide it. None: one batch (the tutorial's job).
    pub rows: Option<usize>,
    /// With more than one batch, visit the rows in a new seeded order every epoch.
    pub shuffle: bool,
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
            activation: Activation::default(),
            loss: Loss::default(),
            init_scheme: InitScheme::default(),
            bias: false,
            optimizer: Optimizer::default(),
            lr_schedule: LrSchedule::default(),
            data: DataSource::Normal,
            dynamic: None,
            rows: None,
            shuffle: true,
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

    /// Rows of the dataset: `rows`, or one batch.
    pub fn dataset_rows(&self) -> usize {
        self.rows.unwrap_or(self.batch)
    }

    /// Whether an epoch is more than one step (mini-batches).
    pub fn minibatched(&self) -> bool {
        self.dataset_rows() > self.batch
    }

    /// Optimizer steps (batches) per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.dataset_rows().div_ceil(self.batch)
    }

    /// Rows of batch `j` of an epoch: `batch`, or fewer for the last one.
    pub fn batch_rows(&self, j: usize) -> usize {
        self.batch.min(self.dataset_rows() - j * self.batch)
    }

    /// Rows of the last batch of an epoch (`batch` when it divides the dataset).
    pub fn last_batch_rows(&self) -> usize {
        self.batch_rows(self.steps_per_epoch() - 1)
    }

    /// The order in which epoch `epoch` visits the dataset's rows: with more than one batch and
    /// `shuffle`, a permutation drawn by Fisher-Yates from a ChaCha8 generator seeded with the
    /// job's seed on stream `2^32 + epoch` (a pure function of seed and epoch, like [`Job::uses`]);
    /// else the rows in order.
    pub fn order(&self, epoch: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.dataset_rows() as u32).collect();
        if self.shuffle && self.minibatched() {
            let mut rng = seeded_stream(self.seed, Stream::Order(epoch));
            rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
        }
        order
    }

    /// An epoch's loss from its steps' losses (each over its batch, before its step): for the
    /// summed losses (sse, half-sse) their sum, for the means (mse, l1, cross-entropy) their mean
    /// weighted by the batches' rows; that is the loss over the whole dataset if the parameters had not moved
    /// during the epoch. With one batch, that batch's loss.
    pub fn epoch_loss(&self, steps: &[f32]) -> f32 {
        if steps.len() == 1 {
            return steps[0];
        }
        match self.loss {
            Loss::Sse | Loss::HalfSse => steps.iter().sum(),
            Loss::Mse | Loss::L1 | Loss::CrossEntropy => {
                let weighted: f32 = (steps.iter().enumerate())
                    .map(|(j, &l)| l * self.batch_rows(j) as f32)
                    .sum();
                weighted / self.dataset_rows() as f32
            }
        }
    }

    /// Shape of the whole dataset's inputs, `[rows, d0]`.
    pub fn x_shape(&self) -> [usize; 2] {
        [self.dataset_rows(), self.layers[0]]
    }

    /// Shape of the whole dataset's targets, `[rows, dL]`.
    pub fn y_shape(&self) -> [usize; 2] {
        [self.dataset_rows(), self.layers[self.depth()]]
    }

    /// The weight shared by the uses of a dynamic-depth net: the last hidden -> hidden one.
    pub fn shared_layer(&self) -> Option<usize> {
        self.dynamic.as_ref().map(|_| self.depth() - 2)
    }

    /// Most uses of the shared layer in one epoch (0 without dynamic depth).
    pub fn max_uses(&self) -> usize {
        self.dynamic.as_ref().map_or(0, |d| d.max)
    }

    /// How many times optimizer step `step` (0-based; the epoch, with one batch per epoch) runs
    /// the shared layer (0 without dynamic depth): the schedule's entry if one is given, else
    /// uniform in `0..=max`, drawn from a ChaCha8 generator seeded with the job's seed on stream
    /// `1 + step` (the initial state is drawn on stream 0). One generator per step makes the draw
    /// a pure function of (seed, step): the CPU and GPU paths, and a run resumed mid-way, all get
    /// the same depths.
    pub fn uses(&self, step: usize) -> usize {
        match &self.dynamic {
            None => 0,
            Some(d) if !d.schedule.is_empty() => d.schedule[step % d.schedule.len()],
            Some(d) => {
                let mut rng = seeded_stream(self.seed, Stream::Depth(step));
                let max = d.max.min(MAX_DYNAMIC_DEPTH) as u32;
                Uniform::new_inclusive(0, max).map_or(0, |u| u.sample(&mut rng) as usize)
            }
        }
    }

    /// The weights an epoch applies, in order, when the shared layer runs `uses` times: every
    /// layer once without dynamic depth, else the layers before the shared one, the shared one
    /// `uses` times, then the output layer.
    pub fn applications(&self, uses: usize) -> Vec<usize> {
        match self.shared_layer() {
            None => (0..self.depth()).collect(),
            Some(s) => (0..s)
                .chain(std::iter::repeat_n(s, uses))
                .chain([self.depth() - 1])
                .collect(),
        }
    }

    /// Floating-point operations of a step over `rows` rows that runs the shared layer `uses`
    /// times (forward and backward products, 2 per multiply-add), the input gradient of the first
    /// product excluded since it is never computed; the element-wise work (activations, loss,
    /// biases) is not counted.
    pub fn flops_of_step(&self, rows: usize, uses: usize) -> f64 {
        (self.applications(uses).iter().enumerate())
            .map(|(j, &l)| {
                let [i, o] = self.weight_shape(l);
                let mac = rows as f64 * i as f64 * o as f64;
                // forward + weight gradient, + input gradient for every product but the first
                if j == 0 {
                    4.0 * mac
                } else {
                    6.0 * mac
                }
            })
            .sum()
    }

    /// Floating-point operations of one full-batch step (see [`Job::flops_of_step`]) that runs
    /// the shared layer `uses` times.
    pub fn flops_with_uses(&self, uses: usize) -> f64 {
        self.flops_of_step(self.batch, uses)
    }

    /// Floating-point operations of one epoch (every row once, see [`Job::flops_of_step`]); with
    /// dynamic depth, the mean over the uniform draw of uses.
    pub fn flops_per_epoch(&self) -> f64 {
        let rows = self.dataset_rows();
        (self.flops_of_step(rows, 0) + self.flops_of_step(rows, self.max_uses())) / 2.0
    }

    /// Floating-point operations of the epochs `0..epochs`, with each step's drawn depth.
    pub fn flops_of_epochs(&self, epochs: usize) -> f64 {
        if self.dynamic.is_none() {
            return self.flops_per_epoch() * epochs as f64;
        }
        let steps = self.steps_per_epoch();
        (0..epochs * steps)
            .map(|s| self.flops_of_step(self.batch_rows(s % steps), self.uses(s)))
            .sum()
    }
}
