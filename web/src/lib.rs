//! gpu-train in the browser: the page (`web/index.html`, `web/app.js`) drives the library through
//! these functions, on the browser's WebGPU adapter and on the CPU reference compiled to wasm
//! (one thread). Everything crosses the boundary as JSON text or byte arrays; errors as the
//! library's message text.
//!
//! Nothing here orchestrates: a job is [`gpu_train::spec::JobSpec`] resolved once, a run is a
//! [`gpu_train::train::Session`] driven chunk by chunk (one submission and one readback per log
//! interval on the GPU, as natively), `verify` and `bench` are the library's suites, and `tune`
//! is the library's tuning run, its outcome kept in the browser's storage as the native cache file.

#[cfg(target_arch = "wasm32")]
mod page;

#[cfg(target_arch = "wasm32")]
pub use page::*;

use gpu_train::bench::trajectory_tol;
use serde::Serialize;

/// How two loss trajectories of one job compare (the GPU's against the CPU reference's): the
/// worst relative difference over the epochs, and the worst difference in units of the
/// trajectory tolerance the native tests and `bench` use (`3e-3·√L + 1e-5·L`); at most 1 passes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Parity {
    pub epochs: usize,
    pub worst_relative: f64,
    pub worst_relative_epoch: usize,
    pub worst_ratio: f64,
    pub worst_ratio_epoch: usize,
    pub passed: bool,
}

/// [`Parity`] of `got` against `want` (the reference), epoch `first + i` at index `i`. Different
/// lengths, or a NaN, fail.
pub fn parity(got: &[f32], want: &[f32], first: usize) -> Parity {
    let mut p = Parity {
        epochs: got.len().min(want.len()),
        worst_relative: 0.0,
        worst_relative_epoch: first,
        worst_ratio: if got.len() == want.len() {
            0.0
        } else {
            f64::INFINITY
        },
        worst_ratio_epoch: first,
        passed: false,
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g as f64 - w as f64).abs();
        let rel = d / (w as f64).abs().max(f64::MIN_POSITIVE);
        let ratio = d / trajectory_tol(w);
        let (rel, ratio) = match d.is_nan() {
            true => (f64::INFINITY, f64::INFINITY),
            false => (rel, ratio),
        };
        if rel > p.worst_relative {
            (p.worst_relative, p.worst_relative_epoch) = (rel, first + i);
        }
        if ratio > p.worst_ratio {
            (p.worst_ratio, p.worst_ratio_epoch) = (ratio, first + i);
        }
    }
    p.passed = p.worst_ratio <= 1.0;
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parity_finds_the_worst_epoch_and_fails_on_nan_or_length() {
        let want = [100.0, 10.0, 1.0];
        let p = parity(&[100.0, 10.001, 1.0], &want, 5);
        assert!(p.passed, "{p:?}");
        assert_eq!(p.worst_relative_epoch, 6);
        assert!((p.worst_relative - 1e-4).abs() < 1e-6, "{p:?}");
        assert!(!parity(&[100.0, 11.0, 1.0], &want, 0).passed);
        assert!(!parity(&[100.0, f32::NAN, 1.0], &want, 0).passed);
        assert!(!parity(&[100.0, 10.0], &want, 0).passed);
    }
}
