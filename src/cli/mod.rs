//! Command-line definitions (clap). Each flag's value is parsed into its type here, once, by the
//! value parsers of [`values`] (clap's message names the flag and the value, ours what is wrong
//! with it); the job is validated into a [`Job`] by `job::validate`, whose errors name the flag.
//!
//! [`Job`]: crate::job::Job

use crate::error::{Error, Result};
use crate::gpu::context::DeviceChoice;
use crate::job::{Activation, InitScheme, Loss, OptimizerKind};
use crate::schedule::{Schedule, Warmup};
use crate::spec::{DynamicSpec, JobSpec, OptimizerSpec};
use crate::sweep::Value;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// Train small fully connected networks on any GPU through WebGPU compute shaders, with a CPU
/// reference path that the GPU results are checked against.
///
/// With no arguments, trains the classic two-layer ReLU net (batch 64, 1000 -> 100 -> 10, sum of
/// squared errors, SGD lr 1e-6, 500 epochs) on the best device, printing the loss every 50 epochs.
#[derive(Debug, Parser)]
#[command(name = "gpu-train", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub train: TrainArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List every GPU adapter (index, name, vendor, type, backend, driver) and the one `--device
    /// auto` would choose.
    Devices,
    /// List the presets (`--preset NAME`), one line each.
    Presets,
    /// Score a checkpoint (--save) on a dataset: its loss, and its accuracy for one-hot targets.
    Eval(EvalArgs),
    /// Write a checkpoint's predictions for the inputs of --x as a .npy file [rows, outputs].
    Predict(PredictArgs),
    /// Draw the loss curves of one or more saved histories (`--history` files, CSV or JSON) into
    /// one plot, to compare devices or settings.
    Plot(PlotArgs),
    /// Benchmark every device (each GPU adapter and the CPU path) on the same verified suite: the
    /// default job, a size sweep of the training step, the matmul kernel at square and skinny
    /// shapes against a naive reference kernel. `bench compare a.json b.json` compares results.
    Bench(BenchArgs),
    /// Measure every matmul variant on an adapter for the products of a net (and 1024³), check
    /// each against the CPU, and cache the fastest correct one per shape for that adapter and
    /// driver.
    Tune(TuneArgs),
    /// Check every kernel, variant, layout and epilogue on awkward shapes against the CPU
    /// reference with a stated error bound, then a few training steps of each optimizer and loss:
    /// does this GPU and driver compute right? Exits 1 on any failure.
    Verify(VerifyArgs),
    /// Train many variants of one job at once, one model each in the same submissions: any of
    /// --lr, --seed, --weight-decay, --momentum, --init-scheme, --beta1, --beta2, --eps,
    /// --lr-schedule, --warmup takes a comma-separated list, and the variants are every
    /// combination. Each variant's losses and parameters are those of its own run with the same
    /// flags, bit for bit. Writes DIR/sweep.json, DIR/curves.svg and DIR/<k>/summary.json.
    Sweep(Box<SweepArgs>),
}

#[derive(Debug, Args, Clone)]
pub struct SweepArgs {
    #[command(flatten)]
    pub job: JobArgs,

    #[command(flatten)]
    pub run: RunArgs,

    /// Where the results go: sweep.json (the index), curves.svg (every variant's loss curve) and
    /// a directory per variant, <k>/summary.json (and <k>/model.safetensors with --save).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Write into a --out directory that already holds files.
    #[arg(long)]
    pub force: bool,

    /// Refuse a sweep of more variants than this.
    #[arg(long, value_name = "N", default_value_t = crate::sweep::MAX_VARIANTS, value_parser = values::count)]
    pub max_variants: usize,

    /// Write every variant's checkpoint (as a run's --save: PyTorch's state_dict names) to
    /// DIR/<k>/model.safetensors, its optimizer's state beside it.
    #[arg(long)]
    pub save: bool,

    /// Print only the table of results (no log lines, no progress bar).
    #[arg(long, short)]
    pub quiet: bool,
}

