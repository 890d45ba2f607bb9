//! The CPU twins of the loss epilogue and of `shaders/loss_reduce.wgsl`.

use super::cross_entropy::cross_entropy;
use crate::job::Loss;

/// Number of partial sums in the deterministic reduction; the GPU's `loss_reduce` kernel runs one
/// workgroup of this many invocations.
pub const REDUCE_WIDTH: usize = 256;

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
