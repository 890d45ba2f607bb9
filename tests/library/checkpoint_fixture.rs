//! PyTorch reads the checkpoints written here (tests/fixtures/make_checkpoint_fixture.py, run by
//! hand, output committed): it loaded `checkpoint/model.safetensors` into a plain nn.Sequential
//! with a strict `load_state_dict` and computed the sum of squared errors on the dataset. Here:
//! the committed checkpoint loads for the same flags, the loss at its parameters is PyTorch's, and
//! training the same job again writes the same tensors under the same names.

use crate::common;

use common::{assert_close, assert_close_normwise, fixture_path};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::init::HostState;
use gpu_train::io::{checkpoint, npy};
use gpu_train::job::{InitScheme, Job, Optimizer, OptimizerKind};

/// The job of the fixture's flags (`ARGS` in the script).
fn fixture_job() -> Job {
    Job {
        seed: 5,
        layers: vec![6, 5, 4, 3],
        bias: true,
        init_scheme: InitScheme::Torch,
        rows: Some(20),
        batch: 8,
        epochs: 3,
        optimizer: Optimizer {
            kind: OptimizerKind::Momentum,
            ..Optimizer::default()
        },
        lr: 1e-2,
        log_every: 0,
        ..Job::default()
    }
}

#[test]
fn pytorch_loss_at_the_committed_checkpoint_and_the_same_tensors_again() {
    let text = std::fs::read_to_string(fixture_path("checkpoint/torch.json")).unwrap();
    let want: serde_json::Value = serde_json::from_str(&text).unwrap();
    let job = fixture_job();
    let (state, epoch) = checkpoint::load(&fixture_path("checkpoint/model.safetensors"), &job)
        .expect("the committed checkpoint loads for the fixture's flags");
    assert_eq!((epoch, state.step), (3, 9));
    assert_eq!(
        state.opt_state.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![1; 6]
    );
    // PyTorch's loss over the whole dataset at the checkpoint's parameters.
    let x = npy::read_matrix(&fixture_path("checkpoint/init/x.npy")).unwrap();
    let y = npy::read_matrix(&fixture_path("checkpoint/init/y.npy")).unwrap();
    let whole = Job {
        rows: None,
        batch: 20,
        ..job.clone()
    };
    let host = HostState {
        x,
        y,
        weights: state.params.weights.clone(),
        biases: state.params.biases.clone(),
    };
    let (loss, _) = CpuBackend::new(&whole, &host).gradients();
    let torch_loss = want["loss"].as_f64().unwrap() as f32;
    assert_close("loss at the checkpoint", &[loss], &[torch_loss], 1e-5, 0.0);
    // Training the job again gives the same tensors (to rounding: gemm's blocking depends on the
    // CPU), and the dataset it trained on is the committed one.
    let seeded = HostState::seeded(&job);
    assert_eq!(seeded.x, host.x);
    let mut cpu = CpuBackend::new(&job, &seeded);
    cpu.run(3).unwrap();
    let again = cpu.state().unwrap();
    assert_eq!(again.step, state.step);
    for ((name, a), (_, b)) in again.params.named().into_iter().zip(state.params.named()) {
        assert_close_normwise(&name, &a.data, &b.data, 1e-5);
    }
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("again.safetensors");
    checkpoint::save(&path, &job, &again, 3).unwrap();
    let names = |p: &std::path::Path| {
        let bytes = std::fs::read(p).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut n: Vec<String> = st.names().into_iter().map(String::from).collect();
        n.sort();
        n
    };
    let keys: Vec<String> = serde_json::from_value(want["keys"].clone()).unwrap();
    assert_eq!(names(&path), keys, "PyTorch's state_dict keys");
    let opt_keys: Vec<String> = serde_json::from_value(want["optimizer_keys"].clone()).unwrap();
    assert_eq!(names(&checkpoint::optimizer_path(&path)), opt_keys);
}
