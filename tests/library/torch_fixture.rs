//! PyTorch's own trajectories (tests/fixtures/make_torch_fixture.py, run by hand, output
//! committed): nn.Linear layers with biases, ReLU or none, MSELoss (sum and mean), L1Loss, and
//! torch.optim's SGD, SGD with momentum and Nesterov, and Adam, from the same initial arrays. The
//! CPU and GPU paths reproduce the loss of every epoch and the parameters after 20 epochs. Also
//! the tutorial's control-flow example (DynamicNet, a middle layer shared and run 0-3 times per
//! epoch) with SGD momentum and Adam, replaying PyTorch's depths. And the options past those:
//! tanh, sigmoid, GELU and leaky ReLU; CrossEntropyLoss on class indices and on probability rows;
//! weight decay with SGD momentum and Adam, AdamW; StepLR, CosineAnnealingLR after a LinearLR
//! warm-up (past its T_MAX, where PyTorch's curve rises again), and a warm-up alone, whose
//! learning rate at every step is also checked against the one PyTorch used.
//!
//! Tolerance: PyTorch ran in float64 from the f32 arrays the trainer loads, so what differs is
//! the trainer's f32 arithmetic: a few ulps per operation on a net of widths <= 20, compounded
//! over 20 steps: measured at most 1.7e-6 relative (Adam), 1e-7 for the others, on the CPU and on
//! lavapipe. We allow 1e-4 relative on every loss and 1e-4 normwise on every parameter tensor,
//! far below what a different formula gives (momentum against plain SGD: a final loss of 14.0
//! against 31.1; Nesterov against momentum: 11.7 against 14.0).

use crate::common;

use common::{assert_close, assert_close_normwise, fixture_path, gpu_or_skip, json_f32};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::GpuBackend;
use gpu_train::init::HostState;
use gpu_train::io::{checkpoint, data, npy};
use gpu_train::job::{
    Activation, DynamicDepth, Job, Loss, LrSchedule, Named, Optimizer, OptimizerKind,
};

const CASES: [&str; 21] = [
    "sgd_sse_bias",
    "momentum",
    "nesterov",
    "adam",
    "mse",
    "l1",
    "linear_momentum_mse",
    "dynamic_momentum",
    "dynamic_adam",
    "tanh",
    "sigmoid",
    "gelu",
    "leaky_relu",
    "ce_classes",
    "ce_probs",
    "sgd_weight_decay",
    "adam_weight_decay",
    "adamw",
    "step_lr",
    "cosine_warmup",
    "warmup_only",
];

fn load(case: &str) -> (Job, HostState, serde_json::Value) {
    let text = std::fs::read_to_string(fixture_path(&format!("torch/{case}.json")))
        .expect("fixture written by tests/fixtures/make_torch_fixture.py");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s = &v["settings"];
    let init = if s["dynamic_depth"].is_null() {
        "torch/init"
    } else {
        "torch/dynamic_init"
    };
    let mut state = npy::load_state(&fixture_path(init)).unwrap();
    // Cross-entropy's targets: class indices (made one-hot) or probability rows.
    let targets = match s["targets"].as_str().unwrap() {
        "classes" => Some("y_classes.npy"),
        "probabilities" => Some("y_probs.npy"),
        _ => None,
    };
    if let Some(file) = targets {
        let path = fixture_path(&format!("{init}/{file}"));
        let classes = Some(state.y.cols);
        let y = npy::read_targets(&path, classes).unwrap();
        state.y = data::classification_targets(&path, y, classes).unwrap();
    }
    assert_eq!(
        state.biases.len(),
        state.weights.len(),
        "the fixture has biases"
    );
    let (layers, batch) = state.dims();
    let f = |k: &str| s[k].as_f64().unwrap() as f32;
    // PyTorch's depth of every epoch, replayed.
    let dynamic = s["schedule"].as_array().map(|sched| DynamicDepth {
        max: s["dynamic_depth"].as_u64().unwrap() as usize,
        schedule: sched.iter().map(|u| u.as_u64().unwrap() as usize).collect(),
    });
    let job = Job {
        layers,
        batch,
        lr: f("lr"),
        epochs: s["epochs"].as_u64().unwrap() as usize,
        bias: true,
        activation: Activation::parse(s["activation"].as_str().unwrap()).unwrap(),
        lr_schedule: LrSchedule::parse(s["lr_schedule"].as_str(), s["warmup"].as_str()).unwrap(),
        loss: Loss::parse(s["loss"].as_str().unwrap()).unwrap(),
        optimizer: Optimizer {
            kind: OptimizerKind::parse(s["optimizer"].as_str().unwrap()).unwrap(),
            momentum: f("momentum"),
            nesterov: s["nesterov"].as_bool().unwrap(),
            beta1: f("beta1"),
            beta2: f("beta2"),
            eps: f("eps"),
            weight_decay: f("weight_decay"),
        },
        log_every: 0,
        dynamic,
        ..Job::default()
    };
    job.validate().unwrap();
    (job, state, v)
}

