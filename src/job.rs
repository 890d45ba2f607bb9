//! The validated description of a run. A [`Job`] is built once from the command line (or by code)
//! and can be trusted afterwards: sizes are non-zero, the learning rate is finite and positive.

use crate::error::{Error, Result};
pub use crate::schedule::LrSchedule;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Uniform};
use serde::{Serialize, Serializer};
use std::fmt;

/// Default layer widths: input 1000, hidden 100, output 10.
pub const DEFAULT_LAYERS: [usize; 3] = [1000, 100, 10];
pub const DEFAULT_BATCH: usize = 64;
pub const DEFAULT_LR: f32 = 1e-6;
pub const DEFAULT_EPOCHS: usize = 500;
pub const DEFAULT_LOG_EVERY: usize = 50;
/// Most uses of the shared layer `--dynamic-depth` allows in one epoch.
pub const MAX_DYNAMIC_DEPTH: usize = 32;

/// The function between layers (none after the last), PyTorch's module of the same name. The
/// forward and backward formulas, in f32, are `cpu::activation_forward` and
/// `cpu::activation_backward`, the same operations as `shaders/activation.wgsl`.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    /// `max(z, 0)` (`nn.ReLU`)
    #[default]
    Relu,
    /// `z` for `z > 0`, else `slope·z` (`nn.LeakyReLU(negative_slope)`, slope >= 0)
    LeakyRelu(f32),
    /// `tanh(z)` (`nn.Tanh`)
    Tanh,
    /// `1 / (1 + e^-z)` (`nn.Sigmoid`)
    Sigmoid,
    /// `z·Φ(z)`, Φ the standard normal CDF through erf (`nn.GELU()`, the exact form)
    Gelu,
    /// The identity: a purely linear net.
    None,
}

/// PyTorch's default `negative_slope` of `nn.LeakyReLU`.
pub const DEFAULT_LEAKY_SLOPE: f32 = 0.01;

impl Activation {
    pub const FLAG: &'static str = "--activation";
    pub const CHOICES: &'static str = "relu, leaky-relu[:SLOPE], tanh, sigmoid, gelu, none";
    /// One of each kind (leaky ReLU with PyTorch's default slope).
    pub const ALL: [Activation; 6] = [
        Activation::Relu,
        Activation::LeakyRelu(DEFAULT_LEAKY_SLOPE),
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::Gelu,
        Activation::None,
    ];

    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        let (name, arg) = match t.split_once(':') {
            Some((n, a)) => (n.trim(), Some(a.trim())),
            None => (t.as_str(), None),
        };
        let plain = |a: Activation| match arg {
            None => Ok(a),
            Some(_) => Err(Error::arg(
                Self::FLAG,
                format!(
                    "`{s}`: `{name}` takes no parameter; valid: {}",
                    Self::CHOICES
                ),
            )),
        };
        match name {
            "relu" => plain(Activation::Relu),
            "tanh" => plain(Activation::Tanh),
            "sigmoid" => plain(Activation::Sigmoid),
            "gelu" => plain(Activation::Gelu),
            "none" => plain(Activation::None),
            "leaky-relu" => match arg.map(|a| a.parse::<f32>()) {
                None => Ok(Activation::LeakyRelu(DEFAULT_LEAKY_SLOPE)),
                Some(Ok(v)) if v.is_finite() && v >= 0.0 => Ok(Activation::LeakyRelu(v)),
                Some(_) => Err(Error::arg(
                    Self::FLAG,
                    format!(
                        "`{s}`: SLOPE must be a finite number >= 0 (the backward pass tells \
                         the sides apart by the output's sign), e.g. leaky-relu:0.01"
                    ),
                )),
            },
            _ => Err(Error::arg(
                Self::FLAG,
                format!("unknown value `{s}`; valid: {}", Self::CHOICES),
            )),
        }
    }

    /// The `ACT` override of `shaders/activation.wgsl`.
    pub fn code(self) -> u32 {
        match self {
            Activation::None => 0,
            Activation::Relu => 1,
            Activation::LeakyRelu(_) => 2,
            Activation::Tanh => 3,
            Activation::Sigmoid => 4,
            Activation::Gelu => 5,
        }
    }

    /// The leaky ReLU's slope (0 for the others).
    pub fn slope(self) -> f32 {
        match self {
            Activation::LeakyRelu(s) => s,
            _ => 0.0,
        }
    }

    /// Whether the backward pass needs the activation's input `z` rather than its output: GELU,
    /// whose output does not determine its input. The others take their derivative from the
    /// output (ReLU and leaky ReLU its sign, tanh `1 - a²`, sigmoid `a(1 - a)`).
    pub fn needs_input(self) -> bool {
        self == Activation::Gelu
    }

    pub fn describe(self) -> String {
        match self {
            Activation::Relu => "ReLU".into(),
            Activation::LeakyRelu(s) => format!("leaky ReLU (slope {s})"),
            Activation::Tanh => "tanh".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Gelu => "GELU (erf)".into(),
            Activation::None => "linear (no activation)".into(),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::Relu => f.write_str("relu"),
            Activation::LeakyRelu(s) => write!(f, "leaky-relu:{s}"),
            Activation::Tanh => f.write_str("tanh"),
            Activation::Sigmoid => f.write_str("sigmoid"),
            Activation::Gelu => f.write_str("gelu"),
            Activation::None => f.write_str("none"),
        }
    }
}

