//! The CPU twin of the bias epilogue and of `shaders/bias_update.wgsl`.

use super::matmul::Epilogue;

/// `c[r, j] += b[j]` for every row of the `[rows, b.len()]` matrix `c`: a layer's bias, added to
/// its product before the activation (the GPU does it in the product's epilogue).
pub fn bias_forward(c: &mut [f32], b: &[f32]) {
    for row in c.chunks_mut(b.len()) {
        for (v, &bj) in row.iter_mut().zip(b) {
            *v += bj;
        }
    }
}

/// The bias gradient `db[j] = Σ_r g[r, j]` of a `[rows, b.len()]` output gradient `g`, summed over
/// the rows in order (as `shaders/bias_update.wgsl` does), then `b = db` (`Epilogue::Store`),
/// `b = b + db` (`Epilogue::Accumulate`) or the SGD step `b = b - lr·db`.
pub fn bias_update(b: &mut [f32], g: &[f32], epilogue: Epilogue) {
    let n = b.len();
    for (j, bj) in b.iter_mut().enumerate() {
        let mut s = 0.0f32;
        for r in 0..g.len() / n {
            s += g[r * n + j];
        }
        *bj = match epilogue {
            Epilogue::Store => s,
            Epilogue::Sgd(lr) => *bj - lr * s,
            Epilogue::Accumulate => s + *bj,
        };
    }
}
