//! Every GPU kernel variant against the CPU reference, on fresh random inputs and on shapes chosen
//! to hit the edges of the kernel's blocking (1, 7, 63, 64, 65, 100, 1000, 1001 each appear as M, as
//! N and as K), with the outputs poisoned with NaN so that any element a kernel forgets to write
//! shows up. Also the deterministic loss reduction (bit for bit), and the CPU product itself against
//! a naive f64 loop (proptest).
//!
//! Tolerance of a product element `v = Σ_p a_ip·b_pj` (length k): any f32 summation order, with or
//! without fused multiply-adds, stays within `γ_k·S` of the exact value, where
//! `S = Σ_p |a_ip|·|b_pj|` and `γ_k = k·u/(1-k·u)`, u = 2^-24 (Higham, Accuracy and Stability of
//! Numerical Algorithms, §3.1). The GPU (blocked fma chains) and the CPU (gemm's own blocking) use
//! different orders, so they may differ by up to `2·γ_k·S`; that is the bound used, per element.
//! It is tight enough to catch a missing or repeated term (error ~|a_ip·b_pj| ~ S/k, against
//! 2·k·u·S: for k = 1001 that is 1e-3·S against 1.2e-4·S) and any wrong index, wrong transpose or
//! wrong epilogue (errors of order S).
//!
//! The matmul's epilogues run through `check::matmul::check_matmul`, the same check `verify`
//! and `tune`'s parity gate run: here on every covering shape, every layout and every block;
//! what it does not cover (the gradient sum's first and last uses, L1's `sign(0)` hit exactly,
//! the other kernels) has its own test below.

use crate::common;

use common::{assert_within, gpu_or_skip, randn, rng, U32};
use gpu_train::check;
use gpu_train::check::bias_update::check_bias_update;
use gpu_train::check::cross_entropy::check_cross_entropy;
use gpu_train::check::matmul::{check_matmul, steps, Epi, ACTIVATIONS};
use gpu_train::cpu::{self, Epilogue};
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::{
    run_bias_sum, run_cross_entropy, run_loss_reduce, run_matmul, Acc, Act, Block, GpuContext,
    MatmulInputs, MatmulKey, Mode, Opt, Update,
};
use gpu_train::job::{Activation, Loss};
use gpu_train::wait::block_on;
use proptest::prelude::*;
use rand::RngExt;

/// The sizes every dimension is tested at: a single row or column, sizes around the kernel's
/// 64-wide tile, a size that is not a multiple of 4 (the GPU layout pads to 4), and large ones.
const SIZES: [usize; 8] = [1, 7, 63, 64, 65, 100, 1000, 1001];

/// (m, n, k) shapes in which every size of [`SIZES`] appears once as m, once as n and once as k,
/// paired so that no product is expensive on a software adapter (at most ~4 M multiply-adds), plus
/// a few shapes around the 4-, 8- and 16-wide blocks of the kernel's invocations.
fn covering_shapes() -> Vec<(usize, usize, usize)> {
    let s = SIZES;
    let mut v: Vec<_> = (0..8).map(|i| (s[i], s[7 - i], s[(i + 3) % 8])).collect();
    v.extend([
        (2, 3, 5),
        (4, 4, 4),
        (8, 16, 12),
        (17, 33, 9),
        (33, 17, 130),
    ]);
    v
}

/// One variant of the matmul kernel: a memory layout and a block size. Every test of the kernel
/// runs every variant.
#[derive(Debug, Clone, Copy)]
struct Variant {
    layout: Layout,
    block: Block,
}

fn variants() -> impl Iterator<Item = Variant> {
    Layout::ALL.into_iter().flat_map(|layout| {
        (Block::of_layout(layout).into_iter()).map(move |block| Variant { layout, block })
    })
}

impl Variant {
    fn of(key: MatmulKey) -> Self {
        Variant {
            layout: key.layout,
            block: key.block,
        }
    }

    fn key(self, key: MatmulKey) -> MatmulKey {
        MatmulKey {
            layout: self.layout,
            block: self.block,
            ..key
        }
    }
}

use check::gamma;

/// Inputs of one product: `a` and `b` as stored for the key's transposes.
struct Case {
    m: usize,
    n: usize,
    k: usize,
    key: MatmulKey,
    a: Vec<f32>,
    b: Vec<f32>,
}

impl Case {
    fn new(key: MatmulKey, (m, n, k): (usize, usize, usize), seed: u64) -> Self {
        let mut r = rng(seed);
        Case {
            m,
            n,
            k,
            key,
            a: randn(&mut r, m * k),
            b: randn(&mut r, k * n),
        }
    }