/// The loss of the prediction `p` against the target `y`, over all `N = batch * dL` elements, with
/// `d = p - y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// `Σ d²`, gradient `2d` (the default job).
    #[default]
    Sse,
    /// `Σ d² / N`, gradient `2d / N` (PyTorch's MSELoss).
    Mse,
    /// `½ Σ d²`, gradient `d` (the delta rule).
    HalfSse,
    /// `Σ |d| / N`, gradient `sign(d) / N`, 0 at `d = 0` (PyTorch's L1Loss).
    L1,
    /// PyTorch's CrossEntropyLoss over the rows of the outputs `z` (logits) against target rows
    /// `y` of probabilities (class indices are one-hot rows): per row,
    /// `Σ_j y_j·(lse(z) - z_j)` with `lse(z) = m + ln Σ_j e^(z_j - m)`, `m = max_j z_j`;
    /// the mean over the rows; gradient `(softmax(z)·Σ_j y_j - y) / rows`.
    CrossEntropy,
}

/// The optimizer's kind; its hyperparameters live in [`Optimizer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OptimizerKind {
    /// `p -= lr·g`
    #[default]
    Sgd,
    /// PyTorch's SGD with momentum: `buf = μ·buf + g; p -= lr·buf` (`p -= lr·(g + μ·buf)` with
    /// Nesterov).
    Momentum,
    /// PyTorch's Adam: `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
    /// p -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps)`.
    Adam,
    /// PyTorch's AdamW: `p = p·(1 - lr·wd)`, then Adam's step (the decay decoupled from the
    /// gradient).
    AdamW,
}

impl Named for OptimizerKind {
    const FLAG: &'static str = "--optimizer";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("sgd", OptimizerKind::Sgd),
        ("momentum", OptimizerKind::Momentum),
        ("adam", OptimizerKind::Adam),
        ("adamw", OptimizerKind::AdamW),
    ];
}

impl OptimizerKind {
    /// Whether the step is Adam's (with or without decoupled decay).
    pub fn is_adam(self) -> bool {
        matches!(self, OptimizerKind::Adam | OptimizerKind::AdamW)
    }
}

/// PyTorch's default `weight_decay` of AdamW (0 for the others).
pub const DEFAULT_ADAMW_DECAY: f32 = 0.01;

