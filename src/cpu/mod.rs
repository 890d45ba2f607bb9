//! The CPU backend: the reference every GPU kernel is checked against, and the fallback on machines
//! without an adapter. Its ops live one family to a file, `<op>.rs` beside `shaders/<op>.wgsl`,
//! named like the WGSL kernels and in the same order of operations as the GPU path, so that
//! parity tolerances stay tight.

mod activation;
mod bias_update;
mod cross_entropy;
mod loss_reduce;
mod matmul;
mod optimizer;
mod sweep;
mod team;
#[cfg(test)]
mod tests;

pub use activation::*;
pub use bias_update::*;
pub use cross_entropy::*;
pub use loss_reduce::*;
pub use matmul::*;
pub use optimizer::*;
pub use sweep::CpuModels;

use crate::backend::DeviceInfo;
use crate::backend::{Backend, TrainState};
use crate::init::{HostState, Matrix, Params};
use crate::job::{Activation, Job, OptimizerKind};
use crate::state::OptCounters;
use crate::wait::Wait;

/// The CPU backend: the whole state in host memory.
pub struct CpuBackend {
    job: Job,
    /// The dataset, `[rows, d0]` and `[rows, dL]`, when it is more than one batch (empty else).
    x_all: Vec<f32>,
    y_all: Vec<f32>,
    /// The current batch, gathered from `x_all` and `y_all` in the epoch's order; or, when the
    /// dataset is one batch, the dataset itself.
    x: Vec<f32>,
    y: Vec<f32>,
    /// The epoch whose row order `order` holds.
    order: Option<(usize, Vec<u32>)>,
    /// `weights[l]`: `[d_l, d_{l+1}]`
    weights: Vec<Vec<f32>>,
    /// `biases[l]`: `[d_{l+1}]`, empty without biases
    biases: Vec<Vec<f32>>,
    /// Optimizer steps taken so far (the dynamic depth of the next one is `job.uses(step)`).
    step: usize,
    counters: OptCounters,
    /// The shared layer's own step counters, advanced only in epochs that use it (as PyTorch
    /// counts Adam's steps per parameter, and skips a parameter without a gradient).
    shared_counters: OptCounters,
    /// Optimizer state (m, v) of each weight, then of each bias; empty for plain SGD.
    opt_state: Vec<(Vec<f32>, Vec<f32>)>,
    /// `acts[j]`: activation output of the j-th product of an epoch, `[batch, width]`, for every
    /// product but the last (sized for the most uses of a shared layer)
    acts: Vec<Vec<f32>>,
    /// `pre[j]`: the j-th product's pre-activation, as `acts`, for an activation whose backward
    /// pass needs its input (GELU); empty vectors else.
    pre: Vec<Vec<f32>>,
    /// Network output `[batch, dL]`
    pred: Vec<f32>,
    /// `grads[j]`: gradient of the loss w.r.t. the j-th product's output, as `acts`; the last
    /// entry is the output layer's
    grads: Vec<Vec<f32>>,
    /// Weight and bias gradients (summed over the uses of a shared layer) where they are not
    /// fused into the step
    dw: Vec<Vec<f32>>,
    db: Vec<Vec<f32>>,
    /// Per-element losses (`d²` or `|d|`) `[batch, dL]`; per-row ones for cross-entropy
    loss_terms: Vec<f32>,
}

impl CpuBackend {
    pub fn new(job: &Job, state: &HostState) -> Self {
        let b = job.batch;
        let depth = job.depth();
        let zeros = |m: &Matrix| vec![0.0f32; m.data.len()];
        // Widths of the products' outputs with the most uses of a shared layer.
        let product_layers = job.applications(job.max_uses());
        let hidden: Vec<Vec<f32>> = (product_layers[..product_layers.len() - 1].iter())
            .map(|&l| vec![0.0f32; b * job.layers[l + 1]])
            .collect();
        let out = vec![0.0f32; b * job.layers[depth]];
        let mut grads = hidden.clone();
        grads.push(out.clone());
        // The products read x and y: the dataset itself when it is one batch, else each step's
        // rows, gathered from x_all and y_all.
        let (xs, ys) = (state.x.data.clone(), state.y.data.clone());
        let (x_all, y_all, x, y) = if job.minibatched() {
            let batch = |w: usize| vec![0.0f32; b * w];
            (xs, ys, batch(job.layers[0]), batch(job.layers[depth]))
        } else {
            (Vec::new(), Vec::new(), xs, ys)
        };
        CpuBackend {
            job: job.clone(),
            x_all,
            y_all,
            x,
            y,
            order: None,
            weights: state.weights.iter().map(|w| w.data.clone()).collect(),
            biases: state.biases.iter().map(|b| b.data.clone()).collect(),
            step: 0,
            counters: OptCounters::default(),
            shared_counters: OptCounters::default(),
            opt_state: if job.optimizer.kind == OptimizerKind::Sgd {
                Vec::new()
            } else {
                (state.weights.iter().chain(&state.biases))
                    .map(|m| (zeros(m), zeros(m)))
                    .collect()
            },
            pre: (hidden.iter())
                .map(|a| match job.activation.needs_input() {
                    true => a.clone(),
                    false => Vec::new(),
                })
                .collect(),
            acts: hidden,
            pred: out.clone(),
            grads,
            dw: state.weights.iter().map(zeros).collect(),
            db: state.biases.iter().map(zeros).collect(),
            loss_terms: out,
        }
    }

