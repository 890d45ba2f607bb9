//! The CPU backend: the reference every GPU kernel is checked against, and the fallback on machines
//! without an adapter. Each op has the same name as its WGSL kernel and runs in the same order of
//! operations as the GPU path, so that parity tolerances stay tight. The products go through the
//! `gemm` crate, with strides standing in for transposes (no copies).

use crate::backend::{Backend, TrainState};
use crate::error::Result;
use crate::init::{HostState, Matrix, Params};
use crate::io::summary::DeviceSummary;
use crate::job::{Activation, Job, Loss, Optimizer, OptimizerKind};

/// Number of partial sums in the deterministic reduction; the GPU's `loss_reduce` kernel runs one
/// workgroup of this many invocations.
pub const REDUCE_WIDTH: usize = 256;

/// What the product's result is used for: the CPU twin of the matmul kernel's epilogue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epilogue {
    /// `c = a·b`
    Store,
    /// `c = c - lr·(a·b)`: the SGD step fused into the weight gradient.
    Sgd(f32),
    /// `c = c + a·b`: a shared layer's gradient summed over its uses.
    Accumulate,
}

/// `c[m,n] = op(a)[m,k] · op(b)[k,n]` (or the SGD update of `c`, see [`Epilogue`]).
/// `a` is stored `[m,k]`, or `[k,m]` when `trans_a`; `b` is `[k,n]`, or `[n,k]` when `trans_b`.
///
/// Large products are split in two halves of C (by columns or by rows, whichever is longer), each
/// a single-threaded gemm on its own core: on these skinny shapes that beats gemm's own threading.
/// The split changes gemm's blocking and so the last bits of the results: one thread and two give
/// slightly different numbers, each deterministic.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    epilogue: Epilogue,
) {
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    let p = Product::new(c, a, b, (m, n, k), trans_a, trans_b);
    // SAFETY: the lengths were checked above against the strides: every index row*rs + col*cs
    // stays below m*k, k*n and m*n respectively.
    unsafe { p.run(epilogue, threads()) }
}

/// A strided product on raw pointers, so that disjoint parts of C can go to different threads.
#[derive(Clone, Copy)]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    c: *mut f32,
    c_rs: usize,
    a: *const f32,
    a_rs: usize,
    a_cs: usize,
    b: *const f32,
    b_rs: usize,
    b_cs: usize,
}

impl Product {
    /// The product `c = op(a)·op(b)` with the strides of the stored layouts (see [`matmul`]).
    fn new(
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        (m, n, k): (usize, usize, usize),
        trans_a: bool,
        trans_b: bool,
    ) -> Self {
        let (a_rs, a_cs) = if trans_a { (1, m) } else { (k, 1) };
        let (b_rs, b_cs) = if trans_b { (1, k) } else { (n, 1) };
        Product {
            m,
            n,
            k,
            c: c.as_mut_ptr(),
            c_rs: n,
            a: a.as_ptr(),
            a_rs,
            a_cs,
            b: b.as_ptr(),
            b_rs,
            b_cs,
        }
    }
}

// SAFETY: a Product is only sent to another thread by `run`, which hands each thread a disjoint
// part of C and waits for both before returning.
unsafe impl Send for Product {}

/// Below this many multiply-adds a product runs on one thread.
const SPLIT_MIN_MACS: usize = 1 << 20;

