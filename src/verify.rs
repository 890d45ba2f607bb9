//! `gpu-train verify`: the kernel conformance suite as a command, for anyone who wants to know
//! whether a GPU and its driver compute right. Every kernel, variant, layout and epilogue runs on
//! awkward shapes (1, 7, 63, 64, 65, 100, 1000, 1001 across the dimensions) with its outputs
//! poisoned with NaN first, and is checked element by element against the CPU reference with a
//! stated error bound; then a few training steps of each optimizer, loss and activation (and a
//! learning-rate schedule with weight decay) are checked against the CPU's trajectory.
//!
//! The bounds: a product element `v = Σ_p a_ip·b_pj` of length k is within `γ_k·S` of the exact
//! value in any f32 summation order (`S = Σ_p |a_ip|·|b_pj|`, `γ_k = k·u/(1-k·u)`, u = 2^-24:
//! Higham, §3.1), so the GPU and the CPU may differ by `2γ_k·S`; each epilogue carries that through
//! its own derivative, plus a few units of rounding of its result (see [`epilogue_bound`]).
//! Reductions that the two paths compute in the same order (`bias_update`'s column sums,
//! `loss_reduce`) must match bit for bit. A check's figure is the worst `|gpu - cpu| / bound` over
//! its elements: at most 1 passes; a NaN (an element never written) is infinite.

use crate::backend::Backend;
use crate::bench;
use crate::cpu::{self, CpuBackend, Epilogue};
#[cfg(not(target_arch = "wasm32"))]
use crate::devices::Device;
use crate::devices::{DeviceInfo, Host};
use crate::error::{Error, Result};
use crate::gpu::layout::Layout;
use crate::gpu::tune;
use crate::gpu::{
    run_bias_update, run_cross_entropy, run_loss_reduce, run_matmul, Acc, Act, Block, GpuBackend,
    GpuContext, LimitsChoice, MatmulKey, Mode, Opt, Update,
};
use crate::init::{HostState, Matrix};
use crate::job::{Activation, InitScheme, Job, Loss, Optimizer, OptimizerKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the JSON file says it is.
pub const FORMAT: &str = "gpu-train verify";
pub const SCHEMA_VERSION: u32 = 1;

/// Testing hook: `GPU_TRAIN_VERIFY_PERTURB=KERNEL` (or `KERNEL@SHAPE`) adds 1 to the first element
/// of that kernel's GPU result (on that shape) before it is checked, so that the suite can be
/// shown to fail, naming the kernel and the shape.
pub const PERTURB_ENV: &str = "GPU_TRAIN_VERIFY_PERTURB";

/// What one `verify` run covers.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// `--device` values; empty: every adapter that can run compute shaders.
    pub devices: Vec<String>,
    /// `--layout`: one layout (None: every layout each adapter can run).
    pub layout: Option<Layout>,
    pub limits: LimitsChoice,
    /// A reduced set of shapes and training runs, in the layout training takes on each adapter
    /// unless `layout` names one (under a minute on lavapipe).
    pub quick: bool,
}

/// One check: a kernel (and epilogue) in one variant and layout on one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Index into [`Report::devices`].
    pub device: usize,
    /// `matmul/<epilogue>`, `bias_update/<store|sgd>`, `loss_reduce` or `train/<optimizer>/<loss>`.
    pub kernel: String,
    /// The matmul block (`4x4`, `8x8`, `16x16`), or `-`.
    pub variant: String,
    pub layout: String,
    /// `MxNxK` for products, `RxC` for the others, the net for training.
    pub shape: String,
    /// The worst `|gpu - cpu| / bound` over the elements (infinite for NaN or a wrong length).
    pub ratio: f64,
    /// What the bound is.
    pub bound: String,
    pub passed: bool,
    /// Why the check could not run, or what else failed (non-zero padding).
    #[serde(default)]
    pub note: Option<String>,
}

/// A whole run: where, what, and every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub schema_version: u32,
    pub tool_version: String,
    #[serde(default)]
    pub git_commit: Option<String>,
    pub created_unix_s: u64,
    pub quick: bool,
    pub host: Host,
    pub devices: Vec<DeviceInfo>,
    pub checks: Vec<Check>,
}

