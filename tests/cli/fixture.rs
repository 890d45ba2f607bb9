//! The numpy original's trajectory (tests/fixtures/small/, made by make_fixture.py with the loop of
//! seed_numpy.py in float64) reproduced by the CPU backend, the GPU backend and the command line,
//! starting from the fixture's own arrays.
//!
//! Tolerance, f32 against f64. The arrays are rounded to f32 on loading (relative 6e-8), and every
//! operation runs in f32 afterwards, so the trajectories drift apart as two f32 runs do (see
//! `trajectory_tol` in tests/library/parity.rs): the difference `δp` of the predictions stays small while
//! the loss falls, and `|ΔL| <= 2·sqrt(L)·‖δp‖`. We allow `5e-4·sqrt(L) + 1e-5·L`; measured on the
//! CPU and on lavapipe the worst epoch uses 5% of that (while the loss falls from 1.2e5 to 1.4e-2),
//! and a wrong update (1% of the loss, e.g. at L = 1e3: 10, against an allowed 2.6e-2) is far
//! outside.

use crate::common;

use common::{assert_within, fixture_path, gpu_or_skip, read_history_csv};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::GpuBackend;
use gpu_train::init::HostState;
use gpu_train::io::npy;
use gpu_train::job::Job;

/// The fixture's job, from its params.json.
fn fixture_job() -> Job {
    let text = std::fs::read_to_string(fixture_path("small/params.json")).unwrap();
    let p: serde_json::Value = serde_json::from_str(&text).unwrap();
    let job = Job {
        layers: p["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect(),
        batch: p["batch"].as_u64().unwrap() as usize,
        lr: p["lr"].as_f64().unwrap() as f32,
        epochs: p["epochs"].as_u64().unwrap() as usize,
        seed: p["seed"].as_u64().unwrap(),
        log_every: 0,
        ..Job::default()
    };
    job.validate().unwrap();
    job
}

fn numpy_losses() -> Vec<f64> {
    read_history_csv(&fixture_path("small/losses.csv"))
}

fn load() -> (Job, HostState) {
    let job = fixture_job();
    let state = npy::load_state(&fixture_path("small")).unwrap();
    assert_eq!(
        state.dims(),
        (job.layers.clone(), job.batch),
        "fixture shapes"
    );
    (job, state)
}

/// Allowed |f32 loss - f64 loss| at the f64 loss `l`, see the file comment.
fn tol(l: f64) -> f64 {
    5e-4 * l.sqrt() + 1e-5 * l
}

/// Check a trajectory against numpy's, printing how close it came.
fn check_trajectory(label: &str, got: &[f32]) {
    let want = numpy_losses();
    assert_eq!(got.len(), want.len(), "{label}: number of epochs");
    let want32: Vec<f32> = want.iter().map(|&v| v as f32).collect();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w).abs() / tol(w))
        .fold(0.0, f64::max);
    eprintln!("{label}: worst difference {worst:.3} of the allowed");
    assert_within(label, got, &want32, |i| tol(want[i]));
}

#[test]
fn fixture_is_a_far_falling_numpy_trajectory() {
    let job = fixture_job();
    let want = numpy_losses();
    assert_eq!(want.len(), job.epochs);
    assert!(want[0] > 1e5 && want[job.epochs - 1] < 1e-1, "{want:?}");
    assert!(
        want.windows(2).all(|w| w[1] < w[0]),
        "the loss falls every epoch"
    );
}

/// `--init` accepts numpy's float64 arrays: every value arrives rounded to the nearest f32.
#[test]
fn fixture_f64_arrays_load_as_nearest_f32() {
    let (_, state) = load();
    let dir = fixture_path("small");
    let arrays = [
        ("x.npy", &state.x),
        ("y.npy", &state.y),
        ("w1.npy", &state.weights[0]),
        ("w2.npy", &state.weights[1]),
    ];
    for (name, m) in arrays {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
        assert_eq!(npy.shape(), &[m.rows as u64, m.cols as u64], "{name}");
        let f64s: Vec<f64> = npy.into_vec().unwrap();
        let want: Vec<f32> = f64s.iter().map(|&v| v as f32).collect();
        assert_eq!(m.data, want, "{name}");
        // They really are f64 with more precision than f32 holds (or the test proves little).
        assert!(f64s.iter().any(|&v| v as f32 as f64 != v), "{name}");
    }
}

#[test]
fn cpu_reproduces_numpy_fixture_trajectory() {
    let (job, state) = load();
    let got = CpuBackend::new(&job, &state).run(job.epochs).unwrap();
    check_trajectory("CPU vs numpy", &got);
}

#[test]
fn gpu_reproduces_numpy_fixture_trajectory() {
    let Some(ctx) = gpu_or_skip() else { return };
    let (job, state) = load();
    let got = GpuBackend::new(ctx, &job, &state)
        .unwrap()
        .run(job.epochs)
        .unwrap();
    check_trajectory("GPU vs numpy", &got);
}

#[test]
fn cli_reproduces_numpy_fixture_trajectory_from_init() {
    let job = fixture_job();
    let tmp = tempfile::tempdir().unwrap();
    let hist = tmp.path().join("history.csv");
    let out = crate::common::run::run_command(
        crate::common::run::bin()
            .arg("--init")
            .arg(fixture_path("small"))
            .args(["--device", "cpu", "--quiet"])
            .args(["--epochs", &job.epochs.to_string()])
            .args(["--lr", &format!("{:e}", job.lr)])
            .arg("--history")
            .arg(&hist),
    )
    .success();
    assert!(out.stdout.contains("final loss"), "{}", out.describe());
    let got: Vec<f32> = read_history_csv(&hist).iter().map(|&v| v as f32).collect();
    check_trajectory("CLI (cpu) vs numpy", &got);
}