/// The optimizer and all its hyperparameters (those of other kinds are carried but unused).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Optimizer {
    #[serde(serialize_with = "by_name")]
    pub kind: OptimizerKind,
    pub momentum: f32,
    pub nesterov: bool,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Weight decay: for sgd, momentum and adam PyTorch's L2 form (`g += wd·p` before the step),
    /// for adamw the decoupled one. Applied to every parameter, biases included, as PyTorch does
    /// with one parameter group.
    pub weight_decay: f32,
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer {
            kind: OptimizerKind::Sgd,
            momentum: 0.9,
            nesterov: false,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl Optimizer {
    /// Check the hyperparameters the kind uses; errors name the flag.
    pub fn validate(&self) -> Result<()> {
        let unit = |flag: &'static str, v: f32| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                Err(Error::arg(flag, format!("must be in [0, 1), got {v}")))
            }
        };
        unit("--momentum", self.momentum)?;
        unit("--beta1", self.beta1)?;
        unit("--beta2", self.beta2)?;
        if !self.eps.is_finite() || self.eps <= 0.0 {
            return Err(Error::arg(
                "--eps",
                format!("must be a finite number > 0, got {}", self.eps),
            ));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return Err(Error::arg(
                "--weight-decay",
                format!("must be a finite number >= 0, got {}", self.weight_decay),
            ));
        }
        if self.nesterov && (self.kind != OptimizerKind::Momentum || self.momentum == 0.0) {
            return Err(Error::arg(
                "--nesterov",
                "needs --optimizer momentum with a --momentum above 0",
            ));
        }
        Ok(())
    }

    pub fn describe(&self) -> String {
        let base = self.describe_kind();
        if self.weight_decay == 0.0 {
            return base;
        }
        format!("{base}, weight decay {}", self.weight_decay)
    }

    fn describe_kind(&self) -> String {
        match self.kind {
            OptimizerKind::Sgd => "SGD".into(),
            OptimizerKind::Momentum => format!(
                "SGD{} momentum {}",
                if self.nesterov { " Nesterov" } else { "" },
                self.momentum
            ),
            OptimizerKind::Adam | OptimizerKind::AdamW => format!(
                "{} (betas {}, {}, eps {:e})",
                if self.kind == OptimizerKind::AdamW {
                    "AdamW"
                } else {
                    "Adam"
                },
                self.beta1,
                self.beta2,
                self.eps
            ),
        }
    }
}

/// How the initial weights are drawn (x and y are always standard normal).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum InitScheme {
    /// Standard normal (the default job).
    #[default]
    Normal,
    /// Uniform in ±1/sqrt(fan_in): PyTorch's nn.Linear default.
    Torch,
    /// Glorot/Xavier uniform: ±sqrt(6 / (fan_in + fan_out)).
    Xavier,
    /// He/Kaiming normal for ReLU: standard deviation sqrt(2 / fan_in).
    Kaiming,
    /// Every weight the same value.
    Constant(f32),
}

/// Names on the command line and in JSON, with a one-line description each, for parsing and for
/// listing the valid choices in error messages.
pub trait Named: Sized + Copy + PartialEq + 'static {
    const FLAG: &'static str;
    const CHOICES: &'static [(&'static str, Self)];

    fn name(&self) -> String {
        Self::CHOICES
            .iter()
            .find(|(_, v)| v == self)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default()
    }

    fn choices() -> String {
        Self::CHOICES
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Self::CHOICES
            .iter()
            .find(|(n, _)| *n == t)
            .map(|(_, v)| *v)
            .ok_or_else(|| {
                Error::arg(
                    Self::FLAG,
                    format!("unknown value `{s}`; valid: {}", Self::choices()),
                )
            })
    }
}

impl Named for Loss {
    const FLAG: &'static str = "--loss";
    const CHOICES: &'static [(&'static str, Self)] = &[
        ("sse", Loss::Sse),
        ("mse", Loss::Mse),
        ("half-sse", Loss::HalfSse),
        ("l1", Loss::L1),
        ("cross-entropy", Loss::CrossEntropy),
    ];
}

impl Loss {
    /// What the sum of the per-element values (`d²`, or `|d|` for L1; per row for
    /// cross-entropy) of a `[rows, cols]` output is multiplied by.
    pub fn scale(self, rows: usize, cols: usize) -> f32 {
        match self {
            Loss::Sse => 1.0,
            Loss::HalfSse => 0.5,
            Loss::Mse | Loss::L1 => 1.0 / (rows * cols) as f32,
            Loss::CrossEntropy => 1.0 / rows as f32,
        }
    }

