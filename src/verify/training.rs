//! A few epochs of a small net for each optimizer, loss and activation: every epoch from the
//! GPU's own state, its parameters and optimizer state against the CPU's from the same state
//! within the radii of [`crate::check::train_step`], and its loss within the trajectory
//! tolerance.

use super::*;

/// A few epochs of a small net with biases for each optimizer and loss, each optimizer with
/// weight decay, each activation, a learning-rate schedule with weight decay, mini-batches and a
/// dynamic-depth net.
/// Each epoch starts the CPU from the GPU's state; the GPU's weights, biases and optimizer state
/// after it must be within twice the radius [`crate::check::train_step::epoch`] derives for each
/// element of the CPU's (each run within one radius of the f64 reference), and its loss within
/// the trajectory tolerance of the CPU's. Restarting each epoch from the GPU's state keeps the
/// radii those of one epoch: the median is 1e-5 to 3e-4 of how far the epoch moves an element, so
/// a step that drops a term worth more than that (AdamW's decay, momentum's weight decay, a bias
/// gradient) fails on the parameters it moves.
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
        // L2 weight decay joins the gradient of every optimizer but AdamW (whose decoupled
        // decay every AdamW job has).
        if !quick && kind != OptimizerKind::AdamW {
            let optimizer = Optimizer {
                kind,
                nesterov,
                weight_decay: 0.05,
                ..Optimizer::default()
            };
            let job = Job {
                lr,
                optimizer,
                ..base.clone()
            };
            jobs.push((format!("train/{oname}+decay/sse"), job));
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
    // A dynamic-depth net: the shared layer run 0 to 3 times a step, its gradient summed over
    // its uses (the sum epilogues), its own step counters for Adam.
    if let Some(job) = dynamic_job(&base, Some(adam)) {
        jobs.push(("train/adam/sse/dynamic".to_string(), job));
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
        record_train(suite, ctx, layout, kernel, &job).await;
    }
    // Past one storage binding (held to 32 KiB here): the batch's matrices bound in bands of
    // rows, each product and the cross-entropy once per band, the gradients summed over the
    // bands, with GELU's kept input and a schedule; and w1's Adam moments (72x72, two copies)
    // split into bands of rows, its step one dispatch per band (the kernels' band offsets).
    if layout == Layout::Buffer && !suite.stopped() {
        let job = Job {
            layers: vec![72, 72, 7],
            batch: 300,
            epochs: 3,
            lr: 1e-2,
            loss: Loss::CrossEntropy,
            activation: Activation::Gelu,
            optimizer: adam,
            lr_schedule: crate::schedule::LrSchedule::parse(Some("step:2:0.5"), None)
                .unwrap_or_default(),
            ..base.clone()
        };
        let banded = ctx.with_binding_limit(32 << 10);
        let kernel = "train/adam/cross-entropy/banded".to_string();
        record_train(suite, &banded, layout, kernel, &job).await;
    }
}

/// Run [`train_check`] for `job` and record it as `kernel`.
async fn record_train(
    suite: &mut Suite<'_>,
    ctx: &Arc<GpuContext>,
    layout: Layout,
    kernel: String,
    job: &Job,
) {
    let shape = format!("{}x{:?}", job.batch, job.layers).replace(' ', "");
    let outcome = train_check(ctx, layout, job).await;
    suite.record(
        kernel,
        "-",
        layout,
        shape,
        "params 2·radius (check::train_step); loss 3e-3·√L + 1e-5·L",
        outcome,
    );
}

/// One training check: `job.epochs` epochs, each from the GPU's state on both paths
/// ([`crate::check::train_step::follow`]); on failure, where it was.
async fn train_check(
    ctx: &Arc<GpuContext>,
    layout: Layout,
    job: &Job,
) -> Result<(f64, Option<String>)> {
    job.validate()?;
    let state = HostState::seeded(job);
    let mut cpu = CpuBackend::new(job, &state);
    let mut gpu = GpuBackend::create(ctx.clone(), job, &state, layout).await?;
    let data = (&state.x, &state.y);
    let (worst, at) =
        crate::check::train_step::follow(job, data, &mut gpu, &mut cpu, job.epochs).await?;
    Ok((worst, (worst > 1.0).then_some(at)))
}

