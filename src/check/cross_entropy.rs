//! The check of `cross_entropy` (`check_<op>`, one home for `verify` and the kernel tests): the
//! GPU's loss and gradient of softmax cross-entropy against the CPU twin's.
//!
//! Bounds: exp and log may differ between implementations by a few ulps. A gradient element
//! `(softmax·Σy - y)·coef` is within `2e-6·coef·max(Σy, 1) + 1e-6·|g|` of the CPU's (the
//! softmax's error scales with the row's Σy, 1 for class targets); the loss within
//! [`super::cross_entropy_loss_bound`] (WGSL's `log` is exact only to an absolute 2^-21 near 1,
//! where a row whose largest logit dominates has its tiny loss: an H200 misses a relative 1e-5
//! there by 574x). The gradient's padding (to 4 rows and 4 columns) must come back zero: the
//! backward products read it.

use super::{cross_entropy_loss_bound, worst_ratio};
use crate::cpu;

/// `got_loss` and `got_grad` (`[pad4(rows), pad4(cols)]`) of `cross_entropy` on the logits `z`
/// and targets `y` (`[rows, cols]`), the loss scaled by `scale` and the gradient by `coef`,
/// against the CPU's: the worst ratio to the bound, and what else failed (the padding).
pub fn check_cross_entropy(
    z: &[f32],
    y: &[f32],
    (rows, cols): (usize, usize),
    (scale, coef): (f32, f32),
    (got_loss, got_grad): (f32, &[f32]),
) -> (f64, Option<String>) {
    let (mut g, mut row_loss) = (vec![0.0f32; rows * cols], vec![0.0f32; rows]);
    cpu::cross_entropy(&mut g, &mut row_loss, z, y, cols, coef);
    let loss = cpu::loss_reduce(&row_loss) * scale;
    let (pr, pc) = (rows.div_ceil(4) * 4, cols.div_ceil(4) * 4);
    if got_grad.len() != pr * pc {
        let note = format!("{} gradient elements, want {}", got_grad.len(), pr * pc);
        return (f64::INFINITY, Some(note));
    }
    let mut got = vec![got_loss];
    got.extend((0..rows).flat_map(|r| got_grad[r * pc..][..cols].to_vec()));
    let mut want = vec![loss as f64];
    want.extend(g.iter().map(|&v| v as f64));
    let mut bound = vec![cross_entropy_loss_bound(z, y, cols, scale, loss)];
    let ys: Vec<f64> = (y.chunks(cols))
        .map(|row| row.iter().map(|&v| v as f64).sum::<f64>().max(1.0))
        .collect();
    bound.extend(
        g.iter()
            .enumerate()
            .map(|(i, &v)| 2e-6 * coef as f64 * ys[i / cols] + 1e-6 * (v as f64).abs()),
    );
    let padding = (0..pr)
        .flat_map(|r| (0..pc).map(move |c| (r, c)))
        .find(|&(r, c)| (r >= rows || c >= cols) && got_grad[r * pc + c] != 0.0);
    let note = padding.map(|(r, c)| format!("padding ({r}, {c}) is {}", got_grad[r * pc + c]));
    let ratio = worst_ratio(&got, &want, &bound);
    (if note.is_some() { f64::INFINITY } else { ratio }, note)
}