impl Report {
    /// A report with no checks yet, stamped now.
    pub fn new(quick: bool, host: Host, devices: Vec<DeviceInfo>) -> Self {
        Report {
            format: FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("GPU_TRAIN_GIT_COMMIT").map(String::from),
            created_unix_s: crate::io::unix_now(),
            quick,
            host,
            devices,
            checks: Vec::new(),
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Write the report as JSON, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Gpu(e.to_string()))?;
        crate::io::atomic_write(path, |w| w.write_all(text.as_bytes()))
    }
}

/// The table's head and one line per check.
pub fn header() -> String {
    format!(
        "{:<24} {:<6} {:<7} {:<18} {:>10}  result",
        "kernel", "variant", "layout", "shape", "err/bound"
    )
}

pub fn line(c: &Check) -> String {
    let result = if c.passed { "pass" } else { "FAIL" };
    let note = c
        .note
        .as_deref()
        .map_or(String::new(), |n| format!("  ({n})"));
    format!(
        "{:<24} {:<6} {:<7} {:<18} {:>10.3e}  {result}{note}",
        c.kernel, c.variant, c.layout, c.shape, c.ratio
    )
}

/// The worst `|got - want| / bound` (0/0 counts as 0; a NaN, or a length mismatch, as infinite).
pub fn worst_ratio(got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    for ((&g, &w), &b) in got.iter().zip(want).zip(bound) {
        let d = (g as f64 - w).abs();
        let r = if d == 0.0 { 0.0 } else { d / b };
        if r.is_nan() {
            return f64::INFINITY;
        }
        worst = worst.max(r);
    }
    worst
}

const U: f64 = f32::EPSILON as f64 / 2.0;

/// `2·γ_k`: how far two correct f32 products of length k may be apart, per unit of `|A|·|B|`.
fn two_gamma(k: usize) -> f64 {
    let ku = k.max(1) as f64 * U;
    2.0 * ku / (1.0 - ku)
}

/// The matmul epilogues the suite checks, each with what it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Epi {
    Store,
    Relu,
    Mask,
    Sgd,
    SquaredError,
    AbsError,
    Bias,
    /// A shared layer's gradient summed: ACC_IN and ACC_OUT (the sum so far plus the product).
    Sum,
}

impl Epi {
    const ALL: [Epi; 8] = [
        Epi::Store,
        Epi::Relu,
        Epi::Mask,
        Epi::Sgd,
        Epi::SquaredError,
        Epi::AbsError,
        Epi::Bias,
        Epi::Sum,
    ];

    fn name(self) -> &'static str {
        match self {
            Epi::Store => "store",
            Epi::Relu => "relu",
            Epi::Mask => "mask",
            Epi::Sgd => "sgd",
            Epi::SquaredError => "sq-err",
            Epi::AbsError => "abs-err",
            Epi::Bias => "bias",
            Epi::Sum => "sum",
        }
    }

    /// The mode and transposes training uses this epilogue with.
    fn key(self, layout: Layout, block: Block, trans: (bool, bool)) -> MatmulKey {
        let mode = match self {
            Epi::Store | Epi::Bias | Epi::Sum => Mode::Store,
            Epi::Relu => Mode::Activate,
            Epi::Mask => Mode::ActivationGrad,
            Epi::Sgd => Mode::Update,
            Epi::SquaredError => Mode::SquaredError,
            Epi::AbsError => Mode::AbsError,
        };
        MatmulKey {
            trans_a: trans.0,
            trans_b: trans.1,
            mode,
            block,
            bias: self == Epi::Bias,
            opt: Opt::Sgd,
            update: Update::default(),
            act: Act::default(),
            acc: if self == Epi::Sum {
                Acc {
                    input: true,
                    output: true,
                }
            } else {
                Acc::default()
            },
            layout,
        }
    }

    /// The transposes to check it with: every combination for the plain product, training's for
    /// the others (x·w forward, g·wᵀ for the mask, aᵀ·g for the weight update and the sum).
    fn transposes(self) -> &'static [(bool, bool)] {
        match self {
            Epi::Store => &[(false, false), (true, false), (false, true), (true, true)],
            Epi::Mask => &[(false, true)],
            Epi::Sgd | Epi::Sum => &[(true, false)],
            _ => &[(false, false)],
        }
    }
}