    fn label(&self, v: Variant) -> String {
        format!(
            "{:?} trans_a={} trans_b={} {:?} {:?} m={} n={} k={}",
            self.key.mode,
            self.key.trans_a,
            self.key.trans_b,
            v.layout,
            v.block,
            self.m,
            self.n,
            self.k
        )
    }

    /// op(A)[i, p] and op(B)[p, j] read from storage.
    fn a_at(&self, i: usize, p: usize) -> f32 {
        if self.key.trans_a {
            self.a[p * self.m + i]
        } else {
            self.a[i * self.k + p]
        }
    }

    fn b_at(&self, p: usize, j: usize) -> f32 {
        if self.key.trans_b {
            self.b[j * self.k + p]
        } else {
            self.b[p * self.n + j]
        }
    }

    /// `S_ij = Σ_p |a_ip|·|b_pj|` for every element, row-major.
    fn abs_products(&self) -> Vec<f64> {
        let mut s = vec![0.0f64; self.m * self.n];
        for i in 0..self.m {
            for j in 0..self.n {
                s[i * self.n + j] = (0..self.k)
                    .map(|p| (self.a_at(i, p) as f64 * self.b_at(p, j) as f64).abs())
                    .sum();
            }
        }
        s
    }

    /// The CPU reference product `op(A)·op(B)`.
    fn cpu_product(&self) -> Vec<f32> {
        let mut c = vec![f32::NAN; self.m * self.n];
        cpu::matmul(
            &mut c,
            &self.a,
            &self.b,
            self.m,
            self.n,
            self.k,
            self.key.trans_a,
            self.key.trans_b,
            Epilogue::Store,
        );
        c
    }

    /// Run on the GPU with `block`; checks that the padding of the outputs was left zero.
    fn gpu(
        &self,
        ctx: &GpuContext,
        block: Variant,
        lr: f32,
        c_init: &[f32],
        aux: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        self.gpu_bias(ctx, block, lr, c_init, aux, None)
    }

    /// Run on the GPU with `block` and the gradient summed so far (`key.acc`); returns C and the
    /// sum after the kernel.
    fn gpu_sum(
        &self,
        ctx: &GpuContext,
        block: Variant,
        lr: f32,
        c_init: &[f32],
        sum: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        self.run(ctx, block.key(self.key), lr, c_init, None, None, sum)
    }

