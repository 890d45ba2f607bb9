//! Helpers shared by the integration tests: tolerant comparisons that explain their failures, the
//! one GPU context of a test binary (or a loud skip), and seeded random data.
//!
//! Every test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use gpu_train::gpu::GpuContext;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use std::io::Write;
use std::sync::{Arc, OnceLock};

pub mod run;

/// Unit roundoff of f32 (half an ulp of 1.0): every correctly rounded f32 operation has a relative
/// error of at most this.
pub const U32: f64 = gpu_train::check::U;

/// The environment variable that turns "no GPU adapter" from a skip into a failure (set it in CI on
/// machines that have one, so GPU tests cannot silently stop running).
pub const REQUIRE_GPU: &str = "GPU_TRAIN_REQUIRE_GPU";

/// Compare element by element against `|got - want| <= bound[i]`. On failure, panics naming the
/// worst element (by error relative to its bound), its index, both values, the error and the
/// bound, and how many elements exceed their bound. NaN or infinity where `want` is finite always
/// counts as a failure (a poisoned element the kernel never wrote, for one).
#[track_caller]
pub fn assert_within(label: &str, got: &[f32], want: &[f32], bound: impl Fn(usize) -> f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{label}: length mismatch: got {} elements, want {}",
        got.len(),
        want.len()
    );
    let mut bad = 0usize;
    // (index, error / bound), the worst one
    let mut worst: Option<(usize, f64)> = None;
    for i in 0..got.len() {
        let (g, w) = (got[i] as f64, want[i] as f64);
        let err = (g - w).abs();
        let b = bound(i);
        let ratio = if g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()) {
            0.0
        } else if !err.is_finite() {
            f64::INFINITY
        } else if b > 0.0 {
            err / b
        } else if err == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        if ratio > 1.0 {
            bad += 1;
        }
        if worst.is_none_or(|(_, r)| ratio > r) {
            worst = Some((i, ratio));
        }
    }
    if bad > 0 {
        let (i, _) = worst.expect("a failing element exists");
        panic!(
            "{label}: {bad} of {} elements out of tolerance; worst at index {i}: got {:e}, want \
             {:e}, error {:e}, allowed {:e}",
            got.len(),
            got[i],
            want[i],
            (got[i] as f64 - want[i] as f64).abs(),
            bound(i)
        );
    }
}

/// `|got - want| <= abs_tol + rel_tol * |want|` for every element, see [`assert_within`].
#[track_caller]
pub fn assert_close(label: &str, got: &[f32], want: &[f32], rel_tol: f64, abs_tol: f64) {
    assert_within(label, got, want, |i| {
        abs_tol + rel_tol * (want[i] as f64).abs()
    });
}

/// [`assert_close`] with the absolute floor taken relative to the largest `|want|`: `rel_tol` of
/// the array's scale. For results such as gradients, where single elements can cancel to near zero
/// while the others carry the error of the whole computation.
#[track_caller]
pub fn assert_close_normwise(label: &str, got: &[f32], want: &[f32], rel_tol: f64) {
    let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    assert_close(label, got, want, rel_tol, rel_tol * scale);
}

/// Largest `|got - want| / max|want|` (the normwise relative error), for messages and calibration.
pub fn max_rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
    got.iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).abs())
        .fold(0.0, f64::max)
        / scale.max(f64::MIN_POSITIVE)
}

/// Whether GPU tests must run (the adapter is mandatory): `GPU_TRAIN_REQUIRE_GPU=1`.
pub fn gpu_required() -> bool {
    std::env::var(REQUIRE_GPU).is_ok_and(|v| v.trim() == "1")
}

/// The GPU context `--device auto` would open, shared by every test of this binary (opening a
/// device and compiling pipelines is the slow part on software adapters).
///
/// Without an adapter this prints a loud notice to stderr and returns `None`, and the caller skips
/// its test; with `GPU_TRAIN_REQUIRE_GPU=1` it panics instead.
pub fn gpu_or_skip() -> Option<Arc<GpuContext>> {
    static CTX: OnceLock<Result<Arc<GpuContext>, String>> = OnceLock::new();
    let ctx = CTX.get_or_init(|| match GpuContext::auto() {
        Ok(Some(ctx)) => {
            eprintln!(
                "GPU tests run on: {} ({:?}, {})",
                ctx.info.name, ctx.info.device_type, ctx.info.backend
            );
            Ok(ctx)
        }
        Ok(None) => Err("no adapter that can run compute shaders was found".to_string()),
        Err(e) => Err(format!("opening the adapter failed: {e}")),
    });
    match ctx {
        Ok(ctx) => Some(ctx.clone()),
        Err(why) => {
            if gpu_required() {
                panic!(
                    "{REQUIRE_GPU}=1 but no GPU is usable: {why}. Install a driver (on Linux \
                     without a GPU: apt-get install mesa-vulkan-drivers for lavapipe) or unset \
                     {REQUIRE_GPU}."
                );
            }
            // Straight to the stderr handle: libtest captures `eprintln!` of passing tests, and
            // this notice must be seen in a plain `cargo test`.
            let _ = writeln!(
                std::io::stderr(),
                "\n**************************************************************************\n\
                 GPU TESTS SKIPPED: no adapter ({why}).\n\
                 This test passed WITHOUT checking the GPU path. Set {REQUIRE_GPU}=1 to make \
                 this a failure.\n\
                 **************************************************************************\n"
            );
            None
        }
    }
}

/// A ChaCha8 generator (portable: the same numbers on every machine).
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` standard-normal f32 values.
pub fn randn(rng: &mut ChaCha8Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// `n` standard-normal f64 values.
pub fn randn64(rng: &mut ChaCha8Rng, n: usize) -> Vec<f64> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// Path of a file or folder under `tests/fixtures`.
pub fn fixture_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
        .join(rel)
}

/// The numbers of a JSON value (a number, or nested arrays of numbers in numpy's row-major
/// order, as the fixture scripts write matrices) as f32.
pub fn json_f32(v: &serde_json::Value) -> Vec<f32> {
    match v {
        serde_json::Value::Array(a) => a.iter().flat_map(json_f32).collect(),
        x => vec![x.as_f64().expect("a number") as f32],
    }
}

/// Read a `epoch,loss` CSV (as `--history` writes and the fixture script writes) into the losses,
/// checking that the epochs run 0, 1, 2, ... in order.
pub fn read_history_csv(path: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("epoch,loss"),
        "{}: header",
        path.display()
    );
    lines
        .enumerate()
        .map(|(i, line)| {
            let (e, l) = line
                .split_once(',')
                .unwrap_or_else(|| panic!("{}: bad line {line:?}", path.display()));
            assert_eq!(
                e.parse::<usize>().ok(),
                Some(i),
                "{}: epoch column",
                path.display()
            );
            l.parse::<f64>()
                .unwrap_or_else(|_| panic!("{}: bad loss in {line:?}", path.display()))
        })
        .collect()
}

#[allow(unused_imports)]
pub use gpu_train::check::trajectory_tol;

/// The adapter `gpu_or_skip` opened, to open again with other limits.
pub fn auto_adapter() -> gpu_train::gpu::AdapterEntry {
    let list = gpu_train::gpu::list_adapters();
    let choice = &gpu_train::gpu::DeviceChoice::Auto;
    gpu_train::gpu::context::choose(choice, list)
        .unwrap()
        .expect("the adapter gpu_or_skip opened")
}