impl Product {
    /// # Safety
    /// The pointers must cover the strided `[m,k]`, `[k,n]` and `[m,n]` matrices, with C not
    /// overlapping A or B.
    unsafe fn run(self, epilogue: Epilogue, threads: usize) {
        if threads >= 2 && self.m * self.n * self.k >= SPLIT_MIN_MACS {
            let (first, second) = if self.n >= self.m {
                let h = self.n / 2;
                let mut r = self;
                r.n = self.n - h;
                r.c = self.c.add(h);
                r.b = self.b.add(h * self.b_cs);
                (Product { n: h, ..self }, r)
            } else {
                let h = self.m / 2;
                let mut r = self;
                r.m = self.m - h;
                r.c = self.c.add(h * self.c_rs);
                r.a = self.a.add(h * self.a_rs);
                (Product { m: h, ..self }, r)
            };
            rayon::join(
                move || first.run(epilogue, 1),
                move || second.run(epilogue, 1),
            );
            return;
        }
        let (read_dst, alpha, beta) = match epilogue {
            Epilogue::Store => (false, 0.0, 1.0),
            Epilogue::Sgd(lr) => (true, 1.0, -lr),
            Epilogue::Accumulate => (true, 1.0, 1.0),
        };
        gemm::gemm(
            self.m,
            self.n,
            self.k,
            self.c,
            1,
            self.c_rs as isize,
            read_dst,
            self.a,
            self.a_cs as isize,
            self.a_rs as isize,
            self.b,
            self.b_cs as isize,
            self.b_rs as isize,
            alpha,
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Threads available to the products (the split uses at most two), or one with
/// `GPU_TRAIN_CPU_THREADS=1`.
fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("GPU_TRAIN_CPU_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// `c[r, j] += b[j]` for every row of the `[rows, b.len()]` matrix `c`: a layer's bias, added to
/// its product before the activation (the GPU does it in the product's epilogue).
pub fn bias_forward(c: &mut [f32], b: &[f32]) {
    for row in c.chunks_mut(b.len()) {
        for (v, &bj) in row.iter_mut().zip(b) {
            *v += bj;
        }
    }
}

/// The bias gradient `db[j] = Σ_r g[r, j]` of a `[rows, b.len()]` output gradient `g`, summed over
/// the rows in order (as `shaders/bias_update.wgsl` does), then `b = db` (`Epilogue::Store`),
/// `b = b + db` (`Epilogue::Accumulate`) or the SGD step `b = b - lr·db`.
pub fn bias_update(b: &mut [f32], g: &[f32], epilogue: Epilogue) {
    let n = b.len();
    for (j, bj) in b.iter_mut().enumerate() {
        let mut s = 0.0f32;
        for r in 0..g.len() / n {
            s += g[r * n + j];
        }
        *bj = match epilogue {
            Epilogue::Store => s,
            Epilogue::Sgd(lr) => *bj - lr * s,
            Epilogue::Accumulate => s + *bj,
        };
    }
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
    pub fn advance(&mut self, opt: &Optimizer) {
        self.t += 1;
        self.beta1_t *= opt.beta1;
        self.beta2_t *= opt.beta2;
    }
}

/// One optimizer step of the parameters `p` from their gradient `g`, with the per-element state
/// `m` (momentum buffer, or Adam's first moment) and `v` (Adam's second moment), in the order of
/// operations of the GPU's update epilogues:
/// - sgd: `p = p - lr·g`
/// - momentum: `m = μ·m + g; p = p - lr·m` (Nesterov: `p = p - lr·(g + μ·m)`)
/// - adam: `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
///   p = p - (lr / (1-β1^t))·(m / (sqrt(v) / sqrt(1-β2^t) + eps))`
pub fn optimizer_update(
    p: &mut [f32],
    g: &[f32],
    (m, v): (&mut [f32], &mut [f32]),
    opt: &Optimizer,
    lr: f32,
    c: OptCounters,
) {
    match opt.kind {
        OptimizerKind::Sgd => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * g;
            }
        }
        OptimizerKind::Momentum => {
            let mu = opt.momentum;
            for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                *m = mu * *m + g;
                let step = if opt.nesterov { g + mu * *m } else { *m };
                *p -= lr * step;
            }
        }
        OptimizerKind::Adam => {
            let (b1, b2, eps) = (opt.beta1, opt.beta2, opt.eps);
            let step_size = lr / (1.0 - c.beta1_t);
            let bc2_sqrt = (1.0 - c.beta2_t).sqrt();
            // Iterators rather than indices, so the loop vectorises (sqrt and division included).
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * (g * g);
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p -= step_size * (*m / denom);
            }
        }
    }
}

