//! The one trait both paths implement. The training loop, logging and files are written once,
//! above it, in `train.rs`.

use crate::error::Result;
use crate::init::Params;
use crate::io::summary::DeviceSummary;

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

    /// Most epochs one `run` call should cover (the GPU bounds the work in one submission).
    fn max_chunk(&self) -> usize {
        usize::MAX
    }

    /// Compute dispatches recorded per epoch (0 on the CPU).
    fn dispatches_per_epoch(&self) -> usize {
        0
    }

    /// Queue submissions so far (0 on the CPU).
    fn submits(&self) -> usize {
        0
    }
}
