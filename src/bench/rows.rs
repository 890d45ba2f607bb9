//! One row of the bench: a case measured on a device and checked against the CPU path's result
//! (a training trajectory within its tolerance, a product per element).

use super::*;
use crate::check::matmul;

/// The parity of a loss trajectory against the CPU's: `error` is the largest
/// `|ΔL| / trajectory_tol(L)`, which must stay at most 1.
pub(super) fn trajectory_parity(got: &[f32], want: &[f32]) -> Parity {
    let mut error: f64 = if got.len() == want.len() {
        0.0
    } else {
        f64::INFINITY
    };
    for (&g, &c) in got.iter().zip(want) {
        let r = (g as f64 - c as f64).abs() / trajectory_tol(c);
        error = if r.is_nan() {
            f64::INFINITY
        } else {
            error.max(r)
        };
    }
    Parity {
        error,
        tolerance: 1.0,
        passed: error <= 1.0,
    }
}

/// A row with nothing measured: the case could not run.
pub(super) fn error_row(device: usize, case: &Case, msg: String) -> Row {
    Row {
        device,
        case: case.name().into(),
        kind: match case {
            Case::Train { .. } | Case::Sweep { .. } => "train",
            Case::Matmul { .. } => "matmul",
        }
        .into(),
        config: serde_json::Value::Null,
        status: Status::Error,
        error: Some(msg),
        warmup: 0,
        samples_s: Vec::new(),
        per_sample: 0,
        flops_per_sample: 0.0,
        bytes_per_sample: None,
        parity: None,
        host_overhead: None,
        kernels: Vec::new(),
        steps_timed: 0,
    }
}

/// The CPU path's results that GPU rows are checked against, computed once per case.
#[derive(Default)]
pub(super) struct References {
    pub(super) losses: HashMap<(String, usize), Vec<f32>>,
}

impl References {
    pub(super) async fn losses(&mut self, name: &str, job: &Job, epochs: usize) -> Vec<f32> {
        let key = (name.to_string(), epochs);
        if !self.losses.contains_key(&key) {
            let state = HostState::seeded(job);
            let mut cpu = CpuBackend::new(job, &state);
            let losses = cpu.run_async(epochs).await.unwrap_or_default();
            self.losses.insert(key.clone(), losses);
        }
        self.losses[&key].clone()
    }
}

/// Run the training case on `backend`: warm-up, calibration, samples from the same start, the
/// parity of the first sample's losses, and (GPU) a profiled run.
pub(super) async fn train_row(
    device: usize,
    dev: &Device,
    name: &str,
    job: &Job,
    epochs: usize,
    budget: &Budget,
    refs: &mut References,
) -> Result<Row> {
    let state = HostState::seeded(job);
    let mut backend: Box<dyn Backend> = match dev {
        Device::Cpu => Box::new(CpuBackend::new(job, &state)),
        Device::Gpu(ctx, layout) => {
            Box::new(GpuBackend::create(ctx.clone(), job, &state, *layout).await?)
        }
    };
    let start = backend.state_async().await?;
    // Warm-up, which also calibrates the epochs of a sample.
    let t = Instant::now();
    let probe = if epochs > 0 { epochs.min(50) } else { 1 };
    backend.run_async(probe).await?;
    let per_epoch = t.elapsed().as_secs_f64() / probe as f64;
    let epochs = if epochs > 0 {
        epochs
    } else {
        ((budget.target_s / per_epoch.max(1e-9)) as usize).clamp(1, 500)
    };
    let (extra, n_samples) = budget.runs(per_epoch * epochs as f64);
    for _ in 0..extra {
        backend.restore_async(&start).await?;
        backend.run_async(epochs.min(50)).await?;
    }
    let mut samples = Vec::new();
    let mut first = Vec::new();
    let stats0 = backend.stats();
    for i in 0..n_samples {
        backend.restore_async(&start).await?;
        let t = Instant::now();
        let mut losses = Vec::with_capacity(epochs);
        let mut left = epochs;
        while left > 0 {
            let n = left.min(backend.max_chunk());
            losses.extend(backend.run_async(n).await?);
            left -= n;
        }
        samples.push(t.elapsed().as_secs_f64());
        if i == 0 {
            first = losses;
        }
    }
    let gpu = matches!(dev, Device::Gpu(..));
    let host_overhead = gpu.then(|| host_overhead(&stats0, &backend.stats(), n_samples, epochs));
    let parity = match gpu {
        true => Some(trajectory_parity(
            &first,
            &refs.losses(name, job, epochs).await,
        )),
        false => None,
    };
    // Per-kernel GPU times from one more (profiled) sample.
    let (mut kernels, mut steps_timed) = (Vec::new(), 0);
    if gpu && backend.enable_profiling().is_ok() {
        backend.restore_async(&start).await?;
        let chunk = epochs.min(backend.max_chunk());
        backend.run_async(chunk).await?;
        let stats = backend.stats();
        (steps_timed, kernels) = (stats.steps_timed, stats.kernels);
    }
    let mut row = measured_train_row(device, name, job, (epochs, 1), samples, parity);
    (row.warmup, row.host_overhead) = (1 + extra, host_overhead);
    (row.kernels, row.steps_timed) = (kernels, steps_timed);
    Ok(row)
}

