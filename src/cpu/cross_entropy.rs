//! The CPU twin of `shaders/cross_entropy.wgsl`: softmax, its gradient and the rows' losses.

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