#[derive(Debug, Args, Clone)]
pub struct VerifyArgs {
    /// An adapter to verify (auto, gpu, an index or a name); repeat for several [default: every
    /// adapter that can run compute shaders].
    #[arg(long = "device", value_name = "DEVICE", value_parser = values::device)]
    pub devices: Vec<DeviceChoice>,

    /// A reduced set of shapes and training runs, in the layout training would take unless
    /// --layout names one (under a minute on a software adapter).
    #[arg(long)]
    pub quick: bool,

    /// Stop at the first check that fails (exit 1 as always): for a kernel being edited (see
    /// GPU_TRAIN_SHADER_DIR) and the mutation tests, where the first failure says enough.
    #[arg(long)]
    pub fail_fast: bool,

    /// Run only these families of checks, comma-separated: loss_reduce, bias_update,
    /// cross_entropy, matmul, train, sweep [default: all].
    #[arg(long, value_name = "FAMILY,...", value_delimiter = ',', value_parser = values::verify_family)]
    pub only: Vec<crate::verify::Family>,

    /// Write every check and the adapters' identity as a JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub json: Option<PathBuf>,

    /// `--layout auto` verifies every layout the adapter can run (with --quick, the one training
    /// would take); `texels` or `buffer` that one alone.
    #[command(flatten)]
    pub gpu: GpuArgs,
}

#[derive(Debug, Args, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub action: Option<BenchAction>,

    /// A device to benchmark (auto, cpu, gpu, an index or a name); repeat for several
    /// [default: every adapter that can run compute shaders, and the CPU].
    #[arg(long = "device", value_name = "DEVICE", value_parser = values::device)]
    pub devices: Vec<DeviceChoice>,

    /// A reduced suite (about a minute on a software adapter), for smoke tests and CI.
    #[arg(long)]
    pub quick: bool,

    /// Write every configuration and sample as a versioned JSON file.
    #[arg(long, value_name = "FILE.json")]
    pub out: Option<PathBuf>,

    #[command(flatten)]
    pub gpu: GpuArgs,
}

