//! A run's training state beside its parameters: the optimizer's per-element state and its step
//! counters, what a checkpoint holds and both paths restore.

use crate::init::{Matrix, Params};
use crate::job::Optimizer;

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

/// The optimizer's step counters, advanced once per epoch before the updates (as the GPU's
/// `loss_reduce` does): `t` and the powers `β1^t`, `β2^t` by repeated f32 multiplication.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OptCounters {
    pub t: u32,
    pub beta1_t: f32,
    pub beta2_t: f32,
}

impl Default for OptCounters {
    fn default() -> Self {
        OptCounters {
            t: 0,
            beta1_t: 1.0,
            beta2_t: 1.0,
        }
    }
}

impl OptCounters {
    /// One step on: `t + 1` (held at `u32::MAX`, as on the GPU, so a run past 2^32 steps keeps
    /// the schedule's rate from there), the powers once more.
    pub fn advance(&mut self, opt: &Optimizer) {
        self.t = self.t.saturating_add(1);
        self.beta1_t *= opt.beta1;
        self.beta2_t *= opt.beta2;
    }
}
