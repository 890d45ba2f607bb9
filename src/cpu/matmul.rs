//! The CPU twin of `shaders/matmul.wgsl`: the product `c = op(a)·op(b)` with its epilogues,
//! split over the CPU path's thread team; the ISA and thread count it runs with.

use super::activation::{activation_backward, activation_forward};
use super::bias_update::bias_forward;
use super::team::Team;
use crate::job::Activation;

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
pub(super) fn matmul_on(
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
    pub(super) fn new(then: Then, m: usize, n: usize) -> Post {
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
pub(super) enum Post {
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
pub(super) struct Product {
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
    pub(super) fn new(
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
pub(super) const SPLIT_MIN_MACS: usize = 1 << 20;

/// A plain product whose inner dimension is at least this many times its longer side is split
/// over the inner dimension: the default job's `x·w1` (64x100x1000) ran 1.15x faster so than
/// split by columns (0.093 s against 0.107 s for the whole job, paired runs), since each thread
/// then reads the rows of w1 that it stepped itself, in its own cache (benches/README.md).
pub(super) const SPLIT_K_RATIO: usize = 4;

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
    pub(super) unsafe fn run(self, epilogue: Epilogue, post: Post, team: &Team) {
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
pub(super) fn team() -> &'static Team {
    static TEAM: std::sync::OnceLock<Team> = std::sync::OnceLock::new();
    TEAM.get_or_init(|| Team::new(threads()))
}
