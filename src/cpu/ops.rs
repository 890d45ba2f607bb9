//! The CPU reference ops, one per GPU kernel and named like it (`matmul`, `bias_update`,
//! `optimizer_update`, `activation_forward`/`activation_backward`, `loss_forward`,
//! `cross_entropy`, `loss_reduce`), each in the GPU kernel's order of operations so that parity
//! tolerances stay tight. The products go through the `gemm` crate, with strides standing in for
//! transposes (no copies).

use super::team::Team;
use crate::job::{Activation, Loss, Optimizer, OptimizerKind};

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
/// Large products are split in one part of C per thread (by columns or by rows, whichever is
/// longer), each a single-threaded gemm on its own core of the CPU path's [`Team`]: on these
/// skinny shapes that beats gemm's own threading. The split changes gemm's blocking and so the
/// last bits of the results: each thread count gives slightly different numbers, each
/// deterministic.
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
    matmul_then(
        c,
        a,
        b,
        (m, n, k),
        (trans_a, trans_b),
        epilogue,
        Then::Nothing,
    );
}

/// What follows a product on each element of C, on the thread that computed its part, while it
/// is in that core's cache (the CPU twin of the matmul kernel's fused epilogues): the
/// elementwise ops of [`bias_forward`], [`activation_forward`] and [`activation_backward`], with
/// the same arithmetic in the same order.
pub enum Then<'a> {
    Nothing,
    /// `c[r, j] += bias[j]` (no bias when empty), then `c = act(c)`, keeping the values before the
    /// activation in `pre` where it is not empty (`[m, n]`, as C).
    Activate {
        bias: &'a [f32],
        act: Activation,
        pre: &'a mut [f32],
    },
    /// `c = act_backward(act, c, aux)` (`aux` `[m, n]`, as C): the gradient through the
    /// activation of the layer below.
    Gradient {
        act: Activation,
        aux: &'a [f32],
    },
}

/// [`matmul`] followed by `then` on each element, `dims` = `(m, n, k)`, `trans` = `(trans_a,
/// trans_b)`.
pub fn matmul_then(
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    dims: (usize, usize, usize),
    trans: (bool, bool),
    epilogue: Epilogue,
    then: Then,
) {
    matmul_on(team(), c, a, b, dims, trans, epilogue, then);
}

