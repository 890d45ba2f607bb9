//! Error bounds of GPU results against the CPU reference, derived from the precision WGSL states
//! for each operation; one home for them, used by `verify` and the kernel tests alike.

pub mod bias_update;
pub mod cross_entropy;
pub mod epilogue;
pub mod matmul;
pub mod sweep;
pub mod train_step;

/// Unit roundoff of f32: a correctly rounded operation errs by at most this, relative.
pub const U: f64 = f32::EPSILON as f64 / 2.0;

/// `γ_k = k·u/(1-k·u)`: how far a correct f32 sum of k products (any order) may be from the
/// exact one, per unit of `Σ|a·b|` (Higham, §3.1).
pub fn gamma(k: usize) -> f64 {
    let ku = k.max(1) as f64 * U;
    ku / (1.0 - ku)
}

/// `2·γ_k`: how far two correct f32 products of length k may be apart, per unit of `|A|·|B|`.
pub fn two_gamma(k: usize) -> f64 {
    2.0 * gamma(k)
}

/// The worst `|got - want| / bound` (0/0 counts as 0; a NaN, or a length mismatch, as infinite).
pub fn worst_ratio(got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    (got.iter().zip(want).zip(bound))
        .map(|((&g, &w), &b)| ratio(g, w, b))
        .fold(0.0, f64::max)
}

/// One element's `|got - want| / bound`: 0 where they are equal (whatever the bound), infinite
/// where they differ under a zero bound or anything is NaN.
pub fn ratio(got: f32, want: f64, bound: f64) -> f64 {
    let d = (got as f64 - want).abs();
    if d == 0.0 {
        return 0.0;
    }
    let r = d / bound;
    if r.is_nan() {
        f64::INFINITY
    } else {
        r
    }
}

/// How far two correct training runs' losses may drift apart at loss `L`, per epoch: the
/// trajectory tolerance of every parity check (tests, `verify`, the bench, the page),
/// `3e-3·√L + 1e-5·L`: summation order changes the predictions by ~1e-6 relative, which moves
/// the loss by about `3e-3·√L` at the default job's scale, plus rounding of `L` itself.
pub fn trajectory_tol(l: f32) -> f64 {
    let l = l as f64;
    3e-3 * l.sqrt() + 1e-5 * l
}

/// One ulp of a value in [1, 2).
const ULP1: f64 = f32::EPSILON as f64;

/// WGSL's stated accuracy of `log(s)`: an absolute 2^-21 for s in [0.5, 2], else 3 ulp.
pub fn log_error(s: f64) -> f64 {
    if (0.5..=2.0).contains(&s) {
        2f64.powi(-21)
    } else {
        3.0 * ULP1 * s.ln().abs().max(1.0)
    }
}

/// The bound on `cross_entropy`'s loss, `scale · Σ_r Σ_j y_rj((m_r - z_rj) + log s_r)` with
/// `s_r = Σ_j exp(z_rj - m_r)`, against the CPU's (logits `z` and targets `y`, `[rows, cols]`).
///
/// Per row, `log s` carries WGSL's stated error of `log` ([`log_error`]: absolute near 1, which
/// is where a row whose largest logit dominates sits, so a tiny loss cannot be bounded
/// relatively) plus the relative error of `s` over `log`'s derivative 1/s: each `exp(x)` within
/// (3 + 2|x|) ulp (WGSL), weighted by its share of `s`, and the sum's `cols·u`; times the row's
/// `Σ y`. On top, 1e-5 relative for the host's own rounding and the reduction's order (a few
/// ulps per row). A wrong row or a dropped term (`m - z_j`, `log s`) is off by orders more; a
/// missing max shows only where exp under- or overflows without it (the checks shift rows of
/// logits by ±100 for that).
pub fn cross_entropy_loss_bound(z: &[f32], y: &[f32], cols: usize, scale: f32, loss: f32) -> f64 {
    let mut sum = 0.0f64;
    for (z, y) in z.chunks(cols).zip(y.chunks(cols)) {
        let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let e: Vec<f64> = z.iter().map(|&v| (v as f64 - m).exp()).collect();
        let s: f64 = e.iter().sum();
        let rel_s: f64 = (e.iter().zip(z))
            .map(|(e, &v)| e / s * (3.0 + 2.0 * (v as f64 - m).abs()) * ULP1)
            .sum::<f64>()
            + cols as f64 * U;
        let ys: f64 = y.iter().map(|&v| v as f64).sum();
        sum += ys.abs() * (log_error(s) + rel_s);
    }
    scale.abs() as f64 * sum + 1e-5 * (loss as f64).abs()
}

/// A ratio read back: null (what serde_json writes for an infinite one) is infinite.
pub fn null_as_infinity<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::INFINITY))
}