/// What one epilogue check compares: the GPU's output, the CPU's, and the bound per element.
struct Compared {
    got: Vec<f32>,
    want: Vec<f64>,
    bound: Vec<f64>,
}

/// The CPU's values of an output and the bound of each element.
type Expected = (Vec<f64>, Vec<f64>);

/// The CPU reference of epilogue `e` on the CPU's product `v` (f32, row-major `[m, n]`) and its
/// bound from `err` (`2γ_k·S` per element): `(want, bound)` for C, and for the error modes and
/// the sum also for AUX_OUT.
fn epilogue_bound(e: Epi, v: &[f32], err: &[f64], extra: &Extra) -> (Expected, Option<Expected>) {
    let tiny = f64::MIN_POSITIVE;
    let each =
        |f: &dyn Fn(usize) -> (f64, f64)| -> (Vec<f64>, Vec<f64>) { (0..v.len()).map(f).unzip() };
    match e {
        Epi::Store => (each(&|i| (v[i] as f64, err[i])), None),
        Epi::Relu => (each(&|i| ((v[i] as f64).max(0.0), err[i])), None),
        Epi::Mask => (
            each(&|i| {
                if extra.aux[i] > 0.0 {
                    (v[i] as f64, err[i])
                } else {
                    (0.0, tiny)
                }
            }),
            None,
        ),
        Epi::Sgd => (
            each(&|i| {
                let (old, step) = (extra.aux[i] as f64, extra.lr as f64 * v[i] as f64);
                let want = old - step;
                (
                    want,
                    extra.lr as f64 * err[i] + 2.0 * U * (old.abs() + step.abs()) + tiny,
                )
            }),
            None,
        ),
        Epi::SquaredError => {
            let s = extra.coef as f64;
            let d = |i: usize| v[i] as f64 - extra.aux[i] as f64;
            let derr = |i: usize| err[i] + U * d(i).abs();
            let g = each(&|i| (s * d(i), s * derr(i) + U * (s * d(i)).abs() + tiny));
            let sq = each(&|i| {
                let d2 = d(i) * d(i);
                (
                    d2,
                    2.0 * d(i).abs() * derr(i) + derr(i) * derr(i) + 2.0 * U * d2 + tiny,
                )
            });
            (g, Some(sq))
        }
        Epi::AbsError => {
            let s = extra.coef as f64;
            let d = |i: usize| v[i] as f64 - extra.aux[i] as f64;
            let derr = |i: usize| err[i] + U * d(i).abs();
            // Where d is within its own error of 0, its sign may come out either way.
            let g = each(&|i| {
                if d(i).abs() <= derr(i) {
                    (0.0, s.abs() + tiny)
                } else {
                    (s * d(i).signum(), tiny)
                }
            });
            let abs = each(&|i| (d(i).abs(), derr(i) + tiny));
            (g, Some(abs))
        }
        Epi::Bias => {
            let n = extra.bias.len();
            (
                each(&|i| {
                    let want = v[i] as f64 + extra.bias[i % n] as f64;
                    (want, err[i] + 2.0 * U * want.abs() + tiny)
                }),
                None,
            )
        }
        Epi::Sum => {
            let sum = each(&|i| {
                let want = extra.aux[i] as f64 + v[i] as f64;
                (want, err[i] + 2.0 * U * want.abs() + tiny)
            });
            // C is not written while summing: its NaN poison stays (not compared).
            ((Vec::new(), Vec::new()), Some(sum))
        }
    }
}

/// The inputs an epilogue reads besides A and B.
struct Extra {
    /// AUX (y, the activation, the old weights) or the sum so far, `[m, n]`.
    aux: Vec<f32>,
    bias: Vec<f32>,
    lr: f32,
    coef: f32,
}

