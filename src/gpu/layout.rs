//! The matrix layout on the GPU: every dimension padded to a multiple of 4 with zeros, so a
//! row is a whole number of vec4 (texels); uploads pad and readbacks strip it.

/// `n` rounded up to a multiple of 4: the padded size of every matrix dimension on the GPU.
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// A row-major `[rows, cols]` matrix in the GPU layout `[pad4(rows), pad4(cols)]`, the new
/// elements set to `fill` (zero for real data; tests poison with NaN).
pub fn to_padded(rows: usize, cols: usize, data: &[f32], fill: f32) -> Vec<f32> {
    let (pr, pc) = (pad4(rows), pad4(cols));
    let mut out = vec![fill; pr * pc];
    for r in 0..rows {
        out[r * pc..r * pc + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
    }
    out
}

/// The `[rows, cols]` matrix inside a padded GPU-layout one.
pub fn from_padded(rows: usize, cols: usize, padded: &[f32]) -> Vec<f32> {
    let pc = pad4(cols);
    (0..rows)
        .flat_map(|r| padded[r * pc..r * pc + cols].iter().copied())
        .collect()
}

pub(crate) fn padding_is_zero(rows: usize, cols: usize, padded: &[f32]) -> bool {
    let pc = pad4(cols);
    padded
        .iter()
        .enumerate()
        .all(|(i, &v)| (i / pc < rows && i % pc < cols) || v == 0.0)
}