    /// [`Case::gpu`] with a bias added in the epilogue.
    fn gpu_bias(
        &self,
        ctx: &GpuContext,
        block: Variant,
        lr: f32,
        c_init: &[f32],
        aux: Option<&[f32]>,
        bias: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let key = MatmulKey {
            bias: bias.is_some(),
            ..block.key(self.key)
        };
        self.run(ctx, key, lr, c_init, aux, bias, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn run(
        &self,
        ctx: &GpuContext,
        key: MatmulKey,
        lr: f32,
        c_init: &[f32],
        aux: Option<&[f32]>,
        bias: Option<&[f32]>,
        sum: Option<&[f32]>,
    ) -> (Vec<f32>, Vec<f32>) {
        let dims = (self.m, self.n, self.k);
        let (a, b) = (&self.a, &self.b);
        let inputs = MatmulInputs {
            scalar: lr,
            aux,
            bias,
            aux_out: sum,
            ..MatmulInputs::new(c_init)
        };
        let out = block_on(run_matmul(ctx, key, a, b, dims, inputs))
            .unwrap_or_else(|e| panic!("{}: {e}", self.label(Variant::of(key))));
        assert!(
            out.padding_zero,
            "{}: the kernel left non-zero values in the padding of its output (the next kernel \
             reads them)",
            self.label(Variant::of(key))
        );
        (out.c, out.aux_out)
    }
}

fn key(trans_a: bool, trans_b: bool, mode: Mode) -> MatmulKey {
    MatmulKey {
        trans_a,
        trans_b,
        mode,
        block: Block::B8x8,
        bias: false,
        opt: Opt::Sgd,
        update: Update::default(),
        acc: Acc::default(),
        act: Act::default(),
        layout: Layout::Texels,
    }
}

/// The bench's reference kernel (`shaders/matmul_naive.wgsl`, one output per invocation, storage
/// buffers, its output NaN-poisoned before the run) on every covering shape.
#[test]
fn gpu_naive_reference_kernel_matches_cpu_covering_shapes() {
    let Some(ctx) = gpu_or_skip() else { return };
    for (si, shape) in covering_shapes().into_iter().enumerate() {
        let case = Case::new(key(false, false, Mode::Store), shape, 900 + si as u64);
        let want = case.cpu_product();
        let s = case.abs_products();
        let g = 2.0 * gamma(case.k);
        let got = block_on(gpu_train::gpu::run_naive(&ctx, &case.a, &case.b, shape)).unwrap();
        assert_eq!(got.len(), case.m * case.n);
        assert_within(&format!("naive {shape:?}"), &got, &want, |i| g * s[i]);
    }
}

/// Shapes for the epilogues checked once per activation (five of them, every variant each):
/// 1, 7, 63, 64, 65, 100 and 1001 each appear, and none is over 0.5 M multiply-adds, so that the
/// five activations cost a software adapter about what one full covering set does.
fn epilogue_shapes() -> [(usize, usize, usize); 7] {
    [
        (1, 1001, 7),
        (7, 65, 63),
        (63, 7, 65),
        (65, 100, 1),
        (100, 64, 33),
        (2, 3, 5),
        (17, 33, 9),
    ]
}

/// Epilogue `e` through [`check_matmul`], the check `verify` and `tune`'s parity gate run (seeded
/// inputs, the outputs poisoned with NaN first, every output against the CPU's product carried
/// through the epilogue's f64 reference with its derived bound, the padding left zero, C left
/// untouched where it must be): on every shape of `shapes`, with each transpose training uses
/// it with (or `trans`), in every layout and block (or each layout's first block: an epilogue
/// variant is one function every block calls).
fn check_epilogue(
    e: Epi,
    trans: Option<(bool, bool)>,
    shapes: &[(usize, usize, usize)],
    every_block: bool,
    seed: u64,
) {
    let Some(ctx) = gpu_or_skip() else { return };
    let transposes = trans.map_or(e.transposes().to_vec(), |t| vec![t]);
    for t in transposes {
        for (si, &dims) in shapes.iter().enumerate() {
            for layout in Layout::ALL {
                let blocks = Block::of_layout(layout);
                let blocks = if every_block {
                    &blocks[..]
                } else {
                    &blocks[..1]
                };
                for &block in blocks {
                    let key = e.key(layout, block, t);
                    let label = format!("{} {t:?} {layout:?} {block:?} {dims:?}", e.name());
                    let checked = block_on(check_matmul(&ctx, key, e, dims, seed + si as u64))
                        .unwrap_or_else(|err| panic!("{label}: {err}"));
                    assert!(
                        checked.ratio() <= 1.0,
                        "{label}: {:.3} of the bound: {}",
                        checked.ratio(),
                        checked.failure().unwrap_or_default()
                    );
                }
            }
        }
    }
}

#[test]
fn gpu_store_matches_cpu_no_transpose_covering_shapes() {
    check_epilogue(
        Epi::Store,
        Some((false, false)),
        &covering_shapes(),
        true,
        100,
    );
}

#[test]
fn gpu_store_matches_cpu_trans_a_covering_shapes() {
    check_epilogue(
        Epi::Store,
        Some((true, false)),
        &covering_shapes(),
        true,
        200,
    );
}

#[test]
fn gpu_store_matches_cpu_trans_b_covering_shapes() {
    check_epilogue(
        Epi::Store,
        Some((false, true)),
        &covering_shapes(),
        true,
        300,
    );
}

#[test]
fn gpu_store_matches_cpu_both_transposed_covering_shapes() {
    check_epilogue(
        Epi::Store,
        Some((true, true)),
        &covering_shapes(),
        true,
        400,
    );
}

/// A hidden layer's forward pass (`C = max(A·B + bias, 0)`) and the input gradient through it
/// (`A·Bᵀ` where the ReLU's output is > 0, exactly 0 elsewhere: a fifth of the outputs are exact
/// zeros, which must block it).
#[test]
fn gpu_relu_forward_and_gradient_match_cpu_covering_shapes() {
    let relu = Activation::Relu;
    check_epilogue(Epi::Act(relu), None, &covering_shapes(), true, 500);
    check_epilogue(Epi::Grad(relu), None, &covering_shapes(), true, 600);
}

/// The weight gradient fused with the SGD step, in place: `C = C - lr·(Aᵀ·B)`.
#[test]
fn gpu_sgd_step_epilogue_matches_cpu_covering_shapes() {
    let sgd = Epi::Update(Opt::Sgd, Update::default());
    check_epilogue(sgd, None, &covering_shapes(), true, 700);
}

/// The output layer fused with the loss: `d = A·B - Y`, `C = s·d` and `AUX_OUT = d²`, or
/// `C = s·sign(d)` and `AUX_OUT = |d|`; the bias of a forward product (the padding rows left
/// zero: the weight gradient sums over them); a shared layer's gradient summed (C untouched).
#[test]
fn gpu_error_bias_and_sum_epilogues_match_cpu_covering_shapes() {
    let shapes = covering_shapes();
    check_epilogue(Epi::SquaredError, None, &shapes, true, 800);
    check_epilogue(Epi::AbsError, None, &shapes, true, 850);
    check_epilogue(Epi::Bias, None, &shapes, true, 870);
    check_epilogue(Epi::Sum, None, &shapes, true, 890);
}

/// The output layer of a cross-entropy net: the logits, bias added, into AUX_OUT; C is not
/// written (its poison stays: cross_entropy writes the gradient there).
#[test]
fn gpu_logits_epilogue_writes_aux_out_only() {
    check_epilogue(Epi::Logits, None, &covering_shapes(), true, 9000);
}

/// Every other activation forward (bias added; GELU also keeps its input in AUX_OUT) and
/// backward (from the activation's output, or GELU's kept input), in every variant.
#[test]
fn gpu_activation_epilogues_match_cpu_odd_shapes() {
    for (ai, a) in ACTIVATIONS.into_iter().skip(1).enumerate() {
        let seed = 7000 + 100 * ai as u64;
        check_epilogue(Epi::Act(a), None, &epilogue_shapes(), true, seed);
        check_epilogue(Epi::Grad(a), None, &epilogue_shapes(), true, seed + 50);
    }
}

/// Every optimizer step fused into the weight gradient (momentum, Nesterov, Adam, AdamW, each
/// plain, with weight decay, with a scheduled rate and with both), the moments compared as well
/// as the weights, on odd shapes in each layout.
#[test]
fn gpu_optimizer_step_epilogues_match_cpu_odd_shapes() {
    for (i, (o, u)) in steps(false).into_iter().enumerate() {
        let shapes = [(63, 65, 7), (7, 33, 65), (1, 5, 1001)];
        check_epilogue(
            Epi::Update(o, u),
            None,
            &shapes,
            false,
            9500 + 10 * i as u64,
        );
    }
}

/// The products of the default job (batch 64, 1000 -> 100 -> 10) as training runs them.
#[test]
fn gpu_training_products_of_default_job_match_cpu() {
    let products = [
        ((false, false), (64, 100, 1000)),
        ((false, false), (64, 10, 100)),
        ((false, true), (64, 100, 10)),
        ((true, false), (100, 10, 64)),
        ((true, false), (1000, 100, 64)),
    ];
    for (i, (t, dims)) in products.into_iter().enumerate() {
        check_epilogue(Epi::Store, Some(t), &[dims], true, 900 + i as u64);
    }
}

/// `cross_entropy` (softmax, its gradient, the loss summed over the rows) against the CPU's on
/// row counts around the 256 invocations and the 4-row padding, widths around the vec4 columns,
/// logits spread widely (the max is subtracted), class and probability targets, in each layout:
/// `check::cross_entropy::check_cross_entropy`, the check `verify` runs (its bounds are written
/// there; a wrong element, a missing max or the wrong row is off by orders more), the padding of
/// the gradient zero.
#[test]
fn gpu_cross_entropy_matches_cpu_and_zeroes_the_padding() {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        for (i, &(rows, cols)) in [
            (1, 2),
            (7, 3),
            (63, 10),
            (64, 7),
            (65, 65),
            (257, 10),
            (1001, 4),
        ]
        .iter()
        .enumerate()
        {
            for probabilities in [false, true] {
                let mut r = rng(9900 + i as u64);
                // Rows shifted by -100, 0, +100: exp under- or overflows unless the max is
                // taken out.
                let z: Vec<f32> = (randn(&mut r, rows * cols).iter().enumerate())
                    .map(|(i, v)| 8.0 * v + 100.0 * ((i / cols) % 3) as f32 - 100.0)
                    .collect();
                let mut y = vec![0.0f32; rows * cols];
                for row in y.chunks_mut(cols) {
                    if probabilities {
                        let e: Vec<f32> = randn(&mut r, cols).iter().map(|v| v.exp()).collect();
                        let sum: f32 = e.iter().sum();
                        row.iter_mut().zip(&e).for_each(|(y, e)| *y = e / sum);
                    } else {
                        row[r.random_range(0..cols)] = 1.0;
                    }
                }
                let (scale, coef) = (1.0 / rows as f32, 1.0 / rows as f32);
                let label = format!("{layout} {rows}x{cols} probabilities={probabilities}");
                let (loss, grad) = block_on(run_cross_entropy(
                    &ctx,
                    layout,
                    &z,
                    &y,
                    (rows, cols),
                    (scale, coef),
                ))
                .unwrap();
                let got = (loss, &grad[..]);
                let (ratio, note) = check_cross_entropy(&z, &y, (rows, cols), (scale, coef), got);
                assert!(ratio <= 1.0, "{label}: {ratio:.3} of the bound {note:?}");
            }
        }
    }
}

/// A shared layer's weight gradient summed over its uses: the first use writes the product to the
/// sum (C untouched), a middle one adds it, the last adds the sum to its product and stores it
/// (gradients only) or steps the weights with it, each against the CPU's `Accumulate` and `Sgd`.
#[test]
fn gpu_gradient_sum_epilogues_match_cpu() {
    let Some(ctx) = gpu_or_skip() else { return };
    let lr = 0.1f32;
    for (si, shape) in covering_shapes().into_iter().enumerate() {
        let seed = 7500 + si as u64;
        let store = Case::new(key(true, false, Mode::Store), shape, seed);
        let (m, n) = (store.m, store.n);
        let product = store.cpu_product();
        let sum = randn(&mut rng(seed + 50), m * n);
        let c_init = randn(&mut rng(seed + 90), m * n);
        let poison = vec![f32::NAN; m * n];
        let s = store.abs_products();
        let g = 2.0 * gamma(store.k);
        // The product's error, plus one rounding of the addition.
        let tol = |i: usize| g * s[i] + 2.0 * U32 * ((sum[i] as f64).abs() + s[i]);
        let mut added = sum.clone();
        cpu::matmul(
            &mut added,
            &store.a,
            &store.b,
            m,
            n,
            store.k,
            true,
            false,
            Epilogue::Accumulate,
        );
        let with = |mode, input, output| Case {
            key: MatmulKey {
                acc: Acc { input, output },
                ..key(true, false, mode)
            },
            a: store.a.clone(),
            b: store.b.clone(),
            ..store
        };
        for block in variants() {
            let label = store.label(block);
            // First use: sum = v; C (poisoned) is not written.
            let (c, out) = with(Mode::Store, false, true).gpu_sum(&ctx, block, 0.0, &poison, None);
            assert_within(&format!("{label}: sum = v"), &out, &product, |i| g * s[i]);
            assert!(
                c.iter().all(|v| v.is_nan()),
                "{label}: C written while summing"
            );
            // A middle use: sum = sum + v.
            let (_, out) =
                with(Mode::Store, true, true).gpu_sum(&ctx, block, 0.0, &poison, Some(&sum));
            assert_within(&format!("{label}: sum += v"), &out, &added, tol);
            // The last use, gradients only: C = sum + v.
            let (c, _) =
                with(Mode::Store, true, false).gpu_sum(&ctx, block, 0.0, &poison, Some(&sum));
            assert_within(&format!("{label}: C = sum + v"), &c, &added, tol);
            // The last use, training: C = C - lr·(sum + v).
            let (c, _) =
                with(Mode::Update, true, false).gpu_sum(&ctx, block, lr, &c_init, Some(&sum));
            let want: Vec<f32> = c_init.iter().zip(&added).map(|(p, a)| p - lr * a).collect();
            assert_within(&format!("{label}: C -= lr·(sum + v)"), &c, &want, |i| {
                lr as f64 * tol(i)
                    + 4.0 * U32 * ((c_init[i] as f64).abs() + (lr * added[i]).abs() as f64)
            });
        }
    }
}

/// Output layer fused with the L1 loss: `d = A·B - Y; C = s·sign(d); AUX_OUT = |d|`, including
/// `sign(0) = 0` where the prediction equals the target exactly.
#[test]
fn gpu_abs_error_epilogue_matches_cpu_sign_gradient_and_magnitudes() {
    let Some(ctx) = gpu_or_skip() else { return };
    for (si, shape) in covering_shapes().into_iter().enumerate() {
        let case = Case::new(key(false, false, Mode::AbsError), shape, 850 + si as u64);
        let v = case.cpu_product();
        let s = case.abs_products();
        let g = 2.0 * gamma(case.k);
        let ed = |i: usize, y: &[f32]| g * s[i] + 2.0 * U32 * (s[i] + (y[i] as f64).abs());
        // Targets: random, but a few set to exactly the CPU's prediction where that is exact
        // on both paths (k = 1: one product, no sums to round differently), so d = 0 is hit.
        let mut y = randn(&mut rng(8500 + si as u64), case.m * case.n);
        if case.k == 1 {
            for i in (0..y.len()).step_by(3) {
                y[i] = v[i];
            }
        }
        let coef = Loss::L1.grad_coef(case.m, case.n);
        let mut want_g = vec![f32::NAN; v.len()];
        let mut want_abs = vec![f32::NAN; v.len()];
        cpu::loss_forward(&mut want_g, &mut want_abs, &v, &y, case.n, Loss::L1);
        for block in variants() {
            let poison = vec![f32::NAN; case.m * case.n];
            let (got_g, got_abs) = case.gpu(&ctx, block, coef, &poison, Some(&y));
            let label = case.label(block);
            assert_within(
                &format!("{label}: AUX_OUT = |d|"),
                &got_abs,
                &want_abs,
                |i| ed(i, &y),
            );
            // The sign may only differ where |d| is within its error of zero.
            for i in 0..v.len() {
                if got_g[i] != want_g[i] {
                    assert!(
                        (want_abs[i] as f64) <= ed(i, &y),
                        "{label}: element {i}: gradient {} vs CPU {} with |d| = {:e}",
                        got_g[i],
                        want_g[i],
                        want_abs[i]
                    );
                }
                assert!(
                    [coef, -coef, 0.0].contains(&got_g[i]),
                    "{label}: element {i}: gradient {} is not ±{coef} or 0",
                    got_g[i]
                );
            }
            if case.k == 1 {
                assert!(
                    (0..v.len()).step_by(3).all(|i| got_g[i] == 0.0),
                    "{label}: sign(0) must be 0"
                );
            }
        }
    }
}

/// `bias_update` through `check::bias_update::check_bias_update`, the check `verify` runs: the
/// bias gradient (column sums over the batch rows, in row order) bit for bit against the CPU's,
/// and every optimizer step on it within the step's rounding, in each layout; the padding of g
/// (NaN-free here, zero on the GPU) not read.
#[test]
fn gpu_bias_update_matches_cpu_bit_for_bit() {
    let Some(ctx) = gpu_or_skip() else { return };
    let shapes = [(1, 1), (7, 3), (64, 100), (63, 65), (1001, 7), (5, 1000)];
    let mut variants = vec![None];
    variants.extend(steps(false).into_iter().map(Some));
    for (vi, step) in variants.into_iter().enumerate() {
        // The sums and plain SGD on every shape, the other steps on two.
        let shapes = if vi <= 1 { &shapes[..] } else { &shapes[2..4] };
        for (&(rows, cols), layout) in shapes.iter().flat_map(|s| Layout::ALL.map(|l| (s, l))) {
            let seed = (rows * 10_000 + cols + vi) as u64;
            let checked = check_bias_update(&ctx, layout, (rows, cols), step, seed);
            let ratio = block_on(checked).unwrap();
            assert!(
                ratio <= 1.0,
                "{step:?} {rows}x{cols} {layout:?}: {ratio:.3} of the bound"
            );
        }
    }
}

/// A shared layer's bias gradient summed over its uses, bit for bit with the CPU's: the first use
/// writes the column sums to the sum (b untouched), a middle one adds them, the last adds the sum
/// and stores (gradients only) or steps.
#[test]
fn gpu_bias_gradient_sums_match_cpu_bit_for_bit() {
    let Some(ctx) = gpu_or_skip() else { return };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let shapes = [(1, 1), (7, 3), (64, 100), (63, 65), (1001, 7)];
    for ((rows, cols), layout) in shapes.into_iter().flat_map(|s| Layout::ALL.map(|l| (s, l))) {
        let mut r = rng((rows * 20_000 + cols) as u64);
        let g = randn(&mut r, rows * cols);
        let b = randn(&mut r, cols);
        let sum = randn(&mut r, cols);
        let mut db = vec![f32::NAN; cols];
        cpu::bias_update(&mut db, &g, Epilogue::Store);
        let mut added = sum.clone();
        cpu::bias_update(&mut added, &g, Epilogue::Accumulate);
        let acc = |input, output| Acc { input, output };
        let label = format!("{rows}x{cols} {layout:?}");
        let (got_b, got_sum) = block_on(run_bias_sum(
            &ctx,
            layout,
            &g,
            (rows, cols),
            &b,
            (0.5, false),
            acc(false, true),
            None,
        ))
        .unwrap();
        assert_eq!(bits(&got_sum), bits(&db), "{label}: sum = db");
        assert_eq!(got_b, b, "{label}: b changed while summing");
        let (_, got_sum) = block_on(run_bias_sum(
            &ctx,
            layout,
            &g,
            (rows, cols),
            &b,
            (0.5, false),
            acc(true, true),
            Some(&sum),
        ))
        .unwrap();
        assert_eq!(bits(&got_sum), bits(&added), "{label}: sum += db");
        let (got_db, _) = block_on(run_bias_sum(
            &ctx,
            layout,
            &g,
            (rows, cols),
            &b,
            (0.0, true),
            acc(true, false),
            Some(&sum),
        ))
        .unwrap();
        assert_eq!(bits(&got_db), bits(&added), "{label}: db = sum + db");
        let lr = 0.125;
        let (got_b, _) = block_on(run_bias_sum(
            &ctx,
            layout,
            &g,
            (rows, cols),
            &b,
            (lr, false),
            acc(true, false),
            Some(&sum),
        ))
        .unwrap();
        let want: Vec<f32> = b.iter().zip(&added).map(|(b, a)| b - lr * a).collect();
        assert_eq!(bits(&got_b), bits(&want), "{label}: b -= lr·(sum + db)");
    }
}

/// Positive values spread over six decades, as squared errors are: the sum of such values depends
/// on the order of the additions, so bit-identity below really checks the order.
fn squares(n: usize, seed: u64) -> Vec<f32> {
    let mut r = rng(seed);
    (0..n)
        .map(|_| {
            let v: f32 = randn(&mut r, 1)[0];
            let scale = 10f32.powf(r.random_range(-3.0..3.0));
            v * v * scale
        })
        .collect()
}

/// `[rows, cols]` matrices of the lengths 1, 7, 255, 256, 257, 640 and 10000, with column counts
/// that are not multiples of 4 where possible (the GPU layout pads columns to 4 and the kernel
/// must skip the padding, which `run_loss_reduce` fills with NaN).
const REDUCE_SHAPES: [(usize, usize); 9] = [
    (1, 1),
    (7, 1),
    (1, 7),
    (17, 15),
    (128, 2),
    (257, 1),
    (64, 10),
    (1000, 10),
    (16, 625),
];

#[test]
fn gpu_loss_reduce_is_bit_identical_to_cpu_loss_reduce() {
    let Some(ctx) = gpu_or_skip() else { return };
    for (i, (rows, cols)) in REDUCE_SHAPES.into_iter().enumerate() {
        let v = squares(rows * cols, 1000 + i as u64);
        let want = cpu::loss_reduce(&v);
        let (got, epoch) = block_on(run_loss_reduce(&ctx, &v, (rows, cols)))
            .unwrap_or_else(|e| panic!("loss_reduce {rows}x{cols}: {e}"));
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "loss_reduce of {rows}x{cols} = {} values: GPU {got:e}, CPU {want:e}",
            rows * cols
        );
        assert_eq!(
            epoch, 3,
            "loss_reduce must write history[state] (2) and advance the epoch index to 3"
        );
    }
}

