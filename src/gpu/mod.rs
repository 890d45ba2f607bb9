//! The GPU backend: every tensor resident on the device, whole chunks of epochs recorded into one
//! compute pass of one command encoder, the loss of each epoch written to a history buffer on the
//! GPU (the epoch index kept there too), and one readback per chunk.
//!
//! Every matrix lives on the GPU with both dimensions padded to a multiple of 4 and the padding
//! zero (see `shaders/matmul.wgsl`), in one of two layouts (`layout`): rgba32float textures (a
//! texel holds 4 consecutive elements of a row) or row-major vec4 storage buffers; uploads pad
//! and readbacks strip it. A kernel cannot read and write one texture, so in the texels layout
//! each weight matrix has two: an epoch reads one and its optimizer step writes the other, and
//! the next epoch swaps them (two recorded plans, chosen by the epoch's parity); in the buffer
//! layout weights are stepped in place. Biases and the optimizer's state are storage buffers,
//! updated in place.
//!
//! One epoch of an L-layer net is 3L dispatches (L forward + 1 reduce + (L-1) + L backward), plus
//! L `bias_update` with biases:
//! - forward: `matmul[activate]` (the activation, or `[store]` without one) for each hidden layer,
//!   `matmul[sq-err]` or `[abs-err]` for the output layer (fused with the loss and its gradient),
//!   `loss_reduce` (deterministic sum into the history, the optimizer's step counters and the
//!   step's scheduled learning rate); for cross-entropy `matmul[logits]` then `cross_entropy`
//!   (the softmax, its gradient and the same sum) in their place;
//! - backward, from the last layer down: `matmul[activation-grad]` (input gradient g·wᵀ through
//!   the activation below, while w is still the old weight), then `matmul[update]` (weight
//!   gradient aᵀ·g fused with the optimizer step, into the other texture of the pair), then
//!   `bias_update`.
//!
//! With dynamic depth (`Job::dynamic`), an epoch runs the products `Job::applications(k)`, the
//! shared layer k times; each k has its own recorded plan. The shared layer's gradient is summed
//! over its uses, from the last down, in a storage buffer (`matmul[store, ACC_OUT]` for the first
//! ones, then `matmul[update, ACC_IN]`, which adds the sum and steps), and its bias's likewise in
//! `bias_update`. Its texture pair flips only in epochs that use it, and with Adam it has its own
//! step counters (PyTorch skips a parameter without a gradient), so a plan is keyed by (k, the
//! parity of the other weights, the parity of the shared one).
//!
//! Where things are: `layout` (padding), `memory` (matrices, bands), `kernels/` (one file per
//! kernel family: its uniform block, bindings, dispatch, and the kernel run on its own),
//! `record` (recording, submission, profiling), `plan` (the step plan), `backend` (the
//! [`Backend`](crate::backend::Backend) implementation), `context` (adapters and the device),
//! `tune` (the variant search and its cache).

pub mod adapters;
pub mod backend;
pub mod context;
pub mod kernels;
pub mod layout;
pub mod memory;
pub mod net;
pub mod plan;
pub mod record;
pub mod sweep;
pub mod tune;

pub use backend::GpuBackend;
#[cfg(not(target_arch = "wasm32"))]
pub use context::list_adapters;
pub use context::{AdapterEntry, DeviceChoice, GpuContext, GpuOptions, LimitsChoice, Timestamps};
pub use kernels::bias_update::{run_bias, run_bias_sum, BiasRun};
pub use kernels::cross_entropy::run_cross_entropy;
pub use kernels::loss_reduce::{run_advance, run_loss_reduce};
pub use kernels::matmul::{
    run_matmul, run_matmul_models, time_matmul, MatmulInputs, MatmulOutput, ModelInputs,
};
pub use kernels::matmul_naive::{run_naive, time_naive};
pub use kernels::{Acc, Act, Block, MatmulKey, Mode, Opt, StepState, Update};
pub use layout::{from_padded, pad4, to_padded};
pub use memory::{Banded, GpuMatrix};
pub use sweep::GpuModels;