/// The generator of a check's inputs.
fn seeded(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// `KERNEL` or `KERNEL@SHAPE` from the environment.
fn perturbed() -> Option<(String, Option<String>)> {
    let v = std::env::var(PERTURB_ENV).ok().filter(|s| !s.is_empty())?;
    Some(match v.split_once('@') {
        Some((k, s)) => (k.to_string(), Some(s.to_string())),
        None => (v, None),
    })
}

/// Apply the perturbation hook to a GPU result, if it names this kernel and shape.
fn perturb(kernel: &str, shape: &str, got: &mut [f32]) {
    if let Some((k, s)) = perturbed() {
        if k == kernel && s.as_deref().is_none_or(|s| s == shape) {
            if let Some(x) = got.first_mut() {
                *x += 1.0;
            }
        }
    }
}

/// Shapes `(m, n, k)` in which 1, 7, 63, 64, 65, 100, 1000 and 1001 each appear as M, as N and as
/// K (as in tests/library/kernels.rs), plus a few around the 4-, 8- and 16-wide blocks; `--quick` takes a
/// few of them.
fn shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    const S: [usize; 8] = [1, 7, 63, 64, 65, 100, 1000, 1001];
    let mut v: Vec<_> = (0..8).map(|i| (S[i], S[7 - i], S[(i + 3) % 8])).collect();
    v.extend([(2, 3, 5), (17, 33, 9), (33, 17, 130)]);
    if quick {
        vec![(1, 1001, 64), (65, 7, 1000), (17, 33, 9)]
    } else {
        v
    }
}

struct Suite<'a> {
    checks: &'a mut Vec<Check>,
    device: usize,
    on_check: &'a mut dyn FnMut(&Check),
}

impl Suite<'_> {
    fn push(&mut self, check: Check) {
        (self.on_check)(&check);
        self.checks.push(check);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        kernel: String,
        variant: &str,
        layout: Layout,
        shape: String,
        bound: &str,
        outcome: Result<(f64, Option<String>)>,
    ) {
        let (ratio, note) = match outcome {
            Ok((r, note)) => (r, note),
            Err(e) => (f64::INFINITY, Some(e.to_string())),
        };
        self.push(Check {
            device: self.device,
            kernel,
            variant: variant.into(),
            layout: layout.name().into(),
            shape,
            ratio,
            bound: bound.into(),
            passed: ratio <= 1.0 && note.is_none(),
            note,
        });
    }
}

/// One matmul check: the GPU's outputs against the CPU reference for epilogue `e`.
async fn matmul_check(
    ctx: &GpuContext,
    key: MatmulKey,
    e: Epi,
    dims: (usize, usize, usize),
    seed: u64,
) -> Result<(Vec<Compared>, bool)> {
    let (m, n, k) = dims;
    let (a, b) = tune::random_inputs(key, dims, seed);
    let (v, scale) = tune::cpu_reference(key, &a, &b, dims);
    let g2 = two_gamma(k);
    let err: Vec<f64> = scale.iter().map(|&s| g2 * s as f64).collect();
    let mut r = seeded(seed ^ 0x5eed);
    let extra = Extra {
        aux: Matrix::randn(m, n, &mut r).data,
        bias: Matrix::randn(1, n, &mut r).data,
        lr: 0.25,
        coef: match e {
            Epi::AbsError => Loss::L1.grad_coef(m, n),
            _ => Loss::Sse.grad_coef(m, n),
        },
    };
    let poison = vec![f32::NAN; m * n];
    let (scalar, c_init, aux, bias, sum) = match e {
        Epi::Store | Epi::Relu => (0.0, &poison, None, None, None),
        Epi::Mask => (0.0, &poison, Some(&extra.aux[..]), None, None),
        Epi::Sgd => (extra.lr, &extra.aux, None, None, None),
        Epi::SquaredError | Epi::AbsError => {
            (extra.coef, &poison, Some(&extra.aux[..]), None, None)
        }
        Epi::Bias => (0.0, &poison, None, Some(&extra.bias[..]), None),
        Epi::Sum => (0.0, &poison, None, None, Some(&extra.aux[..])),
    };
    let out = run_matmul(ctx, key, &a, &b, dims, scalar, c_init, aux, bias, sum).await?;
    let ((want_c, bound_c), second) = epilogue_bound(e, &v, &err, &extra);
    let mut compared = Vec::new();
    if !want_c.is_empty() {
        compared.push(Compared {
            got: out.c,
            want: want_c,
            bound: bound_c,
        });
    }
    if let Some((want, bound)) = second {
        compared.push(Compared {
            got: out.aux_out,
            want,
            bound,
        });
    }
    Ok((compared, out.padding_zero))
}

