//! The CPU backend: the reference every GPU kernel is checked against, and the fallback on machines
//! without an adapter. Each op has the same name as its WGSL kernel and runs in the same order of
//! operations as the GPU path, so that parity tolerances stay tight. The products go through the
//! `gemm` crate, with strides standing in for transposes (no copies).

use crate::backend::Backend;
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
/// the rows in order (as `shaders/bias_update.wgsl` does), then `b = db` (`Epilogue::Store`) or
/// the SGD step `b = b - lr·db`.
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
    layers: Vec<usize>,
    batch: usize,
    lr: f32,
    activation: Activation,
    loss: Loss,
    x: Vec<f32>,
    y: Vec<f32>,
    /// `weights[l]`: `[d_l, d_{l+1}]`
    weights: Vec<Vec<f32>>,
    /// `biases[l]`: `[d_{l+1}]`, empty without biases
    biases: Vec<Vec<f32>>,
    optimizer: Optimizer,
    counters: OptCounters,
    /// Optimizer state (m, v) of each weight, then of each bias; empty for plain SGD.
    opt_state: Vec<(Vec<f32>, Vec<f32>)>,
    /// `acts[l]`: activation output of layer l, `[batch, d_{l+1}]`, for every layer but the last
    acts: Vec<Vec<f32>>,
    /// Network output `[batch, dL]`
    pred: Vec<f32>,
    /// `grads[l]`: gradient of the loss w.r.t. layer l's output, `[batch, d_{l+1}]`
    grads: Vec<Vec<f32>>,
    /// Per-element losses (`d²` or `|d|`) `[batch, dL]`
    sq: Vec<f32>,
}

impl CpuBackend {
    pub fn new(job: &Job, state: &HostState) -> Self {
        let b = job.batch;
        let depth = job.depth();
        let out = |l: usize| vec![0.0f32; b * job.layers[l + 1]];
        CpuBackend {
            layers: job.layers.clone(),
            batch: b,
            lr: job.lr,
            activation: job.activation,
            loss: job.loss,
            x: state.x.data.clone(),
            y: state.y.data.clone(),
            weights: state.weights.iter().map(|w| w.data.clone()).collect(),
            biases: state.biases.iter().map(|b| b.data.clone()).collect(),
            optimizer: job.optimizer,
            counters: OptCounters::default(),
            opt_state: if job.optimizer.kind == OptimizerKind::Sgd {
                Vec::new()
            } else {
                let zeros = |m: &Matrix| (vec![0.0; m.data.len()], vec![0.0; m.data.len()]);
                state
                    .weights
                    .iter()
                    .chain(&state.biases)
                    .map(zeros)
                    .collect()
            },
            acts: (0..depth - 1).map(out).collect(),
            pred: out(depth - 1),
            grads: (0..depth).map(out).collect(),
            sq: out(depth - 1),
        }
    }

    /// Forward pass and loss; leaves the output gradient in `grads[last]`.
    fn forward(&mut self) -> f32 {
        let depth = self.weights.len();
        let b = self.batch;
        for l in 0..depth {
            let (k, n) = (self.layers[l], self.layers[l + 1]);
            let (done, rest) = self.acts.split_at_mut(l.min(depth - 1));
            let input: &[f32] = if l == 0 { &self.x } else { &done[l - 1] };
            let out: &mut [f32] = if l + 1 == depth {
                &mut self.pred
            } else {
                &mut rest[0]
            };
            matmul(
                out,
                input,
                &self.weights[l],
                b,
                n,
                k,
                false,
                false,
                Epilogue::Store,
            );
            if let Some(bias) = self.biases.get(l) {
                bias_forward(out, bias);
            }
            if l + 1 < depth && self.activation == Activation::Relu {
                relu_forward(out);
            }
        }
        let g = &mut self.grads[depth - 1];
        loss_forward(g, &mut self.sq, &self.pred, &self.y, self.loss)
    }

