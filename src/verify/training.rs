//! A few epochs of a small net for each optimizer, loss and activation, against the CPU's
//! trajectory.

use super::*;

/// A few epochs of a small net with biases for each optimizer and loss, each activation, and a
/// learning-rate schedule with weight decay: every epoch's loss within the trajectory tolerance
/// of the CPU's (the model of tests/library/parity.rs).
pub(super) async fn training_checks(
    suite: &mut Suite<'_>,
    ctx: &Arc<GpuContext>,
    layout: Layout,
    quick: bool,
) {
    let optimizers = [
        ("sgd", OptimizerKind::Sgd, false, 1e-2),
        ("momentum", OptimizerKind::Momentum, false, 1e-2),
        ("nesterov", OptimizerKind::Momentum, true, 1e-2),
        ("adam", OptimizerKind::Adam, false, 1e-2),
        ("adamw", OptimizerKind::AdamW, false, 1e-2),
    ];
    let losses = [
        ("sse", Loss::Sse),
        ("mse", Loss::Mse),
        ("half-sse", Loss::HalfSse),
        ("l1", Loss::L1),
        ("cross-entropy", Loss::CrossEntropy),
    ];
    let base = Job {
        layers: vec![23, 13, 5],
        batch: 9,
        epochs: 6,
        bias: true,
        init_scheme: InitScheme::Torch,
        log_every: 0,
        ..Job::default()
    };
    let mut jobs = Vec::new();
    for (oname, kind, nesterov, lr) in optimizers {
        for (lname, loss) in losses {
            if quick && oname != "sgd" && lname != "sse" {
                continue;
            }
            let weight_decay = match kind {
                OptimizerKind::AdamW => crate::job::DEFAULT_ADAMW_DECAY,
                _ => 0.0,
            };
            let optimizer = Optimizer {
                kind,
                nesterov,
                weight_decay,
                ..Optimizer::default()
            };
            let job = Job {
                lr,
                loss,
                optimizer,
                ..base.clone()
            };
            jobs.push((format!("train/{oname}/{lname}"), job));
        }
    }
    let adam = Optimizer {
        kind: OptimizerKind::Adam,
        ..Optimizer::default()
    };
    for act in Activation::ALL {
        if matches!(act, Activation::Relu | Activation::None) || (quick && act != Activation::Gelu)
        {
            continue;
        }
        let job = Job {
            lr: 1e-2,
            loss: Loss::Mse,
            activation: act,
            optimizer: adam,
            ..base.clone()
        };
        jobs.push((format!("train/adam/mse/{act}"), job));
    }
    let schedule = crate::schedule::LrSchedule::parse(Some("step:2:0.5"), Some("2:0.25"));
    if let Ok(lr_schedule) = schedule {
        let optimizer = Optimizer {
            kind: OptimizerKind::Momentum,
            weight_decay: 0.05,
            ..Optimizer::default()
        };
        let job = Job {
            lr: 1e-2,
            loss: Loss::Mse,
            optimizer,
            lr_schedule,
            ..base.clone()
        };
        jobs.push(("train/momentum/mse/schedule+decay".to_string(), job));
    }
    // Mini-batches: the rows gathered from the resident dataset in a seeded order each epoch,
    // the last batch short (the gather kernel).
    let job = Job {
        rows: Some(3 * base.batch + 2),
        shuffle: true,
        ..base.clone()
    };
    jobs.push(("train/sgd/sse/mini-batches".to_string(), job));
    for (kernel, job) in jobs {
        if suite.stopped() {
            return;
        }
        let shape = "9x[23,13,5]".to_string();
        let outcome = async {
            job.validate()?;
            let state = HostState::seeded(&job);
            let want = CpuBackend::new(&job, &state).run_async(job.epochs).await?;
            let mut gpu = GpuBackend::create(ctx.clone(), &job, &state, layout).await?;
            let got = gpu.run_async(job.epochs).await?;
            let want64: Vec<f64> = want.iter().map(|&l| l as f64).collect();
            let bound: Vec<f64> = want.iter().map(|&l| bench::trajectory_tol(l)).collect();
            Ok((worst_ratio(&got, &want64, &bound), None))
        }
        .await;
        suite.record(kernel, "-", layout, shape, "3e-3·√L + 1e-5·L", outcome);
    }
}