/// Every matmul check on `ctx` in `layout`.
async fn matmul_checks(suite: &mut Suite<'_>, ctx: &GpuContext, layout: Layout, quick: bool) {
    for e in Epi::ALL {
        for &trans in e.transposes() {
            for (si, dims) in shapes(quick).into_iter().enumerate() {
                for block in Block::of_layout(layout) {
                    let key = e.key(layout, block, trans);
                    let t = |b: bool| if b { "ᵀ" } else { "" };
                    let kernel = format!("matmul/{}", e.name());
                    let (m, n, k) = dims;
                    let shape = format!("A{}B{} {m}x{n}x{k}", t(trans.0), t(trans.1));
                    let seed =
                        (si as u64) << 8 | (e as u64) << 4 | trans.0 as u64 | (trans.1 as u64) << 1;
                    let outcome =
                        matmul_check(ctx, key, e, dims, seed)
                            .await
                            .map(|(mut cmp, pad)| {
                                if let Some(first) = cmp.first_mut() {
                                    perturb(&kernel, &format!("{m}x{n}x{k}"), &mut first.got);
                                }
                                let ratio = (cmp.iter())
                                    .map(|c| worst_ratio(&c.got, &c.want, &c.bound))
                                    .fold(0.0, f64::max);
                                let note =
                                    (!pad).then(|| "non-zero padding left in the output".into());
                                (ratio, note)
                            });
                    suite.record(kernel, block.name(), layout, shape, "2γ_k·|A|·|B|", outcome);
                }
            }
        }
    }
}

/// `bias_update` (the column sums bit for bit, the SGD step within rounding) on `ctx` in `layout`.
async fn bias_checks(suite: &mut Suite<'_>, ctx: &GpuContext, layout: Layout, quick: bool) {
    let shapes: &[(usize, usize)] = if quick {
        &[(7, 3), (63, 65)]
    } else {
        &[(1, 1), (7, 3), (64, 100), (63, 65), (1001, 7), (5, 1000)]
    };
    for &(rows, cols) in shapes {
        let mut r = seeded((rows * 10_000 + cols) as u64);
        let g = Matrix::randn(rows, cols, &mut r).data;
        let b = &Matrix::randn(1, cols, &mut r).data[..];
        let mut db = b.to_vec();
        cpu::bias_update(&mut db, &g, Epilogue::Store);
        let shape = format!("{rows}x{cols}");
        let lr = 0.125f32;
        for store in [true, false] {
            let kernel = format!("bias_update/{}", if store { "store" } else { "sgd" });
            let outcome = run_bias_update(ctx, layout, &g, (rows, cols), b, lr, store)
                .await
                .map(|mut got| {
                    perturb(&kernel, &shape, &mut got);
                    let (want, bound): (Vec<f64>, Vec<f64>) = (0..cols)
                        .map(|j| {
                            if store {
                                (db[j] as f64, f64::MIN_POSITIVE)
                            } else {
                                let step = lr as f64 * db[j] as f64;
                                let want = b[j] as f64 - step;
                                (
                                    want,
                                    2.0 * U * (b[j].abs() as f64 + step.abs()) + f64::MIN_POSITIVE,
                                )
                            }
                        })
                        .unzip();
                    (worst_ratio(&got, &want, &bound), None)
                });
            let bound = if store {
                "bit-exact"
            } else {
                "2u·(|b|+|lr·db|)"
            };
            suite.record(kernel, "-", layout, shape.clone(), bound, outcome);
        }
    }
}

