//! The presets: `linear-delta` against its hand-worked first step and against numpy's 50 steps
//! (`tests/fixtures/make_linear_delta.py`, output committed), with and without biases, on the CPU
//! and the GPU.
//!
//! Tolerances: the net is tiny (products of length <= 3) and every number starts as 0.5, so f32
//! follows float64 to a few ulps per step: parameters within 1e-5 normwise after 50 steps. The loss
//! `½d²` with `d = p - y` and `p → y = 1` inherits the absolute error `δp` of the prediction (a few
//! ulps of 1): `|ΔL| ≈ |d|·δp = sqrt(2L)·δp`; we allow `δp = 2e-6` (17 ulps of 1) plus 1e-5 of
//! the loss and 1e-12 absolute (numpy's loss reaches 1e-31, f32's stops at rounding level).

use crate::common;

use common::{assert_close_normwise, fixture_path, gpu_or_skip, json_f32};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::GpuBackend;
use gpu_train::init::{HostState, Params};
use gpu_train::job::{self, Job};

fn linear_delta(bias: bool) -> Job {
    Job {
        bias,
        ..job::preset("linear-delta").unwrap()
    }
}

fn fixture(bias: bool) -> serde_json::Value {
    let name = if bias { "bias" } else { "no_bias" };
    let text = std::fs::read_to_string(fixture_path(&format!("linear_delta/{name}.json")))
        .expect("fixture written by tests/fixtures/make_linear_delta.py");
    serde_json::from_str(&text).unwrap()
}

fn check_params(label: &str, got: &Params, want: &serde_json::Value) {
    for (name, m) in got.named() {
        assert_close_normwise(
            &format!("{label}: {name}"),
            &m.data,
            &json_f32(&want[&name]),
            1e-5,
        );
    }
}

fn check(label: &str, make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>) {
    for bias in [false, true] {
        let job = linear_delta(bias);
        let state = HostState::seeded(&job);
        assert_eq!(state.x.data, vec![1.0, 1.0]);
        assert_eq!(state.y.data, vec![1.0]);
        let want = fixture(bias);
        let label = format!("{label} linear-delta bias {bias}");
        let mut backend = make(&job, &state);
        let first = backend.run(1).unwrap();
        let p1 = backend.read_params().unwrap();
        if !bias {
            // Worked by hand: h1 = [1,1,1], h2 = [1.5,1.5], p = 1.5, d = 0.5, loss 1/8;
            // dw3 = h2ᵀ·d = 0.75, dw2 = h1ᵀ·(d·w3ᵀ) = 0.25, dw1 = xᵀ·(0.25·2·0.5) = 0.25.
            assert_eq!(first, vec![0.125], "{label}: first loss");
            for (name, m) in p1.named() {
                let v = if name == "w3" { 0.425 } else { 0.475 };
                assert!(
                    m.data.iter().all(|&x| (x - v).abs() <= 1e-7),
                    "{label}: {name} after one step is {:?}, by hand {v}",
                    m.data
                );
            }
        }
        check_params(&format!("{label} after 1 step"), &p1, &want["after_1"]);
        let mut losses = first;
        losses.extend(backend.run(job.epochs - 1).unwrap());
        let want_losses: Vec<f64> = want["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(losses.len(), want_losses.len());
        for (e, (&g, &w)) in losses.iter().zip(&want_losses).enumerate() {
            assert!(
                (g as f64 - w).abs() <= 2e-6 * (2.0 * w).sqrt() + 1e-5 * w + 1e-12,
                "{label}: epoch {e}: loss {g:e}, numpy {w:e}"
            );
        }
        let p50 = backend.read_params().unwrap();
        check_params(&format!("{label} after 50 steps"), &p50, &want["after_50"]);
    }
}

#[test]
fn cpu_linear_delta_matches_hand_worked_step_and_numpy_50_steps() {
    check("CPU", &mut |job, state| {
        Box::new(CpuBackend::new(job, state))
    });
}

#[test]
fn gpu_linear_delta_matches_hand_worked_step_and_numpy_50_steps() {
    let Some(ctx) = gpu_or_skip() else { return };
    check("GPU", &mut |job, state| {
        Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap())
    });
}