/// What the host did per sample between two of a device's counts: submissions and readbacks
/// (one each per chunk), encoding time per epoch.
fn host_overhead(
    before: &crate::backend::Stats,
    after: &crate::backend::Stats,
    samples: usize,
    epochs: usize,
) -> HostOverhead {
    let n = samples.max(1) as f64;
    let per_sample = (after.submits - before.submits) as f64 / n;
    HostOverhead {
        submits_per_sample: per_sample,
        readbacks_per_sample: per_sample,
        encode_s_per_epoch: (after.encode_s - before.encode_s) / n / epochs.max(1) as f64,
    }
}

/// The row of a training case from its samples (`epochs` epochs of each of `models` models of
/// `job`: 1 but for a sweep) and its parity; the warm-up, host overhead and kernel times are the
/// caller's to fill.
fn measured_train_row(
    device: usize,
    name: &str,
    job: &Job,
    (epochs, models): (usize, usize),
    samples: Vec<f64>,
    parity: Option<Parity>,
) -> Row {
    let mut config = serde_json::to_value(Job {
        epochs,
        ..job.clone()
    })
    .unwrap_or_default();
    if models > 1 {
        config["variants"] = serde_json::json!(models);
    }
    Row {
        device,
        case: name.into(),
        kind: "train".into(),
        config,
        status: match &parity {
            Some(p) if !p.passed => Status::Failed,
            _ => Status::Ok,
        },
        error: None,
        warmup: 1,
        samples_s: samples,
        per_sample: epochs * models,
        flops_per_sample: job.flops_of_epochs(epochs) * models as f64,
        bytes_per_sample: None,
        parity,
        host_overhead: None,
        kernels: Vec::new(),
        steps_timed: 0,
    }
}

/// Run the sweep case: `variants` models of `job` (seeds 0, 1, ...) trained together (one
/// submission per chunk on the GPU, one after another on the CPU); a sample is `epochs` epochs of
/// all of them, counted as models·epochs; the parity of variant 0 (the job itself) against the
/// CPU's losses.
pub(super) async fn sweep_row(
    device: usize,
    dev: &Device,
    name: &str,
    job: &Job,
    (variants, epochs): (usize, usize),
    budget: &Budget,
    refs: &mut References,
) -> Result<Row> {
    use crate::sweep::Models;
    let jobs: Vec<Job> = (0..variants as u64)
        .map(|seed| Job {
            seed,
            ..job.clone()
        })
        .collect();
    let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
    let mut models: Box<dyn Models> = match dev {
        Device::Cpu => Box::new(crate::cpu::CpuModels::new(&jobs, &states)),
        Device::Gpu(ctx, layout) => {
            Box::new(crate::gpu::GpuModels::create(ctx.clone(), &jobs, &states, *layout).await?)
        }
    };
    let all = vec![true; variants];
    let mut starts = Vec::with_capacity(variants);
    for k in 0..variants {
        starts.push(models.model(k).state_async().await?);
    }
    let t = Instant::now();
    models.run_async(1, &all).await?;
    let per_epoch = t.elapsed().as_secs_f64();
    let epochs = match epochs {
        0 => ((budget.target_s / per_epoch.max(1e-9)) as usize).clamp(1, 500),
        n => n,
    };
    let (extra, n_samples) = budget.runs(per_epoch * epochs as f64);
    let mut samples = Vec::new();
    let mut first = Vec::new();
    let stats0 = models.stats();
    for i in 0..extra + n_samples {
        for (k, s) in starts.iter().enumerate() {
            models.model(k).restore_async(s).await?;
        }
        let t = Instant::now();
        let mut losses = vec![Vec::with_capacity(epochs); variants];
        let mut left = epochs;
        while left > 0 {
            let n = left.min(models.max_chunk());
            for (all, l) in losses.iter_mut().zip(models.run_async(n, &all).await?) {
                all.extend(l);
            }
            left -= n;
        }
        if i >= extra {
            samples.push(t.elapsed().as_secs_f64());
        }
        if i == extra {
            first = losses.swap_remove(0);
        }
    }
    let gpu = matches!(dev, Device::Gpu(..));
    let host_overhead = gpu.then(|| host_overhead(&stats0, &models.stats(), n_samples, epochs));
    let parity = match gpu {
        true => Some(trajectory_parity(
            &first,
            &refs.losses(name, job, epochs).await,
        )),
        false => None,
    };
    let mut row = measured_train_row(device, name, job, (epochs, variants), samples, parity);
    (row.warmup, row.host_overhead) = (1 + extra, host_overhead);
    Ok(row)
}

