//! Named starting points for a job (`--preset`).

use super::*;

/// A named starting point for a job; any flag given with it overrides its setting.
pub struct Preset {
    pub name: &'static str,
    pub about: &'static str,
    pub job: fn() -> Job,
}

/// Every preset, as `gpu-train presets` lists them.
pub const PRESETS: &[Preset] = &[
    Preset {
        name: "tutorial",
        about: "the default job: batch 64, 1000 -> 100 -> 10, ReLU, no bias, standard normal \
                init, sum of squared errors, SGD lr 1e-6, 500 epochs",
        job: Job::default,
    },
    Preset {
        name: "bias-sgd",
        about: "the tutorial net as nn.Linear layers: biases, PyTorch's init, sum of squared \
                errors, SGD lr 1e-4",
        job: || Job {
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            ..Job::default()
        },
    },
    Preset {
        name: "adam",
        about: "the tutorial net as nn.Linear layers (biases, PyTorch's init), sum of squared \
                errors, Adam lr 1e-4",
        job: || Job {
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                ..Optimizer::default()
            },
            ..Job::default()
        },
    },
    Preset {
        name: "dynamic",
        about: "PyTorch's control-flow example: 1000 -> 100 -> [100 -> 100 shared, run 0-3 times \
                per epoch] -> 10 with biases and PyTorch's init, sum of squared errors, SGD \
                momentum 0.9, lr 1e-4",
        job: || Job {
            layers: vec![1000, 100, 100, 10],
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-4,
            optimizer: Optimizer {
                kind: OptimizerKind::Momentum,
                momentum: 0.9,
                ..Optimizer::default()
            },
            dynamic: Some(DynamicDepth {
                max: 3,
                schedule: Vec::new(),
            }),
            ..Job::default()
        },
    },
    Preset {
        name: "linear-delta",
        about: "the hand-worked linear net 2 -> 3 -> 2 -> 1, every weight 0.5, x = [1, 1], \
                y = [1], half the sum of squared errors (the delta rule), SGD lr 0.1, 50 epochs",
        job: || Job {
            layers: vec![2, 3, 2, 1],
            batch: 1,
            lr: 0.1,
            epochs: 50,
            log_every: 5,
            activation: Activation::None,
            loss: Loss::HalfSse,
            init_scheme: InitScheme::Constant(0.5),
            data: DataSource::Fixed {
                x: vec![1.0, 1.0],
                y: vec![1.0],
            },
            ..Job::default()
        },
    },
    Preset {
        name: "l1",
        about: "the tutorial net with the mean absolute error (PyTorch's L1Loss), SGD lr 0.1",
        job: || Job {
            loss: Loss::L1,
            lr: 0.1,
            ..Job::default()
        },
    },
    Preset {
        name: "digits",
        about:
            "a classifier for 8x8 images of digits (64 -> 32 -> 10, the shape of scikit-learn's \
                digits; give the data with --x/--y): biases, PyTorch's init, ReLU, softmax \
                cross-entropy, Adam lr 1e-2, mini-batches of 128, 30 epochs",
        job: || Job {
            layers: vec![64, 32, 10],
            batch: 128,
            lr: 1e-2,
            epochs: 30,
            log_every: 5,
            bias: true,
            init_scheme: InitScheme::Torch,
            loss: Loss::CrossEntropy,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                ..Optimizer::default()
            },
            ..Job::default()
        },
    },
];

/// The job a preset starts from.
pub fn preset(name: &str) -> Result<Job> {
    let t = name.trim().to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|p| p.name == t)
        .map(|p| (p.job)())
        .ok_or_else(|| {
            let names: Vec<&str> = PRESETS.iter().map(|p| p.name).collect();
            Error::arg(
                "--preset",
                format!("unknown preset `{name}`; valid: {}", names.join(", ")),
            )
        })
}