/// [`matmul_then`] on `team`.
#[allow(clippy::too_many_arguments)]
fn matmul_on(
    team: &Team,
    c: &mut [f32],
    a: &[f32],
    b: &[f32],
    dims: (usize, usize, usize),
    trans: (bool, bool),
    epilogue: Epilogue,
    then: Then,
) {
    let (m, n, k) = dims;
    assert!(c.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    let post = Post::new(then, m, n);
    let p = Product::new(c, a, b, dims, trans.0, trans.1);
    // SAFETY: the lengths were checked above against the strides: every index row*rs + col*cs
    // stays below m*k, k*n and m*n respectively, and `post`'s matrices are C's shape.
    unsafe { p.run(epilogue, post, team) }
}

impl Post {
    /// `then` for an `[m, n]` C, its slices' lengths checked.
    fn new(then: Then, m: usize, n: usize) -> Post {
        match then {
            Then::Nothing => Post::Nothing,
            Then::Activate { bias, act, pre } => {
                assert!(bias.is_empty() || bias.len() == n);
                assert!(pre.is_empty() || pre.len() >= m * n);
                let keep = act.needs_input() && !pre.is_empty();
                Post::Activate {
                    bias: (!bias.is_empty()).then_some(bias.as_ptr()),
                    act,
                    pre: keep.then_some(pre.as_mut_ptr()),
                }
            }
            Then::Gradient { act, aux } => {
                assert!(aux.len() >= m * n);
                Post::Gradient {
                    act,
                    aux: aux.as_ptr(),
                }
            }
        }
    }
}

/// [`Then`] on raw pointers into whole matrices of C's shape, for the parts' threads.
#[derive(Clone, Copy)]
enum Post {
    Nothing,
    Activate {
        bias: Option<*const f32>,
        act: Activation,
        pre: Option<*mut f32>,
    },
    Gradient {
        act: Activation,
        aux: *const f32,
    },
}

impl Post {
    /// Applies to the part `p` of C (whose whole has `p.c_rs` columns).
    ///
    /// # Safety
    /// The pointers must cover whole matrices of C's shape; no other thread may touch `p`'s
    /// block of them.
    unsafe fn apply(self, p: &Product) {
        if let Post::Nothing = self {
            return;
        }
        let w = p.c_rs;
        for r in p.row0..p.row0 + p.m {
            let at = r * w + p.col0;
            let c = std::slice::from_raw_parts_mut(p.c.add((r - p.row0) * w), p.n);
            // The reference ops themselves, on this row of the part.
            match self {
                Post::Nothing => {}
                Post::Activate { bias, act, pre } => {
                    if let Some(bias) = bias {
                        bias_forward(c, std::slice::from_raw_parts(bias.add(p.col0), p.n));
                    }
                    if act != Activation::None {
                        let pre = match pre {
                            Some(pre) => std::slice::from_raw_parts_mut(pre.add(at), p.n),
                            None => &mut [],
                        };
                        activation_forward(c, pre, act);
                    }
                }
                Post::Gradient { act, aux } => {
                    let aux = std::slice::from_raw_parts(aux.add(at), p.n);
                    activation_backward(c, aux, act);
                }
            }
        }
    }
}

/// A strided product on raw pointers, so that disjoint parts of C can go to different threads.
#[derive(Clone, Copy)]
struct Product {
    m: usize,
    n: usize,
    k: usize,
    /// Where this part starts in the whole C (0, 0 for the whole).
    row0: usize,
    col0: usize,
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
            row0: 0,
            col0: 0,
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

// SAFETY: a Product (and its Post) is only shared with other threads by `run`, which hands each
// thread a disjoint part of C and waits for all of them before returning.
unsafe impl Send for Product {}
unsafe impl Sync for Product {}
unsafe impl Send for Post {}
unsafe impl Sync for Post {}

/// Below this many multiply-adds a product runs on one thread.
const SPLIT_MIN_MACS: usize = 1 << 20;

/// A plain product whose inner dimension is at least this many times its longer side is split
/// over the inner dimension: the default job's `x·w1` (64x100x1000) ran 1.15x faster so than
/// split by columns (0.093 s against 0.107 s for the whole job, paired runs), since each thread
/// then reads the rows of w1 that it stepped itself, in its own cache (benches/README.md).
const SPLIT_K_RATIO: usize = 4;

/// Part `i` of `0..len` cut in `parts` runs as even as can be (the first ones longer by one where
/// they do not divide): its start and length.
fn span(len: usize, i: usize, parts: usize) -> (usize, usize) {
    let (q, r) = (len / parts, len % parts);
    (i * q + i.min(r), q + usize::from(i < r))
}

/// The split-K partials, shared with the parts' threads.
#[derive(Clone, Copy)]
struct Scratch(*mut f32);

// SAFETY: as Product's: each thread gets a disjoint slice, and `run` waits for all of them.
unsafe impl Send for Scratch {}
unsafe impl Sync for Scratch {}

impl Scratch {
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

impl Product {
    /// Columns `start..start + n` of C (and of B).
    fn cols(self, start: usize, n: usize) -> Product {
        Product {
            n,
            col0: self.col0 + start,
            // wrapping: a part past the end is never made (start < self.n), and the pointers
            // are only dereferenced by gemm within the part's bounds.
            c: self.c.wrapping_add(start),
            b: self.b.wrapping_add(start * self.b_cs),
            ..self
        }
    }

    /// Rows `start..start + m` of C (and of A).
    fn rows(self, start: usize, m: usize) -> Product {
        Product {
            m,
            row0: self.row0 + start,
            c: self.c.wrapping_add(start * self.c_rs),
            a: self.a.wrapping_add(start * self.a_rs),
            ..self
        }
    }

    /// The product over `start..start + k` of the inner dimension, into `c` (`[m, n]`, row
    /// stride n).
    fn depth(self, start: usize, k: usize, c: *mut f32) -> Product {
        Product {
            k,
            c,
            c_rs: self.n,
            a: self.a.wrapping_add(start * self.a_cs),
            b: self.b.wrapping_add(start * self.b_rs),
            ..self
        }
    }

    /// The product on `team`. Below [`SPLIT_MIN_MACS`], or on a team of one, it runs on the
    /// caller. Else each thread makes one part of C, `span(.., i, parts)` of its columns, or of
    /// its rows when it has more rows than columns (an SGD step `xᵀ·g` of the weights by their
    /// rows); or, where the inner dimension dominates ([`SPLIT_K_RATIO`], a plain store: the
    /// forward product `x·w` of a narrow layer), each thread takes a `span` of the inner
    /// dimension (the same rows of the weights that it stepped) into a partial C, and the
    /// partials are summed, part 0 first, by rows. Each part and each sum is fixed by the
    /// thread count alone, so the results are too.
    ///
    /// # Safety
    /// The pointers must cover the strided `[m,k]`, `[k,n]` and `[m,n]` matrices, with C not
    /// overlapping A or B.
    unsafe fn run(self, epilogue: Epilogue, post: Post, team: &Team) {
        let threads = team.size();
        if threads < 2 || self.m * self.n * self.k < SPLIT_MIN_MACS {
            self.gemm(epilogue);
            post.apply(&self);
        } else if epilogue == Epilogue::Store && self.k >= SPLIT_K_RATIO * self.m.max(self.n) {
            self.run_split_k(post, team, threads.min(self.k));
        } else {
            let by_cols = self.n >= self.m;
            let parts = threads.min(if by_cols { self.n } else { self.m });
            // SAFETY: the parts cover disjoint blocks of C (and of `post`'s matrices).
            team.run(parts, &|i| unsafe {
                let p = match by_cols {
                    true => self.cols_part(i, parts),
                    false => self.rows_part(i, parts),
                };
                p.gemm(epilogue);
                post.apply(&p);
            });
        }
    }

    fn cols_part(self, i: usize, parts: usize) -> Product {
        let (start, n) = span(self.n, i, parts);
        self.cols(start, n)
    }

    fn rows_part(self, i: usize, parts: usize) -> Product {
        let (start, m) = span(self.m, i, parts);
        self.rows(start, m)
    }

    /// [`Product::run`] split over the inner dimension in `parts`: part 0 into C, the others
    /// into the caller's scratch, then the sums (and `post`) by rows.
    ///
    /// # Safety
    /// As [`Product::run`].
    unsafe fn run_split_k(self, post: Post, team: &Team, parts: usize) {
        thread_local! {
            /// The partial products past the first, kept between calls (no allocation per
            /// epoch once the largest has been seen).
            static PARTIALS: std::cell::RefCell<Vec<f32>> = const {
                std::cell::RefCell::new(Vec::new())
            };
        }
        let len = self.m * self.n;
        PARTIALS.with(|partials| {
            let mut partials = partials.borrow_mut();
            if partials.len() < len * (parts - 1) {
                partials.resize(len * (parts - 1), 0.0);
            }
            let scratch = Scratch(partials.as_mut_ptr());
            // SAFETY: each part writes its own [m, n] (C or a slice of the scratch).
            team.run(parts, &|i| unsafe {
                let (start, k) = span(self.k, i, parts);
                let c = match i {
                    0 => self.c,
                    _ => scratch.at((i - 1) * len),
                };
                self.depth(start, k, c).gemm(Epilogue::Store);
            });
            // SAFETY: each thread sums (and finishes) its own rows of C.
            team.run(parts.min(self.m), &|i| unsafe {
                let (start, m) = span(self.m, i, parts.min(self.m));
                let rows = self.rows(start, m);
                for r in 0..m {
                    let c = std::slice::from_raw_parts_mut(rows.c.add(r * rows.c_rs), self.n);
                    for j in 1..parts {
                        let at = (j - 1) * len + (start + r) * self.n;
                        let partial = std::slice::from_raw_parts(scratch.at(at), self.n);
                        for (v, &p) in c.iter_mut().zip(partial) {
                            *v += p;
                        }
                    }
                }
                post.apply(&rows);
            });
        });
    }

    /// The product on this thread, in one gemm call.
    ///
    /// # Safety
    /// As [`Product::run`].
    unsafe fn gemm(self, epilogue: Epilogue) {
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

/// Threads the products run on: those available, or `GPU_TRAIN_CPU_THREADS`.
pub fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("GPU_TRAIN_CPU_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

/// The microkernels gemm runs here, by the same run-time checks gemm makes: `avx512f`,
/// `avx2+fma`, `neon` or `scalar`. The FMA peak probe (`bench::peak`) runs the same widths, and
/// relies on each name meaning its features are there.
pub fn kernels() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return "avx512f";
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return "avx2+fma";
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        if std::arch::is_aarch64_feature_detected!("neon") {
            return "neon";
        }
    }
    "scalar"
}

/// The team of [`threads`] threads that every product runs on.
fn team() -> &'static Team {
    static TEAM: std::sync::OnceLock<Team> = std::sync::OnceLock::new();
    TEAM.get_or_init(|| Team::new(threads()))
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
    /// One step on: `t + 1` (held at `u32::MAX`, as on the GPU, so a run past 2^32 steps keeps
    /// the schedule's rate from there), the powers once more.
    pub fn advance(&mut self, opt: &Optimizer) {
        self.t = self.t.saturating_add(1);
        self.beta1_t *= opt.beta1;
        self.beta2_t *= opt.beta2;
    }
}

/// One optimizer step of the parameters `p` from their gradient `g`, with the per-element state
/// `m` (momentum buffer, or Adam's first moment) and `v` (Adam's second moment), at this step's
/// learning rate `lr` (the schedule's), in the order of operations of `shaders/optimizer.wgsl`.
/// With weight decay `wd` (L2, PyTorch's `weight_decay` of SGD and Adam) the gradient is first
/// `g + wd·p`; AdamW decays the parameters instead:
/// - sgd: `p = p - lr·g`
/// - momentum: `m = μ·m + g; p = p - lr·m` (Nesterov: `p = p - lr·(g + μ·m)`)
/// - adam: `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
///   p = p - (lr / (1-β1^t))·(m / (sqrt(v) / sqrt(1-β2^t) + eps))`
/// - adamw: `p = p·(1 - lr·wd)`, then adam's step without decay in `g`
pub fn optimizer_update(
    p: &mut [f32],
    g: &[f32],
    (m, v): (&mut [f32], &mut [f32]),
    opt: &Optimizer,
    lr: f32,
    c: OptCounters,
) {
    let wd = opt.weight_decay;
    // L2 decay joins the gradient (every kind but AdamW's decoupled decay).
    let l2 = wd != 0.0 && opt.kind != OptimizerKind::AdamW;
    let grad = |g: f32, p: f32| if l2 { g + wd * p } else { g };
    match opt.kind {
        OptimizerKind::Sgd => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * grad(g, *p);
            }
        }
        OptimizerKind::Momentum => {
            let mu = opt.momentum;
            for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                let g = grad(g, *p);
                *m = mu * *m + g;
                let step = if opt.nesterov { g + mu * *m } else { *m };
                *p -= lr * step;
            }
        }
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            let (b1, b2, eps) = (opt.beta1, opt.beta2, opt.eps);
            let step_size = lr / (1.0 - c.beta1_t);
            let bc2_sqrt = (1.0 - c.beta2_t).sqrt();
            let decay = 1.0 - lr * wd;
            let adamw = opt.kind == OptimizerKind::AdamW;
            // Iterators rather than indices, so the loop vectorises (sqrt and division included).
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = grad(g, *p);
                let p0 = if adamw { *p * decay } else { *p };
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * (g * g);
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p = p0 - step_size * (*m / denom);
            }
        }
    }
}