    /// Gather the next step's batch from the dataset, in its epoch's order; returns its rows.
    fn load_batch(&mut self) -> usize {
        let job = &self.job;
        let steps = job.steps_per_epoch();
        let (epoch, j) = (self.step / steps, self.step % steps);
        let rows = job.batch_rows(j);
        if !job.minibatched() {
            return rows;
        }
        if self.order.as_ref().is_none_or(|(e, _)| *e != epoch) {
            self.order = Some((epoch, job.order(epoch)));
        }
        let order = &self.order.as_ref().expect("set above").1;
        let (d0, dl) = (job.layers[0], job.layers[job.depth()]);
        for (i, &src) in order[j * job.batch..][..rows].iter().enumerate() {
            let src = src as usize;
            self.x[i * d0..(i + 1) * d0].copy_from_slice(&self.x_all[src * d0..(src + 1) * d0]);
            self.y[i * dl..(i + 1) * dl].copy_from_slice(&self.y_all[src * dl..(src + 1) * dl]);
        }
        rows
    }

    /// Forward pass of the products `product_layers` (weight indices, see [`Job::applications`]) over the
    /// batch's first `b` rows, and the loss; leaves the output gradient in `grads[last]`.
    fn forward(&mut self, product_layers: &[usize], b: usize) -> f32 {
        let n = product_layers.len();
        let out_w = self.job.layers[self.job.depth()];
        for (j, &l) in product_layers.iter().enumerate() {
            let (k, w) = (self.job.layers[l], self.job.layers[l + 1]);
            let hidden = self.acts.len();
            let act = self.job.activation;
            let (done, rest) = self.acts.split_at_mut(j.min(hidden));
            let input: &[f32] = if j == 0 { &self.x } else { &done[j - 1] };
            let last = j + 1 == n;
            let out: &mut [f32] = if last {
                &mut self.pred[..b * out_w]
            } else {
                &mut rest[0][..b * w]
            };
            // The bias and the activation (none on the output) on each thread's part of the
            // product, as it is made.
            let then = Then::Activate {
                bias: self.biases.get(l).map_or(&[], |v| &v[..]),
                act: if last { Activation::None } else { act },
                pre: match self.pre.get_mut(j) {
                    Some(z) if !last && act.needs_input() => &mut z[..b * w],
                    _ => &mut [],
                },
            };
            let weights = &self.weights[l];
            matmul_then(
                out,
                input,
                weights,
                (b, w, k),
                (false, false),
                Epilogue::Store,
                then,
            );
        }
        let g = &mut self.grads.last_mut().expect("the output gradient")[..b * out_w];
        let y = &self.y[..b * out_w];
        let (pred, loss_terms) = (&self.pred[..b * out_w], &mut self.loss_terms[..b * out_w]);
        loss_forward(g, loss_terms, pred, y, out_w, self.job.loss)
    }