    /// What `d` (or `sign(d)` for L1, `softmax·Σy - y` for cross-entropy) is multiplied by to
    /// give the gradient of a `[rows, cols]` output.
    pub fn grad_coef(self, rows: usize, cols: usize) -> f32 {
        match self {
            Loss::Sse => 2.0,
            Loss::HalfSse => 1.0,
            Loss::Mse => 2.0 / (rows * cols) as f32,
            Loss::L1 => 1.0 / (rows * cols) as f32,
            Loss::CrossEntropy => 1.0 / rows as f32,
        }
    }

    /// Whether the loss treats each output row as a distribution over classes (cross-entropy):
    /// its targets are probability rows (or class indices, made one-hot).
    pub fn is_classification(self) -> bool {
        self == Loss::CrossEntropy
    }

    /// Whether the per-element value is `|d|` (L1) rather than `d²`.
    pub fn is_abs(self) -> bool {
        self == Loss::L1
    }

    pub fn describe(self) -> &'static str {
        match self {
            Loss::Sse => "sum of squared errors",
            Loss::Mse => "mean squared error",
            Loss::HalfSse => "half the sum of squared errors",
            Loss::L1 => "mean absolute error",
            Loss::CrossEntropy => "softmax cross-entropy (mean over rows)",
        }
    }
}

impl InitScheme {
    pub const FLAG: &'static str = "--init-scheme";
    pub const CHOICES: &'static str = "normal, torch, xavier, kaiming, constant:<value>";

    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        Ok(match t.as_str() {
            "normal" => InitScheme::Normal,
            "torch" => InitScheme::Torch,
            "xavier" => InitScheme::Xavier,
            "kaiming" => InitScheme::Kaiming,
            _ => match t.strip_prefix("constant:") {
                Some(v) => match v.trim().parse::<f32>() {
                    Ok(c) if c.is_finite() => InitScheme::Constant(c),
                    _ => {
                        return Err(Error::arg(
                            Self::FLAG,
                            format!(
                                "`{s}`: constant:<value> needs a finite number, e.g. constant:0.5"
                            ),
                        ))
                    }
                },
                None => {
                    return Err(Error::arg(
                        Self::FLAG,
                        format!("unknown value `{s}`; valid: {}", Self::CHOICES),
                    ))
                }
            },
        })
    }
}

impl fmt::Display for InitScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitScheme::Normal => f.write_str("normal"),
            InitScheme::Torch => f.write_str("torch"),
            InitScheme::Xavier => f.write_str("xavier"),
            InitScheme::Kaiming => f.write_str("kaiming"),
            InitScheme::Constant(c) => write!(f, "constant:{c}"),
        }
    }
}

fn by_name<T: Named, S: Serializer>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&v.name())
}

fn by_display<T: fmt::Display, S: Serializer>(v: &T, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

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

/// The streams of a run's ChaCha8 generator (seeded with the job's seed), one per kind of draw,
/// so that each draw is a pure function of the seed and its index.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// x, y and the initial parameters (`init::HostState`): stream 0.
    Init,
    /// The dynamic depth of step `n`: stream 1 + n.
    Depth(usize),
    /// The row order of epoch `n`: stream 2^32 + n.
    Order(usize),
    /// Which rows `--val-split` holds out: stream 2^33.
    Holdout,
}