/// `loss_reduce` bit for bit against the CPU's reduction in the same order.
async fn loss_reduce_checks(suite: &mut Suite<'_>, ctx: &GpuContext, layout: Layout, quick: bool) {
    let shapes: &[(usize, usize)] = if quick {
        &[(64, 10), (63, 65)]
    } else {
        &[(1, 1), (7, 3), (64, 10), (63, 65), (1001, 7), (100, 1000)]
    };
    for &(rows, cols) in shapes {
        let v = Matrix::randn(rows, cols, &mut seeded((rows * 7 + cols) as u64)).data;
        let v: Vec<f32> = v.iter().map(|x| x * x).collect();
        let want = cpu::loss_reduce(&v);
        let shape = format!("{rows}x{cols}");
        let outcome = run_loss_reduce(ctx, &v, (rows, cols))
            .await
            .map(|(got, epoch)| {
                let mut got = [got];
                perturb("loss_reduce", &shape, &mut got);
                let r = worst_ratio(&got, &[want as f64], &[f64::MIN_POSITIVE]);
                let note = (epoch != 3).then(|| format!("the epoch index became {epoch}, not 3"));
                (r, note)
            });
        suite.record(
            "loss_reduce".into(),
            "-",
            layout,
            shape,
            "bit-exact",
            outcome,
        );
    }
}

/// `cross_entropy` (softmax, gradient, the rows' losses summed) against the CPU's on logits spread
/// widely, class targets, its gradient matrix poisoned first. exp and log may differ between
/// implementations by a few ulps: the bound is 2e-6·coef + 1e-6·|g| per gradient element; the
/// loss's is [`crate::check::cross_entropy_loss_bound`] (WGSL's `log` is exact only to an absolute
/// 2^-21 near 1, where a row whose largest logit dominates has its tiny loss: an H200 misses a
/// relative 1e-5 there by 574x).
async fn cross_entropy_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
    let shapes: &[(usize, usize)] = if quick {
        &[(64, 10), (63, 65)]
    } else {
        &[
            (1, 2),
            (7, 3),
            (64, 10),
            (63, 65),
            (257, 7),
            (1001, 4),
            (100, 1000),
        ]
    };
    for &(rows, cols) in shapes {
        let mut r = seeded((rows * 11 + cols) as u64);
        let z: Vec<f32> = (Matrix::randn(rows, cols, &mut r).data.iter())
            .map(|v| 8.0 * v)
            .collect();
        let y = Matrix::one_hot_classes(rows, cols, &mut r).data;
        let coef = 1.0 / rows as f32;
        let (mut g, mut row_loss) = (vec![0.0f32; rows * cols], vec![0.0f32; rows]);
        cpu::cross_entropy(&mut g, &mut row_loss, &z, &y, cols, coef);
        let loss = cpu::loss_reduce(&row_loss) * coef;
        let shape = format!("{rows}x{cols}");
        let outcome = run_cross_entropy(ctx, layout, &z, &y, (rows, cols), (coef, coef))
            .await
            .map(|(got_loss, grad)| {
                let padded = crate::gpu::pad4(cols);
                let mut got = vec![got_loss];
                got.extend((0..rows).flat_map(|rr| grad[rr * padded..][..cols].to_vec()));
                perturb("cross_entropy", &shape, &mut got);
                let mut want = vec![loss as f64];
                want.extend(g.iter().map(|&v| v as f64));
                let mut bound = vec![crate::check::cross_entropy_loss_bound(
                    &z, &y, cols, coef, loss,
                )];
                bound.extend(
                    g.iter()
                        .map(|&v| 2e-6 * coef as f64 + 1e-6 * (v as f64).abs()),
                );
                // The padding the backward products read must be zero.
                let padding_zero = (0..crate::gpu::pad4(rows)).all(|rr| {
                    (0..padded).all(|c| (rr < rows && c < cols) || grad[rr * padded + c] == 0.0)
                });
                let note = (!padding_zero).then(|| "non-zero padding in the gradient".into());
                let r = worst_ratio(&got, &want, &bound);
                (if padding_zero { r } else { f64::INFINITY }, note)
            });
        suite.record(
            "cross_entropy".into(),
            "-",
            layout,
            shape,
            "2e-6/rows + 1e-6·|g|; loss WGSL log/exp + 1e-5",
            outcome,
        );
    }
}