    /// Backward pass of the products `product_layers`, from the last down. Each product first gives the
    /// gradient of its input (through the ReLU below) with the weights before any step, then
    /// its weight and bias gradients. A weight's gradient is summed over its uses (in backward
    /// order); after its last one, with `update`, the weight gets its optimizer step (fused into
    /// the gradient product for plain SGD when used once), and so does its bias. Without
    /// `update`, the summed gradients are returned (zeros for a weight not used) and the
    /// parameters left alone.
    fn backward(&mut self, product_layers: &[usize], b: usize, update: bool) -> Params {
        let depth = self.job.depth();
        let n = product_layers.len();
        let opt = self.job.optimizer;
        // This step's learning rate (`counters.t` counts it already).
        let lr = (self.job.lr_schedule).lr(self.job.lr, self.counters.t.saturating_sub(1));
        // Plain SGD without decay is fused into the gradient product.
        let sgd = opt.kind == OptimizerKind::Sgd && opt.weight_decay == 0.0;
        let act = self.job.activation;
        let shared = self.job.shared_layer();
        let mut used = vec![false; depth];
        for j in (0..n).rev() {
            let l = product_layers[j];
            used[l] = true;
            let (k, w) = (self.job.layers[l], self.job.layers[l + 1]);
            let gi = if j + 1 == n { self.grads.len() - 1 } else { j };
            let (below, this) = self.grads.split_at_mut(gi);
            let g = &this[0][..b * w];
            if j > 0 {
                // dL/d(a_{j-1}) = g · w_lᵀ, masked by the ReLU below if there is one
                let gb = &mut below[j - 1][..b * k];
                let then = match act {
                    Activation::None => Then::Nothing,
                    _ => Then::Gradient {
                        act,
                        aux: match act.needs_input() {
                            true => &self.pre[j - 1][..b * k],
                            false => &self.acts[j - 1][..b * k],
                        },
                    },
                };
                let weights = &self.weights[l];
                matmul_then(
                    gb,
                    g,
                    weights,
                    (b, k, w),
                    (false, true),
                    Epilogue::Store,
                    then,
                );
            }
            let input: &[f32] = if j == 0 { &self.x } else { &self.acts[j - 1] };
            // Uses of this weight still to come (below) and already summed (above).
            let more = j > 0 && product_layers[j - 1] == l;
            let summed = j + 1 < n && product_layers[j + 1] == l;
            let counters = if shared == Some(l) {
                self.shared_counters
            } else {
                self.counters
            };
            let fused = update && sgd && !more && !summed;
            let sum = if summed {
                Epilogue::Accumulate
            } else {
                Epilogue::Store
            };
            if fused {
                let wl = &mut self.weights[l];
                matmul(wl, input, g, k, w, b, true, false, Epilogue::Sgd(lr));
            } else {
                matmul(&mut self.dw[l], input, g, k, w, b, true, false, sum);
                if update && !more {
                    let state = opt_state(&mut self.opt_state, l);
                    optimizer_update(&mut self.weights[l], &self.dw[l], state, &opt, lr, counters);
                }
            }
            if let Some(bias) = self.biases.get_mut(l) {
                if fused {
                    bias_update(bias, g, Epilogue::Sgd(lr));
                } else {
                    bias_update(&mut self.db[l], g, sum);
                    if update && !more {
                        let state = opt_state(&mut self.opt_state, depth + l);
                        optimizer_update(bias, &self.db[l], state, &opt, lr, counters);
                    }
                }
            }
        }
        if update {
            return Params {
                weights: Vec::new(),
                biases: Vec::new(),
            };
        }
        let grad = |l: usize, v: &[f32], rows: usize| {
            let cols = self.job.layers[l + 1];
            let data = if used[l] {
                v.to_vec()
            } else {
                vec![0.0; rows * cols]
            };
            Matrix::from_vec(rows, cols, data)
        };
        Params {
            weights: (0..depth)
                .map(|l| grad(l, &self.dw[l], self.job.layers[l]))
                .collect(),
            biases: (0..self.biases.len())
                .map(|l| grad(l, &self.db[l], 1))
                .collect(),
        }
    }

    /// One optimizer step on the next batch: forward, loss, backward with the optimizer's
    /// updates. Returns the batch's loss.
    pub fn step(&mut self) -> f32 {
        let rows = self.load_batch();
        let uses = self.job.uses(self.step);
        let product_layers = self.job.applications(uses);
        let loss = self.forward(&product_layers, rows);
        self.counters.advance(&self.job.optimizer);
        if uses > 0 {
            self.shared_counters.advance(&self.job.optimizer);
        }
        self.backward(&product_layers, rows, true);
        self.step += 1;
        loss
    }

    /// One epoch: a step on every batch. Returns the epoch's loss ([`Job::epoch_loss`]).
    pub fn epoch(&mut self) -> f32 {
        let losses: Vec<f32> = (0..self.job.steps_per_epoch())
            .map(|_| self.step())
            .collect();
        self.job.epoch_loss(&losses)
    }

    /// The loss and the gradients at the current parameters on the next step's batch, with its
    /// dynamic depth, without updating anything.
    pub fn gradients(&mut self) -> (f32, Params) {
        let rows = self.load_batch();
        let product_layers = self.job.applications(self.job.uses(self.step));
        let loss = self.forward(&product_layers, rows);
        (loss, self.backward(&product_layers, rows, false))
    }