/// A ChaCha8 generator seeded with `seed`, at the start of `stream`.
pub fn seeded_stream(seed: u64, stream: Stream) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(match stream {
        Stream::Init => 0,
        Stream::Depth(n) => 1 + n as u64,
        Stream::Order(n) => (1 << 32) + n as u64,
        Stream::Holdout => 1 << 33,
    });
    rng
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
        if self.rows == Some(0) {
            return Err(Error::arg("--rows", "the dataset must have at least 1 row"));
        }
        if self.dataset_rows() < self.batch {
            return Err(Error::arg(
                "--batch",
                format!(
                    "{} is more than the dataset's {} rows",
                    self.batch,
                    self.dataset_rows()
                ),
            ));
        }
        if self.epochs == 0 {
            return Err(Error::arg("--epochs", "must be at least 1"));
        }
        self.check_host_size()?;
        if self.epochs > MAX_EPOCHS {
            return Err(Error::arg(
                "--epochs",
                format!(
                    "{} is more than the most, 2^{} = {MAX_EPOCHS}",
                    self.epochs,
                    MAX_EPOCHS.trailing_zeros()
                ),
            ));
        }
        if self.epochs.checked_mul(self.steps_per_epoch()).is_none() {
            return Err(Error::arg(
                "--epochs",
                format!(
                    "{} epochs of {} steps each are more steps than can be counted",
                    self.epochs,
                    self.steps_per_epoch()
                ),
            ));
        }
        self.optimizer.validate()?;
        if self.loss.is_classification() && self.layers[self.depth()] < 2 {
            return Err(Error::arg(
                "--loss",
                format!(
                    "cross-entropy needs at least 2 outputs (classes); --layers {:?} has {}",
                    self.layers,
                    self.layers[self.depth()]
                ),
            ));
        }
        if let Some(d) = &self.dynamic {
            self.validate_dynamic(d)?;
        }
        if let DataSource::Fixed { x, y } = &self.data {
            let [xr, xc] = self.x_shape();
            let [yr, yc] = self.y_shape();
            if x.len() != xr * xc || y.len() != yr * yc {
                return Err(Error::arg(
                    "--preset",
                    format!(
                        "its fixed x ({} values) and y ({} values) do not fit --batch {} and \
                         --layers {:?}; keep the preset's sizes",
                        x.len(),
                        y.len(),
                        self.batch,
                        self.layers
                    ),
                ));
            }
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
        let rows = self.dataset_rows();
        for d in [self.layers[0], self.layers[self.depth()]] {
            if rows.checked_mul(d).is_none_or(too_big) {
                return Err(Error::arg(
                    "--rows",
                    format!("a dataset of {rows}x{d} values is too large"),
                ));
            }
        }
        Ok(())
    }
}

impl Job {
    fn validate_dynamic(&self, d: &DynamicDepth) -> Result<()> {
        let flag = "--dynamic-depth";
        let widths: Vec<String> = self.layers.iter().map(|w| w.to_string()).collect();
        let depth = self.depth();
        if depth < 3 || self.layers[depth - 2] != self.layers[depth - 1] {
            return Err(Error::arg(
                flag,
                format!(
                    "needs a hidden -> hidden layer to share: at least two hidden layers, the \
                     last two of the same width (e.g. --layers 1000,100,100,10, as in the \
                     `dynamic` preset); --layers {} has {}",
                    widths.join(","),
                    if depth < 3 {
                        format!(
                            "{} hidden layer{}",
                            depth - 1,
                            if depth == 2 { "" } else { "s" }
                        )
                    } else {
                        format!(
                            "{} -> {} there",
                            self.layers[depth - 2],
                            self.layers[depth - 1]
                        )
                    }
                ),
            ));
        }
        if d.max == 0 || d.max > MAX_DYNAMIC_DEPTH {
            return Err(Error::arg(
                flag,
                format!(
                    "must be in 1..={MAX_DYNAMIC_DEPTH}, got {} (without the flag every layer \
                     runs once)",
                    d.max
                ),
            ));
        }
        if let Some(&u) = d.schedule.iter().find(|&&u| u > d.max) {
            return Err(Error::arg(
                flag,
                format!("the schedule's {u} uses exceed the maximum {}", d.max),
            ));
        }
        Ok(())
    }
}

/// A named starting point for a job; any flag given with it overrides its setting.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub job: fn() -> Job,
}