/// `a = max(a, 0)` in place.
pub fn relu_forward(a: &mut [f32]) {
    for v in a {
        *v = v.max(0.0);
    }
}

/// `g = 0` where the layer's ReLU output `a` is not positive (its input was <= 0).
pub fn relu_backward(g: &mut [f32], a: &[f32]) {
    for (g, &a) in g.iter_mut().zip(a) {
        if a <= 0.0 {
            *g = 0.0;
        }
    }
}

/// The loss of the prediction `p` against `y` and its gradient, as the GPU's error epilogues and
/// `loss_reduce` compute them: with `d = p - y` and `N = p.len()`, writes the per-element values
/// `vals = d²` (`|d|` for L1) and the gradient `g = s·d` (`s·sign(d)` for L1, `sign(0) = 0`), with
/// `s = loss.grad_coef(N)`, and returns `loss.scale(N) · Σ vals` summed in `loss_reduce`'s order.
pub fn loss_forward(g: &mut [f32], vals: &mut [f32], p: &[f32], y: &[f32], loss: Loss) -> f32 {
    let n = p.len();
    let s = loss.grad_coef(n);
    for i in 0..n {
        let d = p[i] - y[i];
        if loss.is_abs() {
            let sign = if d > 0.0 {
                1.0
            } else if d < 0.0 {
                -1.0
            } else {
                0.0
            };
            g[i] = s * sign;
            vals[i] = d.abs();
        } else {
            g[i] = s * d;
            vals[i] = d * d;
        }
    }
    loss_reduce(vals) * loss.scale(n)
}

/// Deterministic sum in the GPU kernel's order: `REDUCE_WIDTH` strided partial sums, then a
/// halving tree.
pub fn loss_reduce(v: &[f32]) -> f32 {
    let mut partial = [0.0f32; REDUCE_WIDTH];
    for (t, p) in partial.iter_mut().enumerate() {
        let mut s = 0.0f32;
        let mut i = t;
        while i < v.len() {
            s += v[i];
            i += REDUCE_WIDTH;
        }
        *p = s;
    }
    let mut stride = REDUCE_WIDTH / 2;
    while stride > 0 {
        for t in 0..stride {
            partial[t] += partial[t + stride];
        }
        stride /= 2;
    }
    partial[0]
}

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
    /// Network output `[batch, dL]`
    pred: Vec<f32>,
    /// `grads[j]`: gradient of the loss w.r.t. the j-th product's output, as `acts`; the last
    /// entry is the output layer's
    grads: Vec<Vec<f32>>,
    /// Weight and bias gradients (summed over the uses of a shared layer) where they are not
    /// fused into the step
    dw: Vec<Vec<f32>>,
    db: Vec<Vec<f32>>,
    /// Per-element losses (`d²` or `|d|`) `[batch, dL]`
    sq: Vec<f32>,
}