fn check(label: &str, make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>) {
    for case in CASES {
        let (job, state, want) = load(case);
        let label = format!("{label} {case}");
        let mut backend = make(&job, &state);
        let got = backend.run(job.epochs).unwrap();
        let want_losses = json_f32(&want["losses"]);
        assert_eq!(got.len(), want_losses.len(), "{label}: epochs");
        let worst = got
            .iter()
            .zip(&want_losses)
            .map(|(g, w)| ((g - w) / w).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{label}: {} -> {}, worst relative loss difference {worst:e}",
            got[0],
            got[got.len() - 1]
        );
        assert_close(&format!("{label}: losses"), &got, &want_losses, 1e-4, 0.0);
        let params = backend.read_params().unwrap();
        for (name, m) in params.named() {
            assert_close_normwise(
                &format!("{label}: {name}"),
                &m.data,
                &json_f32(&want["final"][&name]),
                1e-4,
            );
        }
    }
}

#[test]
fn schedules_give_pytorchs_learning_rate_at_every_step() {
    for case in CASES {
        let (job, _, want) = load(case);
        let lrs = json_f32(&want["lrs"]);
        assert_eq!(lrs.len(), job.epochs, "{case}: one step per epoch");
        for (n, &w) in lrs.iter().enumerate() {
            let got = job.lr_schedule.lr(job.lr, n as u32);
            assert!(
                ((got - w) / w).abs() <= 1e-6,
                "{case}: step {n}: lr {got:e}, PyTorch {w:e}"
            );
        }
    }
}

/// The schedule cases stopped after 7 of 20 epochs (in StepLR's second period, in the cosine
/// after its warm-up, at the warm-up's end), checkpointed, loaded into a fresh backend and
/// resumed: still PyTorch's trajectory, and bit-identical to the uninterrupted run.
fn check_resumed(label: &str, make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("run.safetensors");
    for case in ["step_lr", "cosine_warmup", "warmup_only"] {
        let (job, state, want) = load(case);
        let straight = make(&job, &state).run(job.epochs).unwrap();
        let mut first = make(&job, &state);
        let mut got = first.run(7).unwrap();
        checkpoint::save(&path, &job, &first.state().unwrap(), 7).unwrap();
        let (saved, _) = checkpoint::load(&path, &job).unwrap();
        let mut second = make(&job, &state);
        second.restore(&saved).unwrap();
        got.extend(second.run(job.epochs - 7).unwrap());
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&straight), "{label} {case}: resumed");
        let want_losses = json_f32(&want["losses"]);
        assert_close(
            &format!("{label} {case}: resumed"),
            &got,
            &want_losses,
            1e-4,
            0.0,
        );
    }
}

#[test]
fn cpu_resumed_schedules_stay_on_pytorchs_trajectory() {
    check_resumed("CPU", &mut |job, state| {
        Box::new(CpuBackend::new(job, state))
    });
}

#[test]
fn gpu_resumed_schedules_stay_on_pytorchs_trajectory() {
    let Some(ctx) = gpu_or_skip() else { return };
    check_resumed("GPU", &mut |job, state| {
        Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap())
    });
}

#[test]
fn cpu_reproduces_pytorch_trajectories() {
    check("CPU", &mut |job, state| {
        Box::new(CpuBackend::new(job, state))
    });
}

#[test]
fn gpu_reproduces_pytorch_trajectories() {
    let Some(ctx) = gpu_or_skip() else { return };
    check("GPU", &mut |job, state| {
        Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap())
    });
}