    /// Backward pass. With `update`, each weight gets its optimizer step (fused into its gradient
    /// product for plain SGD, right after it otherwise) once the layer below's input gradient has
    /// used the old weight, and each bias its step after its gradient; without, the gradients are
    /// returned and the parameters left alone.
    fn backward(&mut self, update: bool) -> Params {
        let depth = self.weights.len();
        let b = self.batch;
        let mut dws = Vec::new();
        let mut dbs = Vec::new();
        for l in (0..depth).rev() {
            let (k, n) = (self.layers[l], self.layers[l + 1]);
            let (below, this) = self.grads.split_at_mut(l);
            let g = &this[0];
            if l > 0 {
                // dL/d(a_{l-1}) = g · w_lᵀ, masked by the ReLU of layer l-1 if there is one
                matmul(
                    &mut below[l - 1],
                    g,
                    &self.weights[l],
                    b,
                    k,
                    n,
                    false,
                    true,
                    Epilogue::Store,
                );
                if self.activation == Activation::Relu {
                    relu_backward(&mut below[l - 1], &self.acts[l - 1]);
                }
            }
            let input: &[f32] = if l == 0 { &self.x } else { &self.acts[l - 1] };
            let fused = self.optimizer.kind == OptimizerKind::Sgd;
            if update && fused {
                matmul(
                    &mut self.weights[l],
                    input,
                    g,
                    k,
                    n,
                    b,
                    true,
                    false,
                    Epilogue::Sgd(self.lr),
                );
            } else {
                let mut dw = Matrix::zeros(k, n);
                matmul(
                    &mut dw.data,
                    input,
                    g,
                    k,
                    n,
                    b,
                    true,
                    false,
                    Epilogue::Store,
                );
                if update {
                    let (m, v) = &mut self.opt_state[l];
                    let (opt, lr, c) = (&self.optimizer, self.lr, self.counters);
                    optimizer_update(&mut self.weights[l], &dw.data, (m, v), opt, lr, c);
                } else {
                    dws.push(dw);
                }
            }
            if let Some(bias) = self.biases.get_mut(l) {
                if update && fused {
                    bias_update(bias, g, Epilogue::Sgd(self.lr));
                } else {
                    let mut db = Matrix::zeros(1, n);
                    bias_update(&mut db.data, g, Epilogue::Store);
                    if update {
                        let (m, v) = &mut self.opt_state[depth + l];
                        let (opt, lr, c) = (&self.optimizer, self.lr, self.counters);
                        optimizer_update(bias, &db.data, (m, v), opt, lr, c);
                    } else {
                        dbs.push(db);
                    }
                }
            }
        }
        dws.reverse();
        dbs.reverse();
        Params {
            weights: dws,
            biases: dbs,
        }
    }

    /// One epoch: forward, loss, backward with the optimizer's updates. Returns the loss.
    pub fn epoch(&mut self) -> f32 {
        let loss = self.forward();
        self.counters.advance(&self.optimizer);
        self.backward(true);
        loss
    }

    /// The loss and the gradients at the current parameters, without updating them.
    pub fn gradients(&mut self) -> (f32, Params) {
        let loss = self.forward();
        (loss, self.backward(false))
    }

    fn params(&self) -> Params {
        let n = |l: usize| self.layers[l + 1];
        Params {
            weights: (self.weights.iter().enumerate())
                .map(|(l, w)| Matrix::from_vec(self.layers[l], n(l), w.clone()))
                .collect(),
            biases: (self.biases.iter().enumerate())
                .map(|(l, b)| Matrix::from_vec(1, n(l), b.clone()))
                .collect(),
        }
    }
}

impl Backend for CpuBackend {
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
                for epilogue in [Epilogue::Store, Epilogue::Sgd(0.5)] {
                    let mut c = vec![1.0f32; m * n];
                    let p = Product::new(&mut c, &a, &b, (m, n, k), ta, tb);
                    // SAFETY: the vectors have exactly the strided shapes described.
                    unsafe { p.run(epilogue, 2) };
                    for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                        let w = match epilogue {
                            Epilogue::Store => *w,
                            Epilogue::Sgd(lr) => 1.0 - lr * w,
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
    }

    #[test]
    fn loss_reduce_is_the_plain_sum() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(loss_reduce(&v), 499_500.0);
        assert_eq!(loss_reduce(&[2.5]), 2.5);
    }
}