impl CpuBackend {
    pub fn new(job: &Job, state: &HostState) -> Self {
        let b = job.batch;
        let depth = job.depth();
        let zeros = |m: &Matrix| vec![0.0f32; m.data.len()];
        // Widths of the products' outputs with the most uses of a shared layer.
        let apps = job.applications(job.max_uses());
        let hidden: Vec<Vec<f32>> = (apps[..apps.len() - 1].iter())
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
            acts: hidden,
            pred: out.clone(),
            grads,
            dw: state.weights.iter().map(zeros).collect(),
            db: state.biases.iter().map(zeros).collect(),
            sq: out,
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

    /// Forward pass of the products `apps` (weight indices, see [`Job::applications`]) over the
    /// batch's first `b` rows, and the loss; leaves the output gradient in `grads[last]`.
    fn forward(&mut self, apps: &[usize], b: usize) -> f32 {
        let n = apps.len();
        let out_w = self.job.layers[self.job.depth()];
        for (j, &l) in apps.iter().enumerate() {
            let (k, w) = (self.job.layers[l], self.job.layers[l + 1]);
            let hidden = self.acts.len();
            let (done, rest) = self.acts.split_at_mut(j.min(hidden));
            let input: &[f32] = if j == 0 { &self.x } else { &done[j - 1] };
            let last = j + 1 == n;
            let out: &mut [f32] = if last {
                &mut self.pred[..b * out_w]
            } else {
                &mut rest[0][..b * w]
            };
            matmul(
                out,
                input,
                &self.weights[l],
                b,
                w,
                k,
                false,
                false,
                Epilogue::Store,
            );
            if let Some(bias) = self.biases.get(l) {
                bias_forward(out, bias);
            }
            if !last && self.job.activation == Activation::Relu {
                relu_forward(out);
            }
        }
        let g = &mut self.grads.last_mut().expect("the output gradient")[..b * out_w];
        let y = &self.y[..b * out_w];
        let (pred, sq) = (&self.pred[..b * out_w], &mut self.sq[..b * out_w]);
        loss_forward(g, sq, pred, y, self.job.loss)
    }

    /// Backward pass of the products `apps`, from the last down. Each product first gives the
    /// gradient of its input (through the ReLU below) with the weights before any step, then
    /// its weight and bias gradients. A weight's gradient is summed over its uses (in backward
    /// order); after its last one, with `update`, the weight gets its optimizer step (fused into
    /// the gradient product for plain SGD when used once), and so does its bias. Without
    /// `update`, the summed gradients are returned (zeros for a weight not used) and the
    /// parameters left alone.
    fn backward(&mut self, apps: &[usize], b: usize, update: bool) -> Params {
        let depth = self.job.depth();
        let n = apps.len();
        let (lr, opt) = (self.job.lr, self.job.optimizer);
        let sgd = opt.kind == OptimizerKind::Sgd;
        let shared = self.job.shared_layer();
        let mut used = vec![false; depth];
        for j in (0..n).rev() {
            let l = apps[j];
            used[l] = true;
            let (k, w) = (self.job.layers[l], self.job.layers[l + 1]);
            let gi = if j + 1 == n { self.grads.len() - 1 } else { j };
            let (below, this) = self.grads.split_at_mut(gi);
            let g = &this[0][..b * w];
            if j > 0 {
                // dL/d(a_{j-1}) = g · w_lᵀ, masked by the ReLU below if there is one
                let gb = &mut below[j - 1][..b * k];
                matmul(
                    gb,
                    g,
                    &self.weights[l],
                    b,
                    k,
                    w,
                    false,
                    true,
                    Epilogue::Store,
                );
                if self.job.activation == Activation::Relu {
                    relu_backward(gb, &self.acts[j - 1][..b * k]);
                }
            }
            let input: &[f32] = if j == 0 { &self.x } else { &self.acts[j - 1] };
            // Uses of this weight still to come (below) and already summed (above).
            let more = j > 0 && apps[j - 1] == l;
            let summed = j + 1 < n && apps[j + 1] == l;
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
        let apps = self.job.applications(uses);
        let loss = self.forward(&apps, rows);
        self.counters.advance(&self.job.optimizer);
        if uses > 0 {
            self.shared_counters.advance(&self.job.optimizer);
        }
        self.backward(&apps, rows, true);
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
        let apps = self.job.applications(self.job.uses(self.step));
        let loss = self.forward(&apps, rows);
        (loss, self.backward(&apps, rows, false))
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
            OptimizerKind::Adam => 2,
        }
    }
}

impl Backend for CpuBackend {
    fn state(&mut self) -> Result<TrainState> {
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
        Ok(TrainState {
            params,
            opt_state,
            step: self.step,
            counters: self.counters,
            shared_counters: self.shared_counters,
        })
    }

    fn restore(&mut self, s: &TrainState) -> Result<()> {
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
        Ok(())
    }