/// Every preset, as `gpu-train presets` lists them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tutorial",
        about: "the default job: batch 64, 1000 -> 100 -> 10, ReLU, no bias, standard normal \
                init, sum of squared errors, SGD lr 1e-6, 500 epochs",
        job: Job::default,
    },
    Preset {
        name: "bias-sgd",
        about: "the tutorial net as nn.Linear layers: biases, PyTorch's init, sum of squared \
                errors, SGD lr 1e-4",
        job: || Job {
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            ..Job::default()
        },
    },
    Preset {
        name: "adam",
        about: "the tutorial net as nn.Linear layers (biases, PyTorch's init), sum of squared \
                errors, Adam lr 1e-4",
        job: || Job {
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                ..Optimizer::default()
            },
            ..Job::default()
        },
    },
    Preset {
        name: "dynamic",
        about: "PyTorch's control-flow example: 1000 -> 100 -> [100 -> 100 shared, run 0-3 times \
                per epoch] -> 10 with biases and PyTorch's init, sum of squared errors, SGD \
                momentum 0.9, lr 1e-4",
        job: || Job {
            layers: vec![1000, 100, 100, 10],
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            optimizer: Optimizer {
                kind: OptimizerKind::Momentum,
                momentum: 0.9,
                ..Optimizer::default()
            },
            dynamic: Some(DynamicDepth {
                max: 3,
                schedule: Vec::new(),
            }),
            ..Job::default()
        },
    },
    Preset {
        name: "linear-delta",
        about: "the hand-worked linear net 2 -> 3 -> 2 -> 1, every weight 0.5, x = [1, 1], \
                y = [1], half the sum of squared errors (the delta rule), SGD lr 0.1, 50 epochs",
        job: || Job {
            layers: vec![2, 3, 2, 1],
            batch: 1,
            lr: 0.1,
            epochs: 50,
            log_every: 5,
            activation: Activation::None,
            loss: Loss::HalfSse,
            init_scheme: InitScheme::Constant(0.5),
            data: DataSource::Fixed {
                x: vec![1.0, 1.0],
                y: vec![1.0],
            },
            ..Job::default()
        },
    },
    Preset {
        name: "l1",
        about: "the tutorial net with the mean absolute error (PyTorch's L1Loss), SGD lr 0.1",
        job: || Job {
            loss: Loss::L1,
            lr: 0.1,
            ..Job::default()
        },
    },
    Preset {
        name: "digits",
        about:
            "a classifier for 8x8 images of digits (64 -> 32 -> 10, the shape of scikit-learn's \
                digits; give the data with --x/--y): biases, PyTorch's init, ReLU, softmax \
                cross-entropy, Adam lr 1e-2, mini-batches of 128, 30 epochs",
        job: || Job {
            layers: vec![64, 32, 10],
            batch: 128,
            lr: 1e-2,
            epochs: 30,
            log_every: 5,
            bias: true,
            init_scheme: InitScheme::Torch,
            loss: Loss::CrossEntropy,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                ..Optimizer::default()
            },
            ..Job::default()
        },
    },
];

/// The job a preset starts from.
pub fn preset(name: &str) -> Result<Job> {
    let t = name.trim().to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|p| p.name == t)
        .map(|p| (p.job)())
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::arg(
                "--preset",
                format!("unknown preset `{name}`; valid: {}", names.join(", ")),
            )
        })
}

/// Parse a positive integer flag value.
pub fn parse_count(flag: &'static str, s: &str) -> Result<usize> {
    let t = s.trim();
    t.parse().map_err(|_| {
        let digits = !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        let why = if digits {
            format!("`{s}` is too large a number")
        } else {
            format!("`{s}` is not a whole number")
        };
        Error::arg(flag, why)
    })
}

/// The most epochs a run may have (2^40: about 35 years at one epoch per millisecond). A run's
/// memory does not grow with its length (see [`crate::thinned`]).
pub const MAX_EPOCHS: usize = if usize::BITS >= 64 {
    (1u64 << 40) as usize
} else {
    // A 32-bit target (the browser): 2^30.
    1 << 30
};

/// The most bytes a job's dataset and parameters may take on the host (they are held more than
/// once: the initial state, the device's copy, the optimizer's state): far past any machine's
/// memory natively, so that only an absurd job is refused before it is drawn; 1 GiB in the
/// browser, whose wasm32 memory is at most 4 GiB.
pub const MAX_HOST_BYTES: u64 = if usize::BITS >= 64 { 1 << 40 } else { 1 << 30 };

