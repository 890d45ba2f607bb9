//! The one trait both paths implement. The training loop, logging and files are written once,
//! above it, in `train.rs`.

use crate::cpu::OptCounters;
use crate::error::Result;
use crate::init::{Matrix, Params};
use crate::io::summary::DeviceSummary;

/// Everything a run needs to continue exactly where it stopped (a checkpoint's content): the
/// random draws (data order, dynamic depths) are pure functions of the seed and the step.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainState {
    /// Weights `[d_l, d_{l+1}]` and biases `[1, d_{l+1}]`.
    pub params: Params,
    /// The optimizer's per-element state of each tensor (weights, then biases), in the tensor's
    /// shape: none for SGD, the momentum buffer, or Adam's first and second moments.
    pub opt_state: Vec<Vec<Matrix>>,
    /// Optimizer steps taken.
    pub step: usize,
    /// The optimizer's step counters, and a dynamic-depth net's shared layer's own.
    pub counters: OptCounters,
    pub shared_counters: OptCounters,
}

/// GPU time of one kernel (variant and shape) over the steps `--profile` timed.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KernelTime {
    pub name: String,
    pub calls: usize,
    pub seconds: f64,
    /// Workgroups one dispatch of it launches (a GPU is only as busy as this lets it be).
    #[serde(default)]
    pub workgroups: u64,
}

/// A device that holds a run's state and trains it.
pub trait Backend {
    /// Which device this is, for the summary line and JSON.
    fn describe(&self) -> DeviceSummary;

    /// Train `epochs` epochs; returns the loss of each, computed before that epoch's update.
    fn run(&mut self, epochs: usize) -> Result<Vec<f32>>;

    /// The current weights (`[d_l, d_{l+1}]` each) and biases (`[1, d_{l+1}]`).
    fn read_params(&mut self) -> Result<Params>;

    /// The loss and the gradients of the weights and biases at the current parameters, without
    /// updating them: what an epoch would compute before its step (for checking a device against
    /// a reference).
    fn gradients(&mut self) -> Result<(f32, Params)>;

    /// The whole training state, for a checkpoint.
    fn state(&mut self) -> Result<TrainState>;

    /// Continue from `state` (a checkpoint of the same job).
    fn restore(&mut self, state: &TrainState) -> Result<()>;

    /// Optimizer steps taken so far.
    fn steps(&self) -> usize;

    /// Most epochs one `run` call should cover (the GPU bounds the work in one submission).
    fn max_chunk(&self) -> usize {
        usize::MAX
    }

    /// Compute dispatches recorded per epoch (0 on the CPU).
    fn dispatches_per_epoch(&self) -> usize {
        0
    }

    /// Queue submissions so far (0 on the CPU); each is followed by one readback.
    fn submits(&self) -> usize {
        0
    }

    /// Seconds the host spent recording and submitting command buffers so far (0 on the CPU).
    fn encode_seconds(&self) -> f64 {
        0.0
    }

    /// Time every kernel of the steps to come with the device's timestamp queries (`--profile`).
    /// Fails, saying why, where there are none.
    fn enable_profiling(&mut self) -> std::result::Result<(), String> {
        Err("the CPU path runs no GPU kernels to time".into())
    }

    /// Steps timed so far and the time of each kernel over them.
    fn kernel_times(&self) -> (usize, Vec<KernelTime>) {
        (0, Vec::new())
    }
}