    fn steps(&self) -> usize {
        self.step
    }

    fn describe(&self) -> DeviceSummary {
        DeviceSummary {
            kind: "cpu".into(),
            name: "cpu".into(),
            device_type: "Cpu".into(),
            backend: "gemm".into(),
            driver: format!(
                "gemm crate, {} threads available",
                std::thread::available_parallelism().map_or(1, |n| n.get())
            ),
            layout: None,
            limits: None,
        }
    }

    fn run(&mut self, epochs: usize) -> Result<Vec<f32>> {
        Ok((0..epochs).map(|_| self.epoch()).collect())
    }

    fn read_params(&mut self) -> Result<Params> {
        Ok(self.params())
    }

    fn gradients(&mut self) -> Result<(f32, Params)> {
        Ok(CpuBackend::gradients(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize, ta: bool, tb: bool) -> Vec<f32> {
        let mut c = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                c[i * n + j] = s as f32;
            }
        }
        c
    }

    #[test]
    fn matmul_strides_match_naive_for_every_transpose() {
        let (m, n, k) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut c = vec![f32::NAN; m * n];
            matmul(&mut c, &a, &b, m, n, k, ta, tb, Epilogue::Store);
            let want = naive(&a, &b, m, n, k, ta, tb);
            for (g, w) in c.iter().zip(&want) {
                assert!((g - w).abs() < 1e-5, "ta={ta} tb={tb}: {g} vs {w}");
            }
            let mut c2 = vec![1.0f32; m * n];
            matmul(&mut c2, &a, &b, m, n, k, ta, tb, Epilogue::Sgd(0.5));
            for (g, w) in c2.iter().zip(&want) {
                assert!((g - (1.0 - 0.5 * w)).abs() < 1e-5);
            }
        }
    }

    #[test]
    fn split_products_match_naive_for_every_transpose() {
        // Over SPLIT_MIN_MACS, with odd sizes so the halves differ: split by rows (m > n) and by
        // columns (n > m), on two threads whatever the machine has.
        for (m, n, k) in [(151, 97, 101), (97, 151, 101)] {
            assert!(m * n * k >= SPLIT_MIN_MACS);
            let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.11).cos()).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let want = naive(&a, &b, m, n, k, ta, tb);
                for epilogue in [Epilogue::Store, Epilogue::Sgd(0.5), Epilogue::Accumulate] {
                    let mut c = vec![1.0f32; m * n];
                    let p = Product::new(&mut c, &a, &b, (m, n, k), ta, tb);
                    // SAFETY: the vectors have exactly the strided shapes described.
                    unsafe { p.run(epilogue, 2) };
                    for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                        let w = match epilogue {
                            Epilogue::Store => *w,
                            Epilogue::Sgd(lr) => 1.0 - lr * w,
                            Epilogue::Accumulate => 1.0 + w,
                        };
                        assert!(
                            (g - w).abs() < 1e-3,
                            "{m}x{n}x{k} ta={ta} tb={tb} {epilogue:?} [{i}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn bias_forward_adds_per_column_and_bias_update_sums_rows() {
        let mut c = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        bias_forward(&mut c, &[10.0, 20.0, 30.0]);
        assert_eq!(c, vec![11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        let g = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut db = vec![f32::NAN; 3];
        bias_update(&mut db, &g, Epilogue::Store);
        assert_eq!(db, vec![5.0, 7.0, 9.0]);
        let mut b = vec![1.0; 3];
        bias_update(&mut b, &g, Epilogue::Sgd(0.5));
        assert_eq!(b, vec![-1.5, -2.5, -3.5]);
        bias_update(&mut b, &g, Epilogue::Accumulate);
        assert_eq!(b, vec![3.5, 4.5, 5.5]);
    }

    #[test]
    fn loss_reduce_is_the_plain_sum() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(loss_reduce(&v), 499_500.0);
        assert_eq!(loss_reduce(&[2.5]), 2.5);
    }
}