impl Job {
    /// The bytes x, y, the weights and the biases take on the host (None past u64).
    pub fn host_bytes(&self) -> Option<u64> {
        let rows = self.dataset_rows() as u64;
        let d = &self.layers;
        let (d0, dl) = (*d.first()? as u64, *d.last()? as u64);
        let elements = (d.windows(2))
            .try_fold(0u64, |acc, w| {
                let (a, b) = (w[0] as u64, w[1] as u64);
                acc.checked_add(a.checked_mul(b)?.checked_add(b)?)
            })
            .and_then(|p| p.checked_add(rows.checked_mul(d0.checked_add(dl)?)?));
        elements.and_then(|e| e.checked_mul(4))
    }

    /// Refuse a job whose x, y, weights and biases would take more than [`MAX_HOST_BYTES`]
    /// (or overflow counting them), naming the size, before anything is allocated.
    fn check_host_size(&self) -> Result<()> {
        let d = &self.layers;
        let rows = self.dataset_rows();
        let bytes = self.host_bytes();
        match bytes {
            Some(b) if b <= MAX_HOST_BYTES => Ok(()),
            _ => Err(Error::arg(
                "--layers",
                format!(
                    "{} rows x [{}]: the dataset and the weights would take {} on the host, more \
                     than the most this build allows ({} MiB)",
                    rows,
                    (d.iter().map(|w| w.to_string()).collect::<Vec<_>>()).join(", "),
                    bytes.map_or_else(
                        || "more bytes than can be counted".to_string(),
                        |b| format!("{} MiB", b >> 20)
                    ),
                    MAX_HOST_BYTES >> 20
                ),
            )),
        }
    }
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
    parse_f32("--lr", s)
}

