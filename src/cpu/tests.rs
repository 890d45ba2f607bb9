use super::matmul::{matmul_on, Post, Product, SPLIT_K_RATIO, SPLIT_MIN_MACS};
use super::team::Team;
use super::*;
use crate::job::Activation;

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