/// The activation of one pre-activation value `z` (see [`Activation`]), in f32 as `act_forward`
/// in `shaders/activation.wgsl`.
pub fn act_forward(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu(slope) => {
            if z > 0.0 {
                z
            } else {
                slope * z
            }
        }
        Activation::Tanh => tanh(z),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Gelu => z * normal_cdf(z),
        Activation::None => z,
    }
}

/// The gradient `g` through the activation, from `aux`: the activation's output for every kind
/// but GELU, whose input it is (see [`Activation::needs_input`]); as `act_backward` in
/// `shaders/activation.wgsl`.
pub fn act_backward(act: Activation, g: f32, aux: f32) -> f32 {
    match act {
        Activation::Relu => {
            if aux > 0.0 {
                g
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(slope) => {
            if aux > 0.0 {
                g
            } else {
                slope * g
            }
        }
        Activation::Tanh => g * (1.0 - aux * aux),
        Activation::Sigmoid => g * (aux * (1.0 - aux)),
        Activation::Gelu => {
            // d/dz z·Φ(z) = Φ(z) + z·φ(z)
            let pdf = (-0.5 * (aux * aux)).exp() * FRAC_1_SQRT_2PI;
            g * (normal_cdf(aux) + aux * pdf)
        }
        Activation::None => g,
    }
}

/// `1 / sqrt(2π)`
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `tanh(z)`: `(1 - e^-2|z|) / (1 + e^-2|z|)` with `z`'s sign, and below |z| = 1/4 its Taylor
/// series to z⁹ (where the quotient would lose relative precision to cancellation); relative
/// error below 3e-7 (tested against f64). Not the WGSL builtin, whose precision and overflow
/// behaviour WebGPU leaves to the implementation.
pub fn tanh(z: f32) -> f32 {
    let x = z.abs();
    if x < 0.25 {
        let x2 = z * z;
        // z - z³/3 + 2z⁵/15 - 17z⁷/315 + 62z⁹/2835
        let p = ((((62.0 / 2835.0) * x2 - 17.0 / 315.0) * x2 + 2.0 / 15.0) * x2 - 1.0 / 3.0) * x2;
        return z + z * p;
    }
    let t = (-2.0 * x).exp();
    let r = (1.0 - t) / (1.0 + t);
    if z < 0.0 {
        -r
    } else {
        r
    }
}

/// `erfc(x)` for `x >= 0`: the Chebyshev fit of Numerical Recipes (`erfcc`), fractional error
/// below 1.2e-7 everywhere, in f32 (as `erfc_pos` in `shaders/activation.wgsl`: WGSL has no
/// erf); f32 rounding adds ~3e-7 and, through `x²` in the exponent, ~1.2e-7·x² (tested: within
/// `4e-7 + 1.2e-7·x²` relative of f64 for x < 9, where erfc is 4e-37).
// The fit's coefficients as published (and as in the WGSL, so both round them alike).
#[allow(clippy::excessive_precision)]
pub fn erfc_pos(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_87;
    p = p * t - 1.135_203_98;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_68;
    p = p * t - 1.265_512_23;
    t * (p - x * x).exp()
}

/// The standard normal CDF `Φ(z) = erfc(-z/√2) / 2`, through [`erfc_pos`] on `|z|/√2` so that the
/// lower tail keeps its relative precision.
pub fn normal_cdf(z: f32) -> f32 {
    let e = 0.5 * erfc_pos(z.abs() * std::f32::consts::FRAC_1_SQRT_2);
    if z < 0.0 {
        e
    } else {
        1.0 - e
    }
}

/// `a = act(a)` in place over a hidden layer's pre-activations, keeping them in `z` (the same
/// shape) for the backward pass where that needs them (GELU); `z` is empty where nothing is kept
/// (the other kinds, and a forward pass alone).
pub fn activation_forward(a: &mut [f32], z: &mut [f32], act: Activation) {
    if act.needs_input() && !z.is_empty() {
        z.copy_from_slice(a);
    }
    for v in a {
        *v = act_forward(act, *v);
    }
}

/// `g` through the activation, from `aux`: the layer's output, or for GELU its input (see
/// [`act_backward`]).
pub fn activation_backward(g: &mut [f32], aux: &[f32], act: Activation) {
    for (g, &a) in g.iter_mut().zip(aux) {
        *g = act_backward(act, *g, a);
    }
}

/// The loss of the prediction `p` (`[rows, cols]`) against `y` and its gradient, as the GPU's
/// error epilogues, `cross_entropy` and `loss_reduce` compute them. For the element losses, with
/// `d = p - y` and `N = p.len()`: writes the per-element values `vals = d²` (`|d|` for L1) and the
/// gradient `g = s·d` (`s·sign(d)` for L1, `sign(0) = 0`), `s = loss.grad_coef`, and returns
/// `loss.scale · Σ vals` summed in `loss_reduce`'s order. For cross-entropy see
/// [`cross_entropy`]: `vals` then holds the per-row losses in its first `rows` entries.
pub fn loss_forward(
    g: &mut [f32],
    vals: &mut [f32],
    p: &[f32],
    y: &[f32],
    cols: usize,
    loss: Loss,
) -> f32 {
    let n = p.len();
    let rows = n / cols;
    let s = loss.grad_coef(rows, cols);
    if loss.is_classification() {
        let row_loss = &mut vals[..rows];
        cross_entropy(g, row_loss, p, y, cols, s);
        return loss_reduce(row_loss) * loss.scale(rows, cols);
    }
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
    loss_reduce(vals) * loss.scale(rows, cols)
}

/// Softmax cross-entropy of the logits `z` (`[rows, cols]`) against probability rows `y`, row by
/// row as `shaders/cross_entropy.wgsl` computes it: `m = max_j z_j`, `s = Σ_j e^(z_j - m)`,
/// `Σy = Σ_j y_j`; the row's loss `Σ_j y_j·((m - z_j) + ln s)` into `row_loss[r]` (each term
/// is >= 0: no cancellation for large logits) and the gradient
/// `g_j = (e^(z_j - m) / s · Σy - y_j) · coef` (`softmax - y` for a distribution `y`).
pub fn cross_entropy(
    g: &mut [f32],
    row_loss: &mut [f32],
    z: &[f32],
    y: &[f32],
    cols: usize,
    coef: f32,
) {
    for (r, loss) in row_loss.iter_mut().enumerate() {
        let (z, y) = (&z[r * cols..][..cols], &y[r * cols..][..cols]);
        let g = &mut g[r * cols..][..cols];
        let m = z[1..].iter().fold(z[0], |m, &v| m.max(v));
        let (mut s, mut ys) = (0.0f32, 0.0f32);
        for j in 0..cols {
            s += (z[j] - m).exp();
            ys += y[j];
        }
        let ls = s.ln();
        let mut l = 0.0f32;
        for j in 0..cols {
            l += y[j] * ((m - z[j]) + ls);
        }
        *loss = l;
        for j in 0..cols {
            g[j] = ((z[j] - m).exp() / s * ys - y[j]) * coef;
        }
    }
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
                    unsafe { p.run(epilogue, Post::Nothing, &Team::new(2)) };
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

    /// Random-ish values in [-1, 1) from a seed.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// `matmul_then` on a team of `threads` (the global team has the machine's size).
    #[allow(clippy::too_many_arguments)]
    fn product_on(
        threads: usize,
        c: &mut [f32],
        a: &[f32],
        b: &[f32],
        dims: (usize, usize, usize),
        trans: (bool, bool),
        epilogue: Epilogue,
        then: Then,
    ) {
        matmul_on(&Team::new(threads), c, a, b, dims, trans, epilogue, then);
    }

    #[test]
    fn split_k_products_match_naive_on_any_team() {
        // k >= SPLIT_K_RATIO·max(m, n) and over SPLIT_MIN_MACS: the inner dimension is split
        // (a store), into parts that do not divide it evenly; C is poisoned first.
        for (m, n, k) in [(17, 23, 3001), (64, 100, 1000), (1, 260, 4099)] {
            assert!(m * n * k >= SPLIT_MIN_MACS && k >= SPLIT_K_RATIO * m.max(n));
            let a = values(m * k, 1);
            let b = values(k * n, 2);
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let want = naive(&a, &b, m, n, k, ta, tb);
                for threads in [2, 3] {
                    let mut c = vec![f32::NAN; m * n];
                    let (dims, tr) = ((m, n, k), (ta, tb));
                    product_on(
                        threads,
                        &mut c,
                        &a,
                        &b,
                        dims,
                        tr,
                        Epilogue::Store,
                        Then::Nothing,
                    );
                    for (i, (g, w)) in c.iter().zip(&want).enumerate() {
                        assert!(
                            (g - w).abs() < 1e-4 * (k as f32).sqrt(),
                            "{m}x{n}x{k} ta={ta} tb={tb} threads {threads} [{i}]: {g} vs {w}"
                        );
                    }
                }
            }
        }
    }

    /// The epilogues fused into each thread's part are the separate ops, bit for bit, on every
    /// way a product is split: unsplit, by columns, by rows, by the inner dimension.
    #[test]
    fn fused_epilogues_are_the_separate_ops_bit_for_bit_on_every_split() {
        let shapes = [
            (7, 9, 5, "unsplit"),
            (97, 151, 101, "columns"),
            (151, 97, 101, "rows"),
            (17, 63, 1001, "inner dimension"),
        ];
        for (m, n, k, how) in shapes {
            let a = values(m * k, 3);
            let b = values(k * n, 4);
            let bias = values(n, 5);
            let aux = values(m * n, 6);
            for threads in [1, 2, 3] {
                let dims = (m, n, k);
                let mut plain = vec![f32::NAN; m * n];
                product_on(
                    threads,
                    &mut plain,
                    &a,
                    &b,
                    dims,
                    (false, false),
                    Epilogue::Store,
                    Then::Nothing,
                );
                for act in Activation::ALL {
                    // Bias, then the activation, keeping the pre-activation where it is needed.
                    let mut want = plain.clone();
                    bias_forward(&mut want, &bias);
                    let mut want_pre = vec![f32::NAN; m * n];
                    if !act.needs_input() {
                        want_pre.clear();
                    }
                    activation_forward(&mut want, &mut want_pre, act);
                    let mut got = vec![f32::NAN; m * n];
                    let mut pre = vec![f32::NAN; if act.needs_input() { m * n } else { 0 }];
                    let then = Then::Activate {
                        bias: &bias,
                        act,
                        pre: &mut pre,
                    };
                    product_on(
                        threads,
                        &mut got,
                        &a,
                        &b,
                        dims,
                        (false, false),
                        Epilogue::Store,
                        then,
                    );
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&got), bits(&want), "{how}, {threads} threads, {act}");
                    assert_eq!(
                        bits(&pre),
                        bits(&want_pre),
                        "{how}, {threads} threads, {act} pre"
                    );
                    // The gradient through the activation below.
                    let mut want = plain.clone();
                    activation_backward(&mut want, &aux, act);
                    let mut got = vec![f32::NAN; m * n];
                    let then = Then::Gradient { act, aux: &aux };
                    product_on(
                        threads,
                        &mut got,
                        &a,
                        &b,
                        dims,
                        (false, false),
                        Epilogue::Store,
                        then,
                    );
                    assert_eq!(
                        bits(&got),
                        bits(&want),
                        "{how}, {threads} threads, {act} grad"
                    );
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

    /// The f32 activations against f64 (libm's erf and erfc): the errors the doc comments state.
    #[test]
    fn tanh_erfc_and_gelu_are_within_their_stated_errors_of_f64() {
        let grid = (-4000..=4000).map(|i| i as f32 * 0.005); // [-20, 20]
        let (mut tanh_rel, mut erfc_rel, mut cdf_abs) = (0.0f64, 0.0f64, 0.0f64);
        for z in grid {
            let zd = z as f64;
            if z != 0.0 {
                tanh_rel = tanh_rel.max(((tanh(z) as f64 - zd.tanh()) / zd.tanh()).abs());
            }
            if (0.0..9.0).contains(&z) {
                // The fit's 1.2e-7, f32 rounding of its dozen operations, and of x² in exp's
                // argument (relative 2^-24·x²).
                let want = libm::erfc(zd);
                let rel = ((erfc_pos(z) as f64 - want) / want).abs();
                erfc_rel = erfc_rel.max(rel / (4e-7 + 1.2e-7 * zd * zd));
            }
            let want = 0.5 * libm::erfc(-zd / std::f64::consts::SQRT_2);
            cdf_abs = cdf_abs.max((normal_cdf(z) as f64 - want).abs());
        }
        eprintln!("tanh {tanh_rel:e} relative, erfc {erfc_rel} of its bound, Φ {cdf_abs:e}");
        assert!(tanh_rel < 3e-7, "tanh: {tanh_rel:e}");
        assert!(erfc_rel <= 1.0, "erfc: {erfc_rel} of its bound");
        assert!(cdf_abs < 2e-7, "Φ: {cdf_abs:e}");
        // The backward formulas are the derivatives of the forward ones.
        for act in Activation::ALL {
            for z in [-3.1f32, -0.7, -0.1, 0.2, 0.9, 2.5] {
                let h = 1e-3f64;
                let f = |v: f64| act_forward(act, v as f32) as f64;
                let fd = (f(z as f64 + h) - f(z as f64 - h)) / (2.0 * h);
                let aux = if act.needs_input() {
                    z
                } else {
                    act_forward(act, z)
                };
                let got = act_backward(act, 1.0, aux) as f64;
                assert!((got - fd).abs() < 2e-3, "{act} at {z}: {got} vs {fd}");
            }
        }
    }

    #[test]
    fn cross_entropy_is_stable_and_its_gradient_sums_to_zero_per_row() {
        // Logits far beyond exp's range: the max is subtracted.
        let z = [1000.0f32, 999.0, 0.0, -1000.0, -1001.0, -1002.0];
        let y = [1.0f32, 0.0, 0.0, 0.0, 0.5, 0.5];
        let (mut g, mut row_loss) = ([0.0f32; 6], [0.0f32; 2]);
        cross_entropy(&mut g, &mut row_loss, &z, &y, 3, 0.5);
        let lse0 = 1000.0 + (1.0f64 + (-1.0f64).exp() + (-1000.0f64).exp()).ln();
        assert!(
            (row_loss[0] as f64 - (lse0 - 1000.0)).abs() < 1e-6,
            "{row_loss:?}"
        );
        let lse1 = -1000.0 + (1.0f64 + (-1.0f64).exp() + (-2.0f64).exp()).ln();
        let want1 = 0.5 * (lse1 + 1001.0) + 0.5 * (lse1 + 1002.0);
        assert!((row_loss[1] as f64 - want1).abs() < 1e-4, "{row_loss:?}");
        for row in g.chunks(3) {
            assert!(row.iter().sum::<f32>().abs() < 1e-7, "{g:?}");
        }
        assert!(g.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn loss_reduce_is_the_plain_sum() {
        let v: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(loss_reduce(&v), 499_500.0);
        assert_eq!(loss_reduce(&[2.5]), 2.5);
    }
}