/// Parse a number flag.
pub fn parse_f32(flag: &'static str, s: &str) -> Result<f32> {
    s.trim()
        .parse::<f32>()
        .map_err(|_| Error::arg(flag, format!("`{s}` is not a number")))
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

    #[test]
    fn names_parse_and_list_the_valid_choices() {
        assert_eq!(Loss::parse("Half-SSE").unwrap(), Loss::HalfSse);
        assert_eq!(Loss::HalfSse.name(), "half-sse");
        assert_eq!(Activation::parse("none").unwrap(), Activation::None);
        let e = Loss::parse("huber").unwrap_err().to_string();
        assert!(
            e.contains("--loss") && e.contains("sse, mse, half-sse, l1"),
            "{e}"
        );
        assert_eq!(
            InitScheme::parse("constant:0.5").unwrap(),
            InitScheme::Constant(0.5)
        );
        assert_eq!(InitScheme::Constant(0.5).to_string(), "constant:0.5");
        for bad in ["constant:", "constant:x", "constant:inf", "uniform"] {
            let e = InitScheme::parse(bad).unwrap_err().to_string();
            assert!(e.contains("--init-scheme"), "{bad}: {e}");
        }
    }

    #[test]
    fn every_preset_is_valid_and_unknown_ones_list_the_names() {
        for p in PRESETS {
            (p.job)()
                .validate()
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        assert_eq!(preset("tutorial").unwrap(), Job::default());
        let e = preset("nope").unwrap_err().to_string();
        assert!(e.contains("--preset") && e.contains("linear-delta"), "{e}");
        // A fixed-data preset refuses sizes its data does not fit.
        let j = Job {
            batch: 2,
            ..preset("linear-delta").unwrap()
        };
        assert!(j.validate().unwrap_err().to_string().contains("--preset"));
    }

    fn dynamic(layers: &[usize], max: usize) -> Job {
        Job {
            layers: layers.to_vec(),
            dynamic: Some(DynamicDepth {
                max,
                schedule: Vec::new(),
            }),
            ..Job::default()
        }
    }

    #[test]
    fn dynamic_depth_draws_are_seeded_uniform_and_need_a_shared_layer() {
        let j = dynamic(&[6, 4, 4, 2], 3);
        j.validate().unwrap();
        assert_eq!(j.shared_layer(), Some(1));
        assert_eq!(j.applications(0), vec![0, 2]);
        assert_eq!(j.applications(3), vec![0, 1, 1, 1, 2]);
        let draws: Vec<usize> = (0..4000).map(|e| j.uses(e)).collect();
        assert_eq!(draws, (0..4000).map(|e| j.uses(e)).collect::<Vec<_>>());
        for k in 0..=3 {
            let n = draws.iter().filter(|&&u| u == k).count();
            assert!((900..1100).contains(&n), "{k} drawn {n} times of 4000");
        }
        let other = Job {
            seed: 1,
            ..j.clone()
        };
        assert_ne!(
            draws[..64],
            (0..64).map(|e| other.uses(e)).collect::<Vec<_>>()[..]
        );
        // Flops count each use; the mean is over the uniform draw.
        let per_use = 6.0 * 64.0 * 16.0;
        assert_eq!(j.flops_with_uses(2) - j.flops_with_uses(0), 2.0 * per_use);
        assert_eq!(j.flops_per_epoch(), j.flops_with_uses(0) + 1.5 * per_use);
        // A schedule replaces the draws, cycled.
        let s = Job {
            dynamic: Some(DynamicDepth {
                max: 3,
                schedule: vec![2, 0],
            }),
            ..j.clone()
        };
        assert_eq!((0..4).map(|e| s.uses(e)).collect::<Vec<_>>(), [2, 0, 2, 0]);
        for (layers, max) in [
            (&[6, 4, 2][..], 3),
            (&[6, 2][..], 3),
            (&[6, 4, 5, 2][..], 3),
        ] {
            let e = dynamic(layers, max).validate().unwrap_err().to_string();
            assert!(e.contains("--dynamic-depth") && e.contains("hidden"), "{e}");
        }
        for max in [0, MAX_DYNAMIC_DEPTH + 1] {
            let e = dynamic(&[6, 4, 4, 2], max)
                .validate()
                .unwrap_err()
                .to_string();
            assert!(e.contains("--dynamic-depth"), "{e}");
        }
        // A static net applies every layer once.
        assert_eq!(Job::default().applications(0), vec![0, 1]);
        assert_eq!(Job::default().uses(7), 0);
    }

    #[test]
    fn each_epoch_visits_every_row_once_in_a_seeded_order() {
        let j = Job {
            rows: Some(1001),
            batch: 64,
            ..Job::default()
        };
        assert_eq!(j.steps_per_epoch(), 16);
        assert_eq!((j.batch_rows(0), j.last_batch_rows()), (64, 1001 - 15 * 64));
        let (a, b) = (j.order(0), j.order(1));
        for o in [&a, &b] {
            let mut sorted = o.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..1001).collect::<Vec<u32>>());
        }
        assert_ne!(a, b, "a new order every epoch");
        assert_ne!(a, (0..1001).collect::<Vec<u32>>(), "shuffled");
        assert_eq!(a, j.order(0), "seeded");
        assert_ne!(
            a,
            Job {
                seed: 1,
                ..j.clone()
            }
            .order(0)
        );
        let plain = Job {
            shuffle: false,
            ..j.clone()
        };
        assert_eq!(plain.order(3), (0..1001).collect::<Vec<u32>>());
        // One batch: the order is the rows' own (it cannot change the math).
        assert_eq!(Job::default().order(5), (0..64).collect::<Vec<u32>>());
        // The epoch's loss: summed for sse, weighted by rows for the means.
        let steps: Vec<f32> = (0..16).map(|i| i as f32).collect();
        assert_eq!(j.epoch_loss(&steps), 120.0);
        let mse = Job {
            loss: Loss::Mse,
            ..j.clone()
        };
        let want = (0..15).map(|i| i as f32 * 64.0).sum::<f32>() + 15.0 * 41.0;
        assert_eq!(mse.epoch_loss(&steps), want / 1001.0);
        assert_eq!(mse.epoch_loss(&[2.5]), 2.5);
    }

    #[test]
    fn loss_scales_and_gradient_coefficients() {
        let sg = |l: Loss| (l.scale(2, 4), l.grad_coef(2, 4));
        assert_eq!(sg(Loss::Sse), (1.0, 2.0));
        assert_eq!(sg(Loss::HalfSse), (0.5, 1.0));
        assert_eq!(sg(Loss::Mse), (0.125, 0.25));
        assert_eq!(sg(Loss::L1), (0.125, 0.125));
        // Cross-entropy is a mean over rows.
        assert_eq!(sg(Loss::CrossEntropy), (0.5, 0.5));
    }
}
