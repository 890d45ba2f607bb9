//! Checkpoints in safetensors. The model file holds the weights and biases under the names and
//! layouts of PyTorch's `state_dict` (`nn.Sequential` of `nn.Linear` and `nn.ReLU`: "0.weight"
//! `[out, in]`, "0.bias", "2.weight", ...; the tutorial's `DynamicNet` names, "input_linear.weight"
//! ..., for a dynamic-depth net of three layers), so that
//! `model.load_state_dict(safetensors.torch.load_file(F))` works as it is; its metadata records the
//! format, the tool's version, the job's configuration (JSON), the epoch and step, and the
//! optimizer's step counters (exact bits). The optimizer's per-element state (PyTorch's
//! `momentum_buffer`, `exp_avg`, `exp_avg_sq`) cannot share that file (a strict `load_state_dict`
//! refuses unknown keys), so it goes to a second file beside it, `NAME.optim.safetensors`, written
//! first. Each file is written atomically, and each save gives the pair a fresh `generation` in
//! both files' metadata. Before the new optimizer file replaces the old one, the old one (when it
//! is of the model file's save) is hard-linked as `.NAME.optim.prev.safetensors`, removed once
//! the model file is in place: a run killed between the two renames leaves the previous
//! checkpoint whole, the model file with that `prev` file, which [`load`] pairs by generation.

use crate::backend::TrainState;
use crate::error::{Error, Result};
use crate::init::{Matrix, Params};
use crate::job::{Activation, Job, Named, OptimizerKind};
use crate::state::OptCounters;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

mod load;
mod save;

pub use load::*;
pub use save::*;

/// The `format` metadata of a model file written here.
pub const FORMAT: &str = "gpu-train checkpoint 1";

/// The PyTorch name of layer `l`'s module: its index in `nn.Sequential` (Linear, ReLU, Linear ...
/// or consecutive without activation), or `DynamicNet`'s attribute.
pub fn module_name(job: &Job, l: usize) -> String {
    if job.dynamic.is_some() && job.depth() == 3 {
        return ["input_linear", "middle_linear", "output_linear"][l].to_string();
    }
    match job.activation {
        Activation::None => l.to_string(),
        _ => (2 * l).to_string(),
    }
}

/// The optimizer-state file beside a model file: `run.safetensors` -> `run.optim.safetensors`.
pub fn optimizer_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.optim.safetensors"))
}

/// The names PyTorch gives the optimizer's state buffers.
pub(super) fn state_names(kind: OptimizerKind) -> &'static [&'static str] {
    match kind {
        OptimizerKind::Sgd => &[],
        OptimizerKind::Momentum => &["momentum_buffer"],
        OptimizerKind::Adam | OptimizerKind::AdamW => &["exp_avg", "exp_avg_sq"],
    }
}

/// Every parameter tensor in PyTorch's `state_dict` names and layouts: (name, shape, values).
/// Weights are transposed to `[out, in]`.
pub fn named_tensors(job: &Job, params: &Params) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for (l, w) in params.weights.iter().enumerate() {
        let m = module_name(job, l);
        out.push((format!("{m}.weight"), vec![w.cols, w.rows], transpose(w)));
        if let Some(b) = params.biases.get(l) {
            out.push((format!("{m}.bias"), vec![b.cols], b.data.clone()));
        }
    }
    out
}

pub(super) fn transpose(m: &Matrix) -> Vec<f32> {
    let mut t = vec![0.0; m.data.len()];
    for r in 0..m.rows {
        for c in 0..m.cols {
            t[c * m.rows + r] = m.data[r * m.cols + c];
        }
    }
    t
}

pub(super) fn counters_text(c: &OptCounters) -> String {
    format!("{},{},{}", c.t, c.beta1_t.to_bits(), c.beta2_t.to_bits())
}

pub(super) fn parse_counters(s: &str) -> Option<OptCounters> {
    let v: Vec<u32> = s
        .split(',')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    match v[..] {
        [t, b1, b2] => Some(OptCounters {
            t,
            beta1_t: f32::from_bits(b1),
            beta2_t: f32::from_bits(b2),
        }),
        _ => None,
    }
}

/// The `format` metadata of an optimizer-state file.
pub(super) const OPTIMIZER_FORMAT: &str = "gpu-train checkpoint 1 optimizer state";

/// `opt_state` (weights, then biases) in the interleaved order of [`named_tensors`].
pub(super) fn tensor_order<'a>(job: &Job, opt_state: &'a [Vec<Matrix>]) -> Vec<&'a [Matrix]> {
    let depth = job.depth();
    let with_bias = opt_state.len() > depth;
    let mut out = Vec::new();
    for l in 0..depth {
        out.push(&opt_state[l][..]);
        if with_bias {
            out.push(&opt_state[depth + l][..]);
        }
    }
    out
}