/// The bit-identity test above means something only if another order would give other bits: check
/// that a plain sequential sum of the same data differs from `loss_reduce`, while both are within
/// the summation error bound of the exact sum.
#[test]
fn cpu_loss_reduce_is_accurate_and_its_order_matters_on_test_data() {
    let v = squares(10_000, 1000 + 7);
    let exact: f64 = v.iter().map(|&x| x as f64).sum();
    let tree = cpu::loss_reduce(&v);
    let seq = v.iter().fold(0.0f32, |s, &x| s + x);
    assert_ne!(
        tree.to_bits(),
        seq.to_bits(),
        "test data too benign: sequential and strided sums agree"
    );
    // Strided partial sums of ~40 terms then a tree of depth 8: at most ~48 roundings per term.
    let bound = gamma(48) * exact;
    assert!(
        (tree as f64 - exact).abs() <= bound,
        "loss_reduce {tree:e} vs exact {exact:e}, bound {bound:e}"
    );
    for n in [1usize, 7, 255, 256, 257, 640] {
        let v = squares(n, 2000 + n as u64);
        let exact: f64 = v.iter().map(|&x| x as f64).sum();
        let got = cpu::loss_reduce(&v) as f64;
        assert!(
            (got - exact).abs() <= gamma(48) * exact,
            "n={n}: {got:e} vs {exact:e}"
        );
    }
}

