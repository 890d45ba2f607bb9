//! The one trait both paths implement. The training loop, logging and files are written once,
//! above it, in `train.rs`.

#[cfg(not(target_arch = "wasm32"))]
use crate::error::Result;
use crate::init::Params;
pub use crate::state::TrainState;
#[cfg(not(target_arch = "wasm32"))]
use crate::wait::block_on;
use crate::wait::Wait;

/// A device as every output describes it: where a run ran (its summary), and each device of a
/// bench or verify run (their results files). The CPU path's is [`crate::cpu::describe`], an
/// adapter's `gpu::adapters::describe` and, opened, `GpuContext::describe`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DeviceInfo {
    /// `cpu`, or the adapter's name.
    pub name: String,
    /// `cpu` or `gpu`.
    pub kind: String,
    #[serde(default)]
    pub vendor: u32,
    #[serde(default)]
    pub device: u32,
    pub device_type: String,
    pub backend: String,
    pub driver: String,
    /// The adapter's driver details; the CPU's model for the CPU path.
    #[serde(default)]
    pub driver_info: String,
    /// How kernels were timed: `inside-passes`, `per-pass` or `none` (wall clock only).
    #[serde(default)]
    pub timestamps: String,
    /// Matmul shapes the tuning cache held when the device was opened.
    #[serde(default)]
    pub tuned_shapes: usize,
    /// What the run's own tuning did before it trained (`--tune`), where it tuned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub self_tuned: Option<crate::gpu::tune::SelfTuned>,
    /// Why the device could not be used at all, if it could not.
    #[serde(default)]
    pub error: Option<String>,
    /// The memory layout of the matrices (none for the CPU, and in bench results of schema 1).
    #[serde(default)]
    pub layout: Option<crate::gpu::layout::Layout>,
    /// The device limits requested (`adapter` or `webgpu`; GPU only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<String>,
}

impl DeviceInfo {
    /// `name (backend)`, short enough for a table column; `cpu (model)` for the CPU path.
    pub fn label(&self) -> String {
        if self.kind == "cpu" {
            // Results files before the one description named the CPU by its model.
            let model = if self.driver_info.is_empty() {
                &self.name
            } else {
                &self.driver_info
            };
            format!("cpu ({model})")
        } else {
            match self.layout {
                Some(l) => format!("{} ({}, {l})", self.name, self.backend),
                None => format!("{} ({})", self.name, self.backend),
            }
        }
    }
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

/// What a device counted while it trained: the host's share of the work (dispatches recorded,
/// submissions, the time spent recording them) and, with `--profile`, the GPU time of each kernel.
/// All zero on the CPU.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Compute dispatches recorded per epoch.
    pub dispatches_per_epoch: usize,
    /// Queue submissions so far; each is followed by one readback.
    pub submits: usize,
    /// Seconds the host spent recording and submitting command buffers so far.
    pub encode_s: f64,
    /// Steps timed so far with the device's timestamp queries (`--profile`) and the time of
    /// each kernel over them.
    pub steps_timed: usize,
    pub kernels: Vec<KernelTime>,
}

/// A device that holds a run's state and trains it. The methods that wait on the device return
/// futures ([`Wait`]): the browser awaits them on its event loop; natively they are ready once
/// polled, and the blocking forms below (`run`, `read_params`, ...) drive them with
/// [`crate::wait::block_on`].
pub trait Backend {
    /// Which device this is, for the summary line and JSON.
    fn describe(&self) -> DeviceInfo;

    /// Train `epochs` epochs; returns the loss of each, computed before that epoch's update.
    fn run_async(&mut self, epochs: usize) -> Wait<'_, Vec<f32>>;

    /// The current weights (`[d_l, d_{l+1}]` each) and biases (`[1, d_{l+1}]`).
    fn read_params_async(&mut self) -> Wait<'_, Params>;

    /// The loss and the gradients of the weights and biases at the current parameters, without
    /// updating them: what an epoch would compute before its step (for checking a device against
    /// a reference).
    fn gradients_async(&mut self) -> Wait<'_, (f32, Params)>;

    /// The whole training state, for a checkpoint.
    fn state_async(&mut self) -> Wait<'_, TrainState>;

    /// Continue from `state` (a checkpoint of the same job).
    fn restore_async<'a>(&'a mut self, state: &'a TrainState) -> Wait<'a, ()>;

    /// Optimizer steps taken so far.
    fn steps(&self) -> usize;

    /// Most epochs one `run` call should cover (the GPU bounds the work in one submission).
    fn max_chunk(&self) -> usize {
        usize::MAX
    }

    /// What the device counted so far (all zero on the CPU).
    fn stats(&self) -> Stats {
        Stats::default()
    }

    /// Time every kernel of the steps to come with the device's timestamp queries (`--profile`).
    /// Fails, saying why, where there are none.
    fn enable_profiling(&mut self) -> std::result::Result<(), String> {
        Err("the CPU path runs no GPU kernels to time".into())
    }

    /// [`Backend::run_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    fn run(&mut self, epochs: usize) -> Result<Vec<f32>> {
        block_on(self.run_async(epochs))
    }

    /// [`Backend::read_params_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    fn read_params(&mut self) -> Result<Params> {
        block_on(self.read_params_async())
    }

    /// [`Backend::gradients_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    fn gradients(&mut self) -> Result<(f32, Params)> {
        block_on(self.gradients_async())
    }

    /// [`Backend::state_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    fn state(&mut self) -> Result<TrainState> {
        block_on(self.state_async())
    }

    /// [`Backend::restore_async`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    fn restore(&mut self, state: &TrainState) -> Result<()> {
        block_on(self.restore_async(state))
    }
}
