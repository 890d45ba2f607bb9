//! The per-element checks of every kernel: the matmul's variants and epilogues, `bias_update`,
//! `loss_reduce`, `cross_entropy`, each on awkward shapes with its output poisoned first.

use super::*;
use crate::check::bias_update::check_bias_update;
use crate::gpu::{Opt, Update};

/// Shapes `(m, n, k)` in which 1, 7, 63, 64, 65, 100, 1000 and 1001 each appear as M, as N and as
/// K (as in tests/library/kernels.rs), plus a few around the 4-, 8- and 16-wide blocks; `--quick` takes a
/// few of them.
pub(super) fn shapes(quick: bool) -> Vec<(usize, usize, usize)> {
    const S: [usize; 8] = [1, 7, 63, 64, 65, 100, 1000, 1001];
    let mut v: Vec<_> = (0..8).map(|i| (S[i], S[7 - i], S[(i + 3) % 8])).collect();
    v.extend([(2, 3, 5), (17, 33, 9), (33, 17, 130)]);
    if quick {
        vec![(1, 1001, 64), (65, 7, 1000), (17, 33, 9)]
    } else {
        v
    }
}

/// The shapes of the epilogue variants (every activation, the logits, every optimizer step): odd
/// in M and N, so that the masks and the padding show, on a short K, so that the product's error
/// is small beside what a wrong step changes.
fn variant_shapes(quick: bool) -> &'static [(usize, usize, usize)] {
    if quick {
        &[(63, 65, 7)]
    } else {
        &[(63, 65, 7), (7, 33, 65)]
    }
}

/// Every matmul check on `ctx` in `layout`, cheapest first: every epilogue on the first shape
/// with the first block (the quickest to compile), then the other blocks, then the next shape,
/// so that a wrong kernel fails early (`--fail-fast`).
pub(super) async fn matmul_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
    let mut tasks = Vec::new();
    for (ei, e) in Epi::all(quick).into_iter().enumerate() {
        // The variants on one block: the epilogue is one function that every block calls, and
        // the core epilogues check each block's calls.
        let (shapes, blocks) = if e.core() {
            (shapes(quick), Block::of_layout(layout))
        } else {
            (
                variant_shapes(quick).to_vec(),
                vec![Block::of_layout(layout)[0]],
            )
        };
        for &trans in e.transposes() {
            for (si, &dims) in shapes.iter().enumerate() {
                for (bi, &block) in blocks.iter().enumerate() {
                    tasks.push(((si, bi), ei, e, trans, dims, block));
                }
            }
        }
    }
    tasks.sort_by_key(|t| t.0);
    for ((si, _), ei, e, trans, dims, block) in tasks {
        if suite.stopped() {
            return;
        }
        let key = e.key(layout, block, trans);
        let t = |b: bool| if b { "ᵀ" } else { "" };
        let kernel = format!("matmul/{}", e.name());
        let (m, n, k) = dims;
        let shape = format!("A{}B{} {m}x{n}x{k}", t(trans.0), t(trans.1));
        let seed = (si as u64) << 16 | (ei as u64) << 4 | trans.0 as u64 | (trans.1 as u64) << 1;
        let outcome = (check_matmul(ctx, key, e, dims, seed).await)
            .map(|checked| (checked.ratio(), checked.failure()));
        suite.record(kernel, block.name(), layout, shape, "2γ_k·|A|·|B|", outcome);
    }
    matmul_model_checks(suite, ctx, layout, quick).await;
}

/// A sweep's models stacked in one matmul dispatch (one after the other in each buffer, or one
/// below the other in each texture): in every block of `layout`, for the epilogues training
/// runs, 3 models on odd shapes and 65 on a small one, each model's outputs must be those of its
/// own dispatch bit for bit ([`crate::check::sweep::check_matmul_models`]).
async fn matmul_model_checks(suite: &mut Suite<'_>, ctx: &GpuContext, layout: Layout, quick: bool) {
    let decayed = |scheduled| Update {
        decay_bits: crate::check::matmul::DECAY.to_bits(),
        scheduled,
    };
    let epis = [
        Epi::Act(Activation::Gelu),
        Epi::Grad(Activation::Relu),
        Epi::SquaredError,
        Epi::Logits,
        Epi::Update(Opt::AdamW, decayed(true)),
        Epi::Update(Opt::Nesterov, decayed(false)),
    ];
    // K of 33 and 66: two and four split-K ranges per model.
    let shapes: &[(usize, usize, usize)] = match quick {
        true => &[(7, 5, 33)],
        false => &[(7, 5, 33), (65, 63, 66)],
    };
    let mut runs: Vec<(Epi, (usize, usize, usize), usize)> = Vec::new();
    for &dims in shapes {
        runs.extend(epis.iter().map(|&e| (e, dims, 3)));
    }
    runs.push((Epi::Update(Opt::Adam, Update::default()), (7, 5, 33), 65));
    for (i, (e, dims, models)) in runs.into_iter().enumerate() {
        for block in Block::of_layout(layout) {
            if suite.stopped() {
                return;
            }
            let key = e.key(layout, block, e.transposes()[0]);
            let seeds: Vec<u64> = (0..models as u64).map(|j| (i as u64) << 8 | j).collect();
            let outcome = crate::check::sweep::check_matmul_models(ctx, key, e, dims, &seeds)
                .await
                .map(|diff| match diff {
                    None => (0.0, None),
                    Some(at) => (f64::INFINITY, Some(at)),
                });
            let (m, n, k) = dims;
            let kernel = format!("matmul/models/{}", e.name());
            let shape = format!("{models}x{m}x{n}x{k}");
            let bound = "bit for bit each model's own dispatch";
            suite.record(kernel, block.name(), layout, shape, bound, outcome);
        }
    }
}