    fn params(&self) -> Params {
        let d = &self.job.layers;
        Params {
            weights: (self.weights.iter().enumerate())
                .map(|(l, w)| Matrix::from_vec(d[l], d[l + 1], w.clone()))
                .collect(),
            biases: (self.biases.iter().enumerate())
                .map(|(l, b)| Matrix::from_vec(1, d[l + 1], b.clone()))
                .collect(),
        }
    }
}

/// The optimizer's state of tensor `i` (empty slices for plain SGD, which keeps none).
fn opt_state(state: &mut [(Vec<f32>, Vec<f32>)], i: usize) -> (&mut [f32], &mut [f32]) {
    match state.get_mut(i) {
        Some((m, v)) => (m, v),
        None => (&mut [], &mut []),
    }
}

impl CpuBackend {
    /// The optimizer's buffers each tensor keeps (momentum 1, Adam 2).
    fn kept(&self) -> usize {
        match self.job.optimizer.kind {
            OptimizerKind::Sgd => 0,
            OptimizerKind::Momentum => 1,
            OptimizerKind::Adam | OptimizerKind::AdamW => 2,
        }
    }
}

impl CpuBackend {
    /// The whole training state (what [`Backend::state_async`] returns).
    pub fn train_state(&self) -> TrainState {
        let params = self.params();
        let shapes: Vec<[usize; 2]> = (params.weights.iter().chain(&params.biases))
            .map(Matrix::shape)
            .collect();
        let kept = self.kept();
        let opt_state = (self.opt_state.iter().zip(&shapes))
            .map(|((m, v), &[r, c])| {
                [m, v][..kept]
                    .iter()
                    .map(|b| Matrix::from_vec(r, c, b.to_vec()))
                    .collect()
            })
            .collect();
        TrainState {
            params,
            opt_state,
            step: self.step,
            counters: self.counters,
            shared_counters: self.shared_counters,
        }
    }

    /// Continue from `s` (what [`Backend::restore_async`] does).
    pub fn load_state(&mut self, s: &TrainState) {
        for (w, m) in self.weights.iter_mut().zip(&s.params.weights) {
            w.copy_from_slice(&m.data);
        }
        for (b, m) in self.biases.iter_mut().zip(&s.params.biases) {
            b.copy_from_slice(&m.data);
        }
        for ((m, v), saved) in self.opt_state.iter_mut().zip(&s.opt_state) {
            for (buf, from) in [m, v].into_iter().zip(saved) {
                buf.copy_from_slice(&from.data);
            }
        }
        self.step = s.step;
        self.counters = s.counters;
        self.shared_counters = s.shared_counters;
        self.order = None;
    }
}

/// Nothing on the CPU waits: every future is ready at once.
fn ready<'a, T: 'a>(v: T) -> Wait<'a, T> {
    Box::pin(std::future::ready(Ok(v)))
}

impl Backend for CpuBackend {
    fn state_async(&mut self) -> Wait<'_, TrainState> {
        ready(self.train_state())
    }

    fn restore_async<'a>(&'a mut self, s: &'a TrainState) -> Wait<'a, ()> {
        self.load_state(s);
        ready(())
    }

    fn steps(&self) -> usize {
        self.step
    }

    fn describe(&self) -> DeviceInfo {
        describe()
    }

    fn run_async(&mut self, epochs: usize) -> Wait<'_, Vec<f32>> {
        ready((0..epochs).map(|_| self.epoch()).collect())
    }

    fn read_params_async(&mut self) -> Wait<'_, Params> {
        ready(self.params())
    }

    fn gradients_async(&mut self) -> Wait<'_, (f32, Params)> {
        ready(CpuBackend::gradients(self))
    }
}

/// The CPU path as every output describes it (a run's summary, the bench and verify results).
pub fn describe() -> DeviceInfo {
    DeviceInfo {
        name: "cpu".into(),
        kind: "cpu".into(),
        vendor: 0,
        device: 0,
        device_type: "Cpu".into(),
        backend: "gemm".into(),
        driver: format!(
            "gpu-train {} (gemm, {} kernels, {} threads)",
            env!("CARGO_PKG_VERSION"),
            kernels(),
            threads()
        ),
        driver_info: model(),
        timestamps: "none".into(),
        tuned_shapes: 0,
        self_tuned: None,
        error: None,
        layout: None,
        limits: None,
    }
}

/// The CPU's model name (`/proc/cpuinfo`), else the architecture.
pub fn model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}
