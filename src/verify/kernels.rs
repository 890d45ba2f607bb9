//! The per-element checks of every kernel: the matmul's variants and epilogues, `bias_update`,
//! `loss_reduce`, `cross_entropy`, each on awkward shapes with its output poisoned first.

use super::*;

/// The generator of a check's inputs.
pub(super) fn seeded(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

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

/// One matmul check: the GPU's outputs against the CPU reference for epilogue `e`.
pub(super) async fn matmul_check(
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
pub(super) async fn matmul_checks(
    suite: &mut Suite<'_>,
    ctx: &GpuContext,
    layout: Layout,
    quick: bool,
) {
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