/// Sweeps: three variants (seeds 0, 0, 1, learning rates 1e-2 to 3e-2: the first two on one
/// resident dataset) of a job with biases, Adam,
/// a schedule and mini-batches, and three seeds of a dynamic-depth net (each drawing its own
/// depths), each trained as one sweep, the second model sitting out the second half;
/// every model's losses, parameters and optimizer state must be bit for bit those of its lone run
/// ([`crate::check::sweep::check_sweep`]), which the training checks hold to the CPU.
pub(super) async fn sweep_checks(suite: &mut Suite<'_>, ctx: &Arc<GpuContext>, layout: Layout) {
    let lr_schedule = crate::schedule::LrSchedule::parse(Some("step:3:0.5"), None);
    let base = Job {
        layers: vec![23, 13, 5],
        batch: 9,
        rows: Some(29),
        // 3 epochs and 2 (the second model sitting out): with one batch, an odd number of steps
        // in the first chunk, so the texels layout's weight pairs end it on their other texture.
        epochs: 5,
        bias: true,
        log_every: 0,
        optimizer: Optimizer {
            kind: OptimizerKind::Adam,
            ..Optimizer::default()
        },
        lr_schedule: lr_schedule.unwrap_or_default(),
        ..Job::default()
    };
    // Models 0 and 1 share a seed, so their resident dataset is one (bound by both); model 2
    // has its own.
    let jobs: Vec<Job> = [(0, 1e-2), (0, 2e-2), (1, 3e-2)]
        .into_iter()
        .map(|(seed, lr)| Job {
            seed,
            lr,
            ..base.clone()
        })
        .collect();
    let mut sweeps = vec![("sweep/adam/sse/mini-batches", jobs)];
    // Every value a sweep may vary, different in each model (its rate, hyperparameters, decay,
    // schedule and warm-up are its own words of the step counters, in the dispatches the models
    // share): a kernel reading one model's for another's fails.
    let schedules = [
        (None, None),
        (Some("step:2:0.5"), Some("2:0.25")),
        (Some("cosine:5:1e-4"), Some("1")),
    ];
    let varied = |i: usize, base: &Job, kind: OptimizerKind| {
        let (main, warmup) = schedules[i % 3];
        Job {
            seed: base.seed + i as u64,
            lr: [1e-2, 2e-2, 5e-3][i % 3],
            init_scheme: [InitScheme::Normal, InitScheme::Xavier, InitScheme::Torch][i % 3],
            lr_schedule: crate::schedule::LrSchedule::parse(main, warmup).unwrap_or_default(),
            optimizer: Optimizer {
                kind,
                momentum: [0.9, 0.5, 0.8][i % 3],
                nesterov: kind == OptimizerKind::Momentum,
                beta1: [0.9, 0.8, 0.95][i % 3],
                beta2: [0.999, 0.99, 0.9][i % 3],
                eps: [1e-8, 1e-3, 1e-1][i % 3],
                weight_decay: [0.0, 1e-2, 0.3][i % 3],
            },
            ..base.clone()
        }
    };
    // One batch (x and y of each seed in each model's slot), cross-entropy after GELU.
    let classify = Job {
        batch: 29,
        loss: Loss::CrossEntropy,
        activation: Activation::Gelu,
        ..base.clone()
    };
    let jobs = (0..3)
        .map(|i| varied(i, &classify, OptimizerKind::AdamW))
        .collect();
    sweeps.push(("sweep/adamw/cross-entropy/varied", jobs));
    // Mini-batches from one resident dataset (one seed: each model differs in all but its data).
    let l1 = Job {
        loss: Loss::L1,
        activation: Activation::Sigmoid,
        ..base.clone()
    };
    let jobs = (0..3)
        .map(|i| Job {
            seed: 7,
            ..varied(i, &l1, OptimizerKind::Momentum)
        })
        .collect();
    sweeps.push(("sweep/nesterov/l1/varied", jobs));
    // Seven models in stacks of three (three sets of dispatches: 3, 3 and 1 models; the models
    // of one stack on two datasets).
    let jobs = (0..7)
        .map(|i| Job {
            seed: (i % 2) as u64,
            lr: 1e-2 + 2e-3 * i as f32,
            ..base.clone()
        })
        .collect();
    sweeps.push(("sweep/adam/sse/stacks-of-3", jobs));
    // One batch of one seed: one x and one y bound for all the models (each its own rate).
    let jobs = (0..3)
        .map(|i| Job {
            batch: 29,
            lr: 1e-2 * (i + 1) as f32,
            ..base.clone()
        })
        .collect();
    sweeps.push(("sweep/adam/sse/one-batch", jobs));
    // Dynamic depth: each seed draws its own depths, so the models' steps differ in length.
    if let Some(job) = dynamic_job(&base, None) {
        let jobs = (0..3)
            .map(|seed| Job {
                seed,
                ..job.clone()
            })
            .collect();
        sweeps.push(("sweep/momentum/sse/dynamic", jobs));
    }
    for (kernel, jobs) in sweeps {
        if suite.stopped() {
            return;
        }
        let j = &jobs[0];
        let shape = format!("{}x{}x{:?}", jobs.len(), j.batch, j.layers).replace(' ', "");
        let per_stack = kernel.ends_with("stacks-of-3").then_some(3);
        let outcome = crate::check::sweep::check_sweep(ctx, (layout, per_stack), &jobs)
            .await
            .map(|diff| match diff {
                None => (0.0, None),
                Some(at) => (f64::INFINITY, Some(at)),
            });
        let bound = "bit for bit each model's lone run";
        suite.record(kernel.into(), "-", layout, shape, bound, outcome);
    }
}

/// The `dynamic` preset's net shrunk to `base`'s batch and epochs (23 -> 13 -> [13 -> 13 shared]
/// -> 5), lr 1e-2, with `optimizer` or the preset's own.
fn dynamic_job(base: &Job, optimizer: Option<Optimizer>) -> Option<Job> {
    let dynamic = crate::job::preset("dynamic").ok()?;
    Some(Job {
        layers: vec![23, 13, 13, 5],
        batch: base.batch,
        epochs: base.epochs,
        lr: 1e-2,
        log_every: 0,
        optimizer: optimizer.unwrap_or(dynamic.optimizer),
        ..dynamic
    })
}