/// `bias_update`: the column sums bit for bit (STORE), and every optimizer step on them within
/// its rounding (the sums are the CPU's bits, so only the step's slack is allowed) on `ctx` in
/// `layout`, the optimizer's moments included.
pub(super) async fn bias_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
    let shapes: &[(usize, usize)] = if quick {
        &[(7, 3), (63, 65)]
    } else {
        &[(1, 1), (7, 3), (64, 100), (63, 65), (1001, 7), (5, 1000)]
    };
    const FEW: &[(usize, usize)] = &[(7, 3), (63, 65)];
    let mut variants = vec![None];
    variants.extend(steps(quick).into_iter().map(Some));
    for (vi, variant) in variants.into_iter().enumerate() {
        // The store and plain SGD on every shape, the other steps on two (one of them wider than
        // a vec4, so that each column's state is its own).
        let shapes = if vi <= 1 { shapes } else { FEW };
        for &(rows, cols) in shapes {
            if suite.stopped() {
                return;
            }
            let seed = (rows * 10_000 + cols) as u64 ^ (vi as u64) << 32;
            let shape = format!("{rows}x{cols}");
            let kernel = match variant {
                None => "bias_update/store".to_string(),
                Some((o, u)) => format!("bias_update/{}", step_name(o, u)),
            };
            let outcome = (check_bias_update(ctx, layout, (rows, cols), variant, seed).await)
                .map(|ratio| (ratio, None));
            let bound = if variant.is_none() {
                "bit-exact"
            } else {
                "the step's rounding"
            };
            suite.record(kernel, "-", layout, shape.clone(), bound, outcome);
        }
    }
    // A shared layer's bias gradient summed over its uses (ACC_IN and ACC_OUT): the sum so far
    // plus the column sums, bit for bit; the bias itself untouched.
    for &(rows, cols) in FEW {
        if suite.stopped() {
            return;
        }
        let mut r = seeded((rows * 10_000 + cols) as u64 ^ 0xacc);
        let g = Matrix::randn(rows, cols, &mut r).data;
        let b = Matrix::randn(1, cols, &mut r).data;
        let sum0 = Matrix::randn(1, cols, &mut r).data;
        let mut db = vec![0.0f32; cols];
        cpu::bias_update(&mut db, &g, Epilogue::Store);
        let want: Vec<f64> = (sum0.iter().zip(&db))
            .map(|(s, d)| (s + d) as f64)
            .collect();
        let shape = format!("{rows}x{cols}");
        let run = BiasRun {
            lr: BASE_LR,
            acc: Acc {
                input: true,
                output: true,
            },
            sum: Some(&sum0),
            ..BiasRun::default()
        };
        let outcome =
            run_bias(ctx, layout, &g, (rows, cols), &b, run)
                .await
                .map(|(got_b, got_sum, _)| {
                    let r = worst_ratio(&got_sum, &want, &vec![f64::MIN_POSITIVE; cols]);
                    let note = (got_b != b).then(|| "the bias changed while summing".to_string());
                    (r, note)
                });
        suite.record(
            "bias_update/sum".into(),
            "-",
            layout,
            shape,
            "bit-exact",
            outcome,
        );
    }
}