/// A few epochs of a small net with biases for each optimizer and loss, each activation, and a
/// learning-rate schedule with weight decay: every epoch's loss within the trajectory tolerance
/// of the CPU's (the model of tests/library/parity.rs).
async fn training_checks(
    suite: &mut Suite<'_>,
    ctx: &Arc<GpuContext>,
    layout: Layout,
    quick: bool,
) {
    let optimizers = [
        ("sgd", OptimizerKind::Sgd, false, 1e-2),
        ("momentum", OptimizerKind::Momentum, false, 1e-2),
        ("nesterov", OptimizerKind::Momentum, true, 1e-2),
        ("adam", OptimizerKind::Adam, false, 1e-2),
        ("adamw", OptimizerKind::AdamW, false, 1e-2),
    ];
    let losses = [
        ("sse", Loss::Sse),
        ("mse", Loss::Mse),
        ("half-sse", Loss::HalfSse),
        ("l1", Loss::L1),
        ("cross-entropy", Loss::CrossEntropy),
    ];
    let base = Job {
        layers: vec![23, 13, 5],
        batch: 9,
        epochs: 6,
        bias: true,
        init_scheme: InitScheme::Torch,
        log_every: 0,
        ..Job::default()
    };
    let mut jobs = Vec::new();
    for (oname, kind, nesterov, lr) in optimizers {
        for (lname, loss) in losses {
            if quick && oname != "sgd" && lname != "sse" {
                continue;
            }
            let weight_decay = match kind {
                OptimizerKind::AdamW => crate::job::DEFAULT_ADAMW_DECAY,
                _ => 0.0,
            };
            let optimizer = Optimizer {
                kind,
                nesterov,
                weight_decay,
                ..Optimizer::default()
            };
            let job = Job {
                lr,
                loss,
                optimizer,
                ..base.clone()
            };
            jobs.push((format!("train/{oname}/{lname}"), job));
        }
    }
    let adam = Optimizer {
        kind: OptimizerKind::Adam,
        ..Optimizer::default()
    };
    for act in Activation::ALL {
        if matches!(act, Activation::Relu | Activation::None) || (quick && act != Activation::Gelu)
        {
            continue;
        }
        let job = Job {
            lr: 1e-2,
            loss: Loss::Mse,
            activation: act,
            optimizer: adam,
            ..base.clone()
        };
        jobs.push((format!("train/adam/mse/{act}"), job));
    }
    let schedule = crate::schedule::LrSchedule::parse(Some("step:2:0.5"), Some("2:0.25"));
    if let Ok(lr_schedule) = schedule {
        let optimizer = Optimizer {
            kind: OptimizerKind::Momentum,
            weight_decay: 0.05,
            ..Optimizer::default()
        };
        let job = Job {
            lr: 1e-2,
            loss: Loss::Mse,
            optimizer,
            lr_schedule,
            ..base.clone()
        };
        jobs.push(("train/momentum/mse/schedule+decay".to_string(), job));
    }
    for (kernel, job) in jobs {
        let shape = "9x[23,13,5]".to_string();
        let outcome = async {
            job.validate()?;
            let state = HostState::seeded(&job);
            let want = CpuBackend::new(&job, &state).run_async(job.epochs).await?;
            let mut gpu = GpuBackend::create(ctx.clone(), &job, &state, layout).await?;
            let mut got = gpu.run_async(job.epochs).await?;
            perturb(&kernel, &shape, &mut got);
            let want64: Vec<f64> = want.iter().map(|&l| l as f64).collect();
            let bound: Vec<f64> = want.iter().map(|&l| bench::trajectory_tol(l)).collect();
            Ok((worst_ratio(&got, &want64, &bound), None))
        }
        .await;
        suite.record(kernel, "-", layout, shape, "3e-3·√L + 1e-5·L", outcome);
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Run the suite on every chosen adapter (and layout), reporting each check to `on_check` (with
/// the devices) as it completes. Fails (bad input, exit 2) if there is no adapter to verify.
pub fn run(plan: &Plan, on_check: &mut dyn FnMut(&[DeviceInfo], &Check)) -> Result<Report> {
    if plan
        .devices
        .iter()
        .any(|d| d.trim().eq_ignore_ascii_case("cpu"))
    {
        return Err(Error::arg(
            "--device",
            "verify checks GPU kernels against the CPU reference; pick a GPU adapter (see \
             `gpu-train devices`)",
        ));
    }
    let opened = crate::devices::open_devices(&plan.devices, plan.layout, plan.limits)?;
    let gpus: Vec<_> = opened
        .into_iter()
        .filter(|(info, _)| info.kind == "gpu")
        .collect();
    if gpus.is_empty() {
        return Err(Error::Device(
            "verify: no GPU adapter found (on Linux without a GPU, `apt-get install \
             mesa-vulkan-drivers` gives the software adapter lavapipe)"
                .into(),
        ));
    }
    let devices = gpus.iter().map(|(i, _)| i.clone()).collect();
    let mut report = Report::new(plan.quick, crate::devices::host(), devices);
    let devices = report.devices.clone();
    let mut forward = |c: &Check| on_check(&devices, c);
    for (device, (info, dev)) in gpus.iter().enumerate() {
        let mut suite = Suite {
            checks: &mut report.checks,
            device,
            on_check: &mut forward,
        };
        let Some(Device::Gpu(ctx, _)) = dev else {
            let why = (info.error.clone()).unwrap_or_else(|| "it could not be opened".into());
            suite.push(Check {
                device,
                kernel: "open".into(),
                variant: "-".into(),
                layout: "-".into(),
                shape: "-".into(),
                ratio: f64::INFINITY,
                bound: "-".into(),
                passed: false,
                note: Some(why),
            });
            continue;
        };
        let layouts = layouts(ctx, plan.layout, plan.quick);
        crate::wait::block_on(check_device(&mut suite, ctx, &layouts, plan.quick));
    }
    Ok(report)
}

/// The layouts to verify on `ctx`: the one asked for; with `quick` the one training would take
/// here; else every layout the adapter runs.
pub fn layouts(ctx: &GpuContext, asked: Option<Layout>, quick: bool) -> Vec<Layout> {
    match asked {
        Some(l) => vec![l],
        None if quick => vec![ctx.auto_layout()],
        None => (Layout::ALL.into_iter())
            .filter(|&l| ctx.kernels.supports(l))
            .collect(),
    }
}

/// Every check of the suite on one open device, in each of `layouts`.
async fn check_device(
    suite: &mut Suite<'_>,
    ctx: &Arc<GpuContext>,
    layouts: &[Layout],
    quick: bool,
) {
    for &layout in layouts {
        matmul_checks(suite, ctx, layout, quick).await;
        bias_checks(suite, ctx, layout, quick).await;
        if layout == layouts[0] {
            loss_reduce_checks(suite, ctx, layout, quick).await;
        }
        cross_entropy_checks(suite, ctx, layout, quick).await;
        training_checks(suite, ctx, layout, quick).await;
    }
}

/// The suite on one device already open (the browser's adapter, described by `info`, on the
/// `host` that runs it), each check reported to `on_check` as it completes.
pub async fn run_on(
    ctx: &Arc<GpuContext>,
    info: DeviceInfo,
    host: Host,
    asked: Option<Layout>,
    quick: bool,
    on_check: &mut dyn FnMut(&Check),
) -> Report {
    let mut report = Report::new(quick, host, vec![info]);
    let mut suite = Suite {
        checks: &mut report.checks,
        device: 0,
        on_check,
    };
    check_device(&mut suite, ctx, &layouts(ctx, asked, quick), quick).await;
    report
}