/// A naive f64 product of op(A)·op(B), and the `S` bound terms.
#[allow(clippy::too_many_arguments)]
fn naive_f64(
    a: &[f32],
    b: &[f32],
    m: usize,
    n: usize,
    k: usize,
    ta: bool,
    tb: bool,
) -> (Vec<f64>, Vec<f64>) {
    let mut c = vec![0.0; m * n];
    let mut s = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                let av = if ta { a[p * m + i] } else { a[i * k + p] } as f64;
                let bv = if tb { b[j * k + p] } else { b[p * n + j] } as f64;
                c[i * n + j] += av * bv;
                s[i * n + j] += (av * bv).abs();
            }
        }
    }
    (c, s)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `cpu::matmul` (gemm with strides standing in for transposes) against a naive f64 loop, for
    /// every transpose and both epilogues, within `γ_k·S` (+ the final roundings for SGD).
    #[test]
    fn cpu_matmul_matches_naive_f64_loop(
        m in 1usize..24,
        n in 1usize..24,
        k in 1usize..40,
        ta: bool,
        tb: bool,
        sgd: bool,
        seed: u64,
    ) {
        let mut r = rng(seed);
        let a = randn(&mut r, m * k);
        let b = randn(&mut r, k * n);
        let c0 = randn(&mut r, m * n);
        let lr = 0.25f32;
        let (exact, s) = naive_f64(&a, &b, m, n, k, ta, tb);
        let mut c = if sgd { c0.clone() } else { vec![f32::NAN; m * n] };
        let epi = if sgd { Epilogue::Sgd(lr) } else { Epilogue::Store };
        cpu::matmul(&mut c, &a, &b, m, n, k, ta, tb, epi);
        for i in 0..m * n {
            let (want, bound) = if sgd {
                let w = c0[i] as f64 - lr as f64 * exact[i];
                (w, lr as f64 * gamma(k) * s[i] + 3.0 * U32 * (c0[i].abs() as f64 + lr as f64 * s[i]))
            } else {
                (exact[i], gamma(k) * s[i] + U32 * exact[i].abs())
            };
            let err = (c[i] as f64 - want).abs();
            prop_assert!(
                err <= bound,
                "m={m} n={n} k={k} ta={ta} tb={tb} sgd={sgd}: element {i} got {} want {want}, \
                 error {err:e} > {bound:e}",
                c[i]
            );
        }
    }
}