#[derive(Debug, Subcommand, Clone)]
pub enum BenchAction {
    /// Print results files (`bench --out`) side by side, as ratios to the first file's first
    /// device.
    Compare(CompareArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CompareArgs {
    /// Results files written by `gpu-train bench --out`.
    #[arg(required = true, value_name = "FILE.json")]
    pub files: Vec<PathBuf>,

    /// Also draw the ratios as a bar chart (SVG, or PNG for a .png path).
    #[arg(long, value_name = "FILE.svg")]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct TuneArgs {
    /// The adapter to tune (auto, gpu, an index or a name).
    #[arg(long, default_value = "auto", value_name = "DEVICE", value_parser = values::device)]
    pub device: DeviceChoice,

    /// Tune the products of this net [default: 1000,100,10].
    #[arg(long, value_parser = values::layers, value_name = "D0,D1,...")]
    pub layers: Option<values::Widths>,

    /// ... at this batch size [default: 64].
    #[arg(long, value_parser = values::count, value_name = "N")]
    pub batch: Option<usize>,

    /// Also tune a plain product MxNxK (repeatable) [default: 1024x1024x1024].
    #[arg(long = "shape", value_name = "MxNxK", value_parser = values::shape)]
    pub shapes: Vec<(usize, usize, usize)>,

    #[command(flatten)]
    pub gpu: GpuArgs,
}

/// How the GPU is used, for every command that runs kernels.
#[derive(Debug, Args, Clone, Default)]
pub struct GpuArgs {
    /// Where the matrices live on the GPU: `auto` (texels on software adapters such as lavapipe,
    /// buffer on every other; `verify` checks every layout), `texels` (rgba32float storage textures, weights ping-ponged) or
    /// `buffer` (vec4 storage buffers, weights updated in place: real GPUs and browsers).
    #[arg(long, value_enum, default_value_t = LayoutArg::Auto)]
    pub layout: LayoutArg,

    /// The device limits to request: `adapter` (everything the adapter offers) or `webgpu`
    /// (WebGPU's defaults, what a browser grants: 8 storage buffers and 4 storage textures per
    /// stage, 128 MiB per binding, 8192 texture side).
    #[arg(long, value_enum, default_value_t = LimitsArg::Adapter)]
    pub limits: LimitsArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LayoutArg {
    #[default]
    Auto,
    Texels,
    Buffer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum TuneArg {
    #[default]
    Auto,
    Always,
    Never,
}

impl From<TuneArg> for crate::gpu::tune::TuneMode {
    fn from(t: TuneArg) -> Self {
        match t {
            TuneArg::Auto => Self::Auto,
            TuneArg::Always => Self::Always,
            TuneArg::Never => Self::Never,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LimitsArg {
    #[default]
    Adapter,
    Webgpu,
}

impl GpuArgs {
    /// The library's options.
    pub fn options(&self) -> crate::gpu::GpuOptions {
        use crate::gpu::{layout::Layout, LimitsChoice};
        crate::gpu::GpuOptions {
            layout: match self.layout {
                LayoutArg::Auto => None,
                LayoutArg::Texels => Some(Layout::Texels),
                LayoutArg::Buffer => Some(Layout::Buffer),
            },
            limits: match self.limits {
                LimitsArg::Adapter => LimitsChoice::Adapter,
                LimitsArg::Webgpu => LimitsChoice::Webgpu,
            },
        }
    }
}

#[derive(Debug, Args, Clone)]
pub struct EvalArgs {
    /// A checkpoint written by --save.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,

    #[command(flatten)]
    pub dataset: DatasetArgs,
}

/// A dataset from files: `--x`/`--y` (.npy) or `--data`/`--targets` (CSV).
#[derive(Debug, Args, Clone)]
pub struct DatasetArgs {
    /// Inputs from a 2-D .npy file (f32 or f64, C order), one row per sample; with --y.
    #[arg(long, value_name = "FILE.npy")]
    pub x: Option<PathBuf>,

    /// Targets from a .npy file with as many rows as --x: 2-D floats, or integer class indices
    /// ([rows] or [rows, 1]) taken as one-hot rows.
    #[arg(long, value_name = "FILE.npy")]
    pub y: Option<PathBuf>,

    /// Inputs and targets from a CSV file of numbers (a first line without numbers is a header);
    /// the last --targets columns are the targets.
    #[arg(long, value_name = "FILE.csv")]
    pub data: Option<PathBuf>,

    /// How many of the last columns of --data are targets.
    #[arg(long, value_parser = values::count, value_name = "K")]
    pub targets: Option<usize>,
}

#[derive(Debug, Args, Clone)]
pub struct PredictArgs {
    /// A checkpoint written by --save.
    #[arg(long, value_name = "FILE")]
    pub checkpoint: PathBuf,

    /// Inputs (.npy, [rows, inputs]).
    #[arg(long, value_name = "FILE.npy")]
    pub x: PathBuf,

    /// Where to write the predictions (.npy): f32 [rows, outputs], or int64 [rows] for
    /// `--as classes`.
    #[arg(long, short, value_name = "FILE.npy")]
    pub output: PathBuf,

    /// What to write: `outputs` (the net's raw outputs; a cross-entropy net's logits),
    /// `probabilities` (the softmax of each row) or `classes` (each row's largest output, as
    /// class indices) [default: outputs].
    #[arg(
        long = "as",
        value_name = "KIND",
        value_enum,
        ignore_case = true,
        default_value_t
    )]
    pub kind: Predict,
}

/// What `predict` writes (`--as`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Predict {
    /// The net's raw outputs (a cross-entropy net's logits).
    #[default]
    Outputs,
    /// The softmax of each row.
    Probabilities,
    /// Each row's largest output, as class indices.
    Classes,
}

#[derive(Debug, Args, Clone)]
pub struct PlotArgs {
    /// History files written by `--history` (CSV or JSON), one curve each.
    #[arg(required = true, value_name = "HISTORY")]
    pub histories: Vec<PathBuf>,

    /// The plot: SVG, or PNG for a .png name.
    #[arg(long, short, value_name = "FILE")]
    pub output: PathBuf,

    /// Title of the plot [default: loss].
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

/// A training run: the job, the device and the outputs.
#[derive(Debug, Args, Clone)]
pub struct TrainArgs {
    #[command(flatten)]
    pub job: JobArgs,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub out: OutputArgs,
}

/// The job: the net, its data and its training, shared by a training run and a sweep. The
/// settings a sweep can vary (`--lr`, `--seed`, `--weight-decay`, `--momentum`, `--init-scheme`,
/// `--beta1`, `--beta2`, `--eps`, `--lr-schedule`, `--warmup`) take a comma-separated list there;
/// a training run takes one value of each.
#[derive(Debug, Args, Clone)]
pub struct JobArgs {
    /// Start from a named job (see `gpu-train presets`); every other flag given overrides its
    /// setting [default: tutorial].
    #[arg(long, value_name = "NAME")]
    pub preset: Option<String>,

    /// Seed of the generator that draws x, y and the initial weights (identical on every device)
    /// [default: 0].
    #[arg(long, value_name = "SEED", value_parser = values::seeds)]
    pub seed: Option<values::List<u64>>,

    /// Number of epochs (full passes over the dataset, one optimizer step per batch)
    /// [default: 500].
    #[arg(long, value_parser = values::count, value_name = "N", allow_hyphen_values = true)]
    pub epochs: Option<usize>,

    /// Rows per optimizer step. A dataset with more rows is trained in mini-batches of this many
    /// rows, the last one shorter if need be [default: 64 (at most the dataset's rows), or the
    /// row count of the --init files].
    #[arg(long, value_parser = values::count, value_name = "N", allow_hyphen_values = true)]
    pub batch: Option<usize>,

    #[command(flatten)]
    pub dataset: DatasetArgs,

    /// Hold out this fraction of the dataset's rows (a seeded choice) and report the loss on them
    /// (and the accuracy, for one-hot targets) at every logged epoch and at the end.
    #[arg(long, value_parser = values::fraction, value_name = "FRACTION")]
    pub val_split: Option<f64>,

    /// A held-out set's inputs (.npy), scored like --val-split's; with --val-y.
    #[arg(long, value_name = "FILE.npy")]
    pub val_x: Option<PathBuf>,

    /// A held-out set's targets (.npy).
    #[arg(long, value_name = "FILE.npy")]
    pub val_y: Option<PathBuf>,

    /// Rows of the generated (standard normal) dataset, trained in mini-batches of --batch rows
    /// [default: one batch].
    #[arg(long, value_parser = values::count, value_name = "N", allow_hyphen_values = true)]
    pub rows: Option<usize>,

    /// With mini-batches, visit the rows in a new seeded order every epoch (the default).
    #[arg(long, overrides_with = "no_shuffle")]
    pub shuffle: bool,

    /// With mini-batches, visit the rows in their order every epoch.
    #[arg(long, overrides_with = "shuffle")]
    pub no_shuffle: bool,

    /// Layer widths from input to output, comma-separated; the activation between layers, none
    /// after the last [default: 1000,100,10, or the shapes of the --init files].
    #[arg(long, value_parser = values::layers, value_name = "D0,D1,...")]
    pub layers: Option<values::Widths>,

    /// Learning rate (finite, > 0) [default: 1e-6].
    #[arg(long, value_parser = values::reals, value_name = "LR", allow_hyphen_values = true)]
    pub lr: Option<values::List<f32>>,

    /// Function between layers, as PyTorch's module of that name: `relu` (max(z, 0)),
    /// `leaky-relu[:SLOPE]` (z, or SLOPE·z below 0; SLOPE >= 0, default 0.01), `tanh`, `sigmoid`,
    /// `gelu` (z·Φ(z), the exact erf form), or `none` (a purely linear net). There is none after
    /// the last layer [default: relu].
    #[arg(long, value_parser = values::activation, value_name = "NAME")]
    pub activation: Option<Activation>,

    /// Loss, with d = prediction - target over all N = batch x output elements: `sse` (sum of d²),
    /// `mse` (mean of d², PyTorch's MSELoss), `half-sse` (½ sum of d², gradient d: the delta
    /// rule), `l1` (mean of |d|, PyTorch's L1Loss), or `cross-entropy` (PyTorch's
    /// CrossEntropyLoss: log-softmax over each row of outputs, the negative log-likelihood of the
    /// target, the mean over rows; targets are class indices, an integer .npy or an integer CSV
    /// column, or rows of probabilities; accuracy is reported) [default: sse].
    #[arg(long, value_parser = values::named::<Loss>, value_name = "NAME")]
    pub loss: Option<Loss>,

    /// Optimizer: `sgd` (plain), `momentum` (PyTorch's SGD with momentum, see --momentum and
    /// --nesterov), `adam` (PyTorch's Adam, see --beta1, --beta2, --eps), `adamw` (PyTorch's
    /// AdamW: Adam with decoupled weight decay). Its state stays on the device [default: sgd].
    #[arg(long, value_parser = values::named::<OptimizerKind>, value_name = "NAME")]
    pub optimizer: Option<OptimizerKind>,

    /// Weight decay, >= 0, on every parameter (biases too, as PyTorch's one parameter group):
    /// for sgd, momentum and adam PyTorch's L2 form (wd·p added to the gradient), for adamw the
    /// decoupled form (p scaled by 1 - lr·wd) [default: 0, or 0.01 for adamw as in PyTorch].
    #[arg(long, value_parser = values::reals, value_name = "WD", allow_hyphen_values = true)]
    pub weight_decay: Option<values::List<f32>>,

    /// The learning rate of each optimizer step, as PyTorch's schedulers stepped once per step:
    /// `constant`, `step:EVERY:GAMMA` (StepLR: times GAMMA every EVERY steps) or
    /// `cosine:T_MAX[:MIN_LR]` (CosineAnnealingLR from --lr down to MIN_LR, default 0, at step
    /// T_MAX; it rises again after, as PyTorch's does). Computed on the device from its step
    /// counter; a resumed run continues it [default: constant].
    #[arg(long, value_name = "SCHEDULE", value_parser = values::schedules)]
    pub lr_schedule: Option<values::List<Schedule>>,

    /// A linear warm-up over the first STEPS optimizer steps from START_FACTOR x --lr up to --lr
    /// (PyTorch's LinearLR, default START_FACTOR 1/3), then --lr-schedule from its own step 0
    /// (as SequentialLR runs the two).
    #[arg(long, value_name = "STEPS[:START_FACTOR]", value_parser = values::warmups)]
    pub warmup: Option<values::List<Warmup>>,

    /// Momentum factor of `--optimizer momentum`, in [0, 1) [default: 0.9].
    #[arg(long, value_parser = values::reals, value_name = "MU", allow_hyphen_values = true)]
    pub momentum: Option<values::List<f32>>,

    /// Nesterov momentum (with `--optimizer momentum`).
    #[arg(long)]
    pub nesterov: bool,

    /// Adam's decay of the gradient average, in [0, 1) [default: 0.9].
    #[arg(long, value_parser = values::reals, value_name = "B1", allow_hyphen_values = true)]
    pub beta1: Option<values::List<f32>>,

    /// Adam's decay of the squared-gradient average, in [0, 1) [default: 0.999].
    #[arg(long, value_parser = values::reals, value_name = "B2", allow_hyphen_values = true)]
    pub beta2: Option<values::List<f32>>,

    /// Adam's term added to the denominator, finite and > 0 [default: 1e-8].
    #[arg(long, value_parser = values::reals, value_name = "EPS", allow_hyphen_values = true)]
    pub eps: Option<values::List<f32>>,

    /// Give every layer a bias, added before the activation and trained like the weights. Drawn
    /// by --init-scheme (torch: uniform in ±1/sqrt(fan_in); normal: standard normal; xavier and
    /// kaiming: zeros; constant: the constant). With --init, biases come from b1.npy, b2.npy, ...
    /// when those files exist.
    #[arg(long, overrides_with = "no_bias")]
    pub bias: bool,

    /// No biases (to override a preset that has them).
    #[arg(long, overrides_with = "bias")]
    pub no_bias: bool,

    /// Dynamic depth with weight sharing (PyTorch's control-flow example): the last hidden ->
    /// hidden layer of --layers (e.g. the 100 -> 100 of 1000,100,100,10) is shared and runs a
    /// number of times drawn each epoch from 0..=MAX with the seed (the same on every device);
    /// its gradient is the sum over its uses, and an epoch that does not use it leaves it alone.
    #[arg(long, value_parser = values::count, value_name = "MAX", allow_hyphen_values = true)]
    pub dynamic_depth: Option<usize>,

    /// How the initial weights are drawn (x and y are standard normal, unless a preset fixes them): `normal` (standard
    /// normal), `torch` (uniform in ±1/sqrt(fan_in), PyTorch's nn.Linear default), `xavier`
    /// (uniform in ±sqrt(6/(fan_in+fan_out))), `kaiming` (normal with std sqrt(2/fan_in)),
    /// `constant:<value>` (every weight the same). Ignored with --init, which loads the weights
    /// [default: normal].
    #[arg(long, value_parser = values::init_schemes, value_name = "SCHEME")]
    pub init_scheme: Option<values::List<InitScheme>>,

    /// Print the loss every N epochs (0: only the summary). Also how often the GPU path reads back
    /// [default: 50].
    #[arg(long, value_parser = values::count, value_name = "N")]
    pub log_every: Option<usize>,

    /// Start from x.npy, y.npy, w1.npy, ... (and b1.npy, ... if present) in DIR (f32 or f64, C
    /// order) instead of the seed.
    #[arg(long, value_name = "DIR")]
    pub init: Option<PathBuf>,
}

/// Where a job runs: the device, how the GPU is used, and its tuning.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Where to train: `auto` (best GPU adapter, else the CPU), `cpu`, `gpu` (any adapter, error if
    /// none), an adapter index or a case-insensitive substring of its name (see `gpu-train devices`).
    #[arg(long, default_value = "auto", value_name = "DEVICE", value_parser = values::device)]
    pub device: DeviceChoice,

    #[command(flatten)]
    pub gpu: GpuArgs,

    /// Tune the matmul variants of this job's products on the GPU before training: `auto` where
    /// the adapter is not of type Cpu and its tuning cache lacks one of them (a first run on a
    /// new GPU), `always`, or `never` (the untuned rule). The choices are cached for later runs
    /// (see `gpu-train tune`).
    #[arg(long, value_enum, default_value_t = TuneArg::Auto)]
    pub tune: TuneArg,

    /// What the tuning before training may take, in seconds (a shape is started only if it
    /// would fit; what was measured is kept).
    #[arg(long, value_name = "S", default_value = "10", value_parser = values::seconds)]
    pub tune_budget: f64,
}

/// What a training run writes, and how much it prints.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// Write the initial x, y and weights as x.npy, y.npy, w1.npy, w2.npy, ... (and biases as
    /// b1.npy, ...) into DIR (created if missing), in numpy's layout: x is [batch, d0], w1 is
    /// [d0, d1], b1 is [d1].
    #[arg(long, value_name = "DIR")]
    pub save_init: Option<PathBuf>,

    /// Write the trained weights as w1.npy, w2.npy, ... (and biases as b1.npy, ...) into DIR
    /// (created if missing).
    #[arg(long, value_name = "DIR")]
    pub save_final: Option<PathBuf>,

    /// Write a checkpoint to FILE (safetensors) at the end: the weights and biases under
    /// PyTorch's state_dict names and layouts ("0.weight" [out, in], "0.bias", "2.weight", ...),
    /// so `model.load_state_dict(load_file(FILE))` works, the config, epoch and step in its
    /// metadata; the optimizer's state, if any, beside it as NAME.optim.safetensors.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,

    /// Also write the --save checkpoint every N epochs.
    #[arg(long, value_parser = values::count, value_name = "N")]
    pub checkpoint_every: Option<usize>,

    /// Continue from a checkpoint written by --save, up to --epochs in all: give the flags of the
    /// run that wrote it; the continued run is bit-identical to an uninterrupted one.
    #[arg(long, value_name = "FILE")]
    pub resume: Option<PathBuf>,

    /// Write every epoch's loss to FILE: JSON for a .json name, else CSV (`epoch,loss`).
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,

    /// Draw the loss curve (log scale) into FILE: SVG, or PNG for a .png name.
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,

    /// Write the device, the configuration, every epoch's loss and the timings to FILE as one JSON
    /// object.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,

    /// Print only the summary line (no loss lines, no progress bar).
    #[arg(long, short)]
    pub quiet: bool,

    /// Time every GPU kernel with the adapter's timestamp queries and print the breakdown (time
    /// per kernel and shape, calls, share) after training.
    #[arg(long)]
    pub profile: bool,
}

impl JobArgs {
    /// The lists of the settings a sweep can vary, one per flag given, in a fixed order.
    pub fn lists(&self) -> Vec<Vec<Value>> {
        fn list<T: Copy>(v: &Option<values::List<T>>, f: impl Fn(T) -> Value) -> Vec<Value> {
            v.iter().flat_map(|l| &l.0).map(|&x| f(x)).collect()
        }
        let all = [
            list(&self.lr, Value::Lr),
            list(&self.seed, Value::Seed),
            list(&self.weight_decay, Value::WeightDecay),
            list(&self.momentum, Value::Momentum),
            list(&self.init_scheme, Value::InitScheme),
            list(&self.beta1, Value::Beta1),
            list(&self.beta2, Value::Beta2),
            list(&self.eps, Value::Eps),
            list(&self.lr_schedule, Value::LrSchedule),
            list(&self.warmup, Value::Warmup),
        ];
        all.into_iter().filter(|l| !l.is_empty()).collect()
    }

    /// The job the flags describe but for the settings a sweep can vary ([`JobArgs::lists`]),
    /// as the library's [`JobSpec`] (every value already typed); seed 0 unless a list sets it.
    /// The dataset flags (`--x`/`--y`, `--data`, `--init`) are the caller's to load.
    pub fn base_spec(&self) -> JobSpec {
        let either = |on: bool, off: bool| (on || off).then_some(on);
        JobSpec {
            preset: self.preset.clone(),
            layers: self.layers.clone().map(|w| w.0),
            batch: self.batch,
            lr: None,
            epochs: self.epochs,
            seed: Some(0),
            log_every: self.log_every,
            activation: self.activation,
            loss: self.loss,
            init_scheme: None,
            bias: either(self.bias, self.no_bias),
            optimizer: Some(OptimizerSpec {
                kind: self.optimizer,
                nesterov: self.nesterov.then_some(true),
                ..OptimizerSpec::default()
            }),
            lr_schedule: None,
            data: None,
            dynamic: self.dynamic_depth.map(|max| DynamicSpec {
                max,
                schedule: Vec::new(),
            }),
            rows: self.rows,
            shuffle: either(self.shuffle, self.no_shuffle),
        }
    }

    /// The job of a training run: [`JobArgs::base_spec`] with the one value of each list (a
    /// list of several is an error naming its flag: that is a sweep).
    pub fn spec(&self) -> Result<JobSpec> {
        let mut spec = self.base_spec();
        for list in self.lists() {
            if list.len() > 1 {
                return Err(Error::arg(
                    list[0].flag(),
                    format!(
                        "a training run takes one value, not a list of {}; `gpu-train sweep` \
                         trains one model per value",
                        list.len()
                    ),
                ));
            }
            list[0].apply(&mut spec);
        }
        Ok(spec)
    }
}

/// The value parsers of the flags: a value into its type, or what is wrong with it.
pub mod values;