/// Time a product: `per_product(reps)` runs it `reps` times back to back and returns seconds
/// per product. One run measures it (and warms up); then as many products per sample as take
/// about `budget.target_s`, the extra warm-up, and the samples (seconds each). Returns the
/// samples, the products per sample and the warm-up runs.
pub(super) async fn sample_product(
    budget: &Budget,
    mut per_product: impl AsyncFnMut(usize) -> Result<f64>,
) -> Result<(Vec<f64>, usize, usize)> {
    let once = per_product(1).await?;
    let reps = tune::reps_for(once, budget.target_s);
    let (extra, n_samples) = budget.runs(once * reps as f64);
    for _ in 0..extra {
        per_product(reps).await?;
    }
    let mut samples = Vec::with_capacity(n_samples);
    for _ in 0..n_samples {
        samples.push(per_product(reps).await? * reps as f64);
    }
    Ok((samples, reps, 1 + extra))
}

pub(super) async fn matmul_row(
    device: usize,
    dev: &Device,
    case: &Case,
    budget: &Budget,
    tuned_now: &mut Vec<tune::Entry>,
) -> Result<Row> {
    let Case::Matmul {
        name,
        trans,
        dims,
        naive,
    } = case
    else {
        unreachable!("matmul_row of a training case")
    };
    let (m, n, k) = *dims;
    let (samples, per_sample, warmup, parity, kernel) = match dev {
        Device::Cpu => {
            let key = matmul::store_key(Layout::Buffer, trans.0, trans.1, Block::B8x8);
            let (a, b) = matmul::random_inputs(key, *dims, 1);
            let mut c = vec![0.0f32; m * n];
            let mut run = || {
                crate::cpu::matmul(
                    &mut c,
                    &a,
                    &b,
                    m,
                    n,
                    k,
                    trans.0,
                    trans.1,
                    crate::cpu::Epilogue::Store,
                )
            };
            let (samples, reps, warmup) = sample_product(budget, async |reps| {
                let t = Instant::now();
                for _ in 0..reps {
                    run();
                }
                Ok(t.elapsed().as_secs_f64() / reps as f64)
            })
            .await?;
            (samples, reps, warmup, None, "cpu gemm".to_string())
        }
        Device::Gpu(ctx, _) if *naive => {
            if *trans != (false, false) {
                return Err(Error::Gpu("the naive kernel has no transposes".into()));
            }
            let key = matmul::store_key(Layout::Buffer, false, false, Block::B8x8);
            let (a, b) = matmul::random_inputs(key, *dims, 1);
            let (want, scale) = matmul::cpu_reference(key, &a, &b, *dims);
            let got = crate::gpu::run_naive(ctx, &a, &b, *dims).await?;
            let parity = Parity::of(&got, &want, &scale, k);
            let (samples, reps, warmup) = sample_product(budget, async |reps| {
                crate::gpu::time_naive(ctx, *dims, reps).await
            })
            .await?;
            (samples, reps, warmup, Some(parity), "naive".to_string())
        }
        Device::Gpu(ctx, layout) => {
            let layout = *layout;
            let tuned = tune::Table::from_entries(tuned_now).get(layout, *trans, *dims);
            let block = match ctx.tuning.get(layout, *trans, *dims).or(tuned) {
                Some(b) => b,
                None => {
                    let target = budget.target_s / 5.0;
                    let e = tune::tune_shape(ctx, layout, *trans, *dims, target).await?;
                    let b = e.block;
                    tuned_now.push(e);
                    b
                }
            };
            let key = matmul::store_key(layout, trans.0, trans.1, block);
            let parity = tune::check_variant(ctx, key, *dims).await?;
            let (samples, reps, warmup) = sample_product(budget, async |reps| {
                crate::gpu::time_matmul(ctx, key, *dims, reps).await
            })
            .await?;
            (
                samples,
                reps,
                warmup,
                Some(parity),
                format!("{layout} {}", block.name()),
            )
        }
    };
    let config = serde_json::json!({
        "m": m, "n": n, "k": k,
        "trans_a": trans.0, "trans_b": trans.1,
        "kernel": kernel,
    });
    Ok(Row {
        device,
        case: name.clone(),
        kind: "matmul".into(),
        config,
        status: match &parity {
            Some(p) if !p.passed => Status::Failed,
            _ => Status::Ok,
        },
        error: None,
        warmup,
        samples_s: samples,
        per_sample,
        flops_per_sample: 2.0 * (m * n * k) as f64 * per_sample as f64,
        bytes_per_sample: Some(4.0 * (m * k + k * n + m * n) as f64 * per_sample as f64),
        parity,
        host_overhead: None,
        kernels: Vec::new(),
        steps_timed: 0,
    })
}