/// A dimension for the random kernel cases: mostly small, with the tile edges (63, 64, 65, 127,
/// 128, 129) and 1 drawn often, as the places a kernel's bounds checks go wrong.
fn dimension() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1usize..40,
        2 => prop::sample::select(vec![1usize, 4, 7, 8, 15, 16, 17, 63, 64, 65, 127, 128, 129]),
        1 => 40usize..200,
    ]
}

proptest! {
    // Each case builds a pipeline and runs it on the adapter: a bounded count keeps CI in time.
    // A failure prints the case (shape, variant, activation, seed) it shrank to.
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The matmul kernel against the CPU on random shapes, layouts, blocks and epilogues (each
    /// with a transpose training uses it with), through [`check_matmul`].
    #[test]
    fn gpu_matmul_matches_cpu_on_random_cases(
        (m, n, k) in (dimension(), dimension(), dimension()),
        variant in 0usize..64,
        epilogue in 0usize..64,
        transposes in 0usize..4,
        seed: u64,
    ) {
        let Some(ctx) = gpu_or_skip() else { return Ok(()) };
        let all: Vec<Variant> = variants().collect();
        let v = all[variant % all.len()];
        // The epilogues the tests above run in every block (the optimizer variants run in each
        // layout's first block only): no pipeline here that nothing else compiles, which on a
        // cold shader cache costs seconds each.
        let epis: Vec<Epi> = (Epi::all(false).into_iter())
            .filter(|&e| e.core() || matches!(e, Epi::Act(_) | Epi::Grad(_) | Epi::Logits))
            .collect();
        let e = epis[epilogue % epis.len()];
        let t = e.transposes()[transposes % e.transposes().len()];
        let label = format!("{} {t:?} {:?} {:?} {:?} seed {seed}", e.name(), v.layout, v.block, (m, n, k));
        let checked = block_on(check_matmul(&ctx, e.key(v.layout, v.block, t), e, (m, n, k), seed))
            .unwrap_or_else(|err| panic!("{label}: {err}"));
        prop_assert!(checked.ratio() <= 1.0, "{label}: {}", checked.failure().unwrap_or_default());
    }
}