/// `loss_reduce` bit for bit against the CPU's reduction in the same order.
pub(super) async fn loss_reduce_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
    let shapes: &[(usize, usize)] = if quick {
        &[(64, 10), (63, 65)]
    } else {
        &[(1, 1), (7, 3), (64, 10), (63, 65), (1001, 7), (100, 1000)]
    };
    for &(rows, cols) in shapes {
        if suite.stopped() {
            return;
        }
        let v = Matrix::randn(rows, cols, &mut seeded((rows * 7 + cols) as u64)).data;
        let v: Vec<f32> = v.iter().map(|x| x * x).collect();
        let want = cpu::loss_reduce(&v);
        let shape = format!("{rows}x{cols}");
        let outcome = run_loss_reduce(ctx, &v, (rows, cols))
            .await
            .map(|(got, epoch)| {
                let got = [got];
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

/// `loss_reduce` as a training step ends it (ADVANCE): the step count, beta1^t and beta2^t bit for
/// bit against the CPU's `OptCounters::advance`, and the next step's learning rate from the
/// schedule within `64u·|lr| + 1.2e-6·|lr - min|` of the CPU's (`schedule.wgsl`: a power by
/// squaring, a warm-up's few operations, and the cosine's polynomial, which both paths evaluate
/// within 6e-7 of cos), on schedules with and without a warm-up and at steps around their
/// boundaries and the counter's saturation.
pub(super) async fn schedule_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
    let schedules: &[(&str, Option<&str>)] = if quick {
        &[("cosine:10:0.001", Some("4:0.1"))]
    } else {
        &[
            ("step:3:0.5", None),
            ("cosine:10:0.001", Some("4:0.1")),
            ("constant", Some("5:0.2")),
            ("cosine:7:0", None),
        ]
    };
    let steps: &[u32] = if quick {
        &[0, 3, 9]
    } else {
        &[0, 1, 3, 4, 9, 13, 1000, u32::MAX - 1, u32::MAX]
    };
    let (beta1, beta2) = (ADAM[0], ADAM[1]);
    let opt = Optimizer {
        kind: OptimizerKind::Adam,
        beta1,
        beta2,
        ..Optimizer::default()
    };
    for &(main, warmup) in schedules {
        let Ok(schedule) = crate::schedule::LrSchedule::parse(Some(main), warmup) else {
            continue;
        };
        for &t in steps {
            if suite.stopped() {
                return;
            }
            let c = crate::state::OptCounters {
                t,
                beta1_t: BETA_T[0],
                beta2_t: BETA_T[1],
            };
            let mut next = c;
            next.advance(&opt);
            let lr = BASE_LR;
            let want_lr = schedule.lr(lr, next.t - 1) as f64;
            let min_lr = match schedule.main {
                crate::schedule::Schedule::Cosine { min_lr, .. } => min_lr as f64,
                _ => 0.0,
            };
            let bound = 64.0 * crate::check::U * want_lr.abs()
                + 1.2e-6 * (want_lr - min_lr).abs()
                + f64::MIN_POSITIVE;
            let shape = format!(
                "{main}{} t={t}",
                warmup.map_or(String::new(), |w| format!("+{w}"))
            );
            let outcome = run_advance(ctx, c, (beta1, beta2), (&schedule, lr))
                .await
                .map(|w| {
                    let want = [
                        1,
                        next.t,
                        next.beta1_t.to_bits(),
                        next.beta2_t.to_bits(),
                        next.t,
                    ];
                    let words_ok = w[..5] == want;
                    let got = [f32::from_bits(w[5])];
                    let r = worst_ratio(&got, &[want_lr], &[bound]);
                    let note = (!words_ok)
                        .then(|| format!("counters {:?}, the CPU's {:?}", &w[..5], want));
                    (if words_ok { r } else { f64::INFINITY }, note)
                });
            suite.record(
                "loss_reduce/advance".into(),
                "-",
                layout,
                shape,
                "counters bit-exact; lr 64u + 1.2e-6·|lr-min|",
                outcome,
            );
        }
    }
}

/// `cross_entropy` (softmax, gradient, the rows' losses summed) against the CPU's on logits
/// spread widely, class targets and soft ones whose rows do not sum to 1, its gradient matrix
/// poisoned first ([`check_cross_entropy`], with its bounds).
pub(super) async fn cross_entropy_checks(
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
    for (si, &(rows, cols)) in shapes.iter().enumerate() {
        if suite.stopped() {
            return;
        }
        let mut r = seeded((rows * 11 + cols) as u64);
        // Logits spread widely, each row shifted by -100, 0 or +100 (softmax does not move):
        // exp of a shifted logit under- or overflows f32 unless the row's max is taken out.
        let z: Vec<f32> = (Matrix::randn(rows, cols, &mut r).data.iter().enumerate())
            .map(|(i, v)| 8.0 * v + 100.0 * ((i / cols) % 3) as f32 - 100.0)
            .collect();
        // Class targets, and on every other shape soft ones whose rows do not sum to 1 (the
        // gradient's Σy term shows only there).
        let y = if si % 2 == 0 {
            Matrix::one_hot_classes(rows, cols, &mut r).data
        } else {
            (Matrix::randn(rows, cols, &mut r).data.iter())
                .map(|v| v.abs())
                .collect()
        };
        let coef = 1.0 / rows as f32;
        let shape = format!("{rows}x{cols}");
        let outcome = (run_cross_entropy(ctx, layout, &z, &y, (rows, cols), (coef, coef)).await)
            .map(|(loss, grad)| {
                let got = (loss, &grad[..]);
                check_cross_entropy(&z, &y, (rows, cols), (coef, coef), got)
            });
        suite.record(
            "cross_entropy".into(),
            "-",
            layout,
            shape,
            "2e-6·Σy/rows + 1e-6·|g|; loss WGSL log/exp + 1e-5",
            outcome,
        );
    }
}
