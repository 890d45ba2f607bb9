//! `gpu-train bench`: the same verified suite on every device (each GPU adapter and the CPU path),
//! with warm-up, repeated samples, median and spread, and the parity of every GPU result against
//! the CPU path (a failed check marks the row failed); and `gpu-train tune`, the per-adapter
//! matmul tuning ([`tuning`], over `gpu::tune`).
//!
//! The suite:
//! - `train/default`: the default job, 500 epochs a sample, one submission and one readback a
//!   sample on the GPU (log interval = the sample);
//! - `train/h{H}-b{B}`: a sweep of the training step, hidden width 100 → 4096 at batch 64 and
//!   batch 64 → 4096 at hidden 100 (`1000 -> H -> 10`), each sample as many epochs as take about
//!   half a second;
//! - `matmul/{M}x{N}x{K}{/ᵀ}/tuned`: the matmul kernel alone at square and skinny shapes, with the
//!   variant tuning chose (tuned on the spot, and cached, where the cache has none), and
//!   `matmul/1024x1024x1024/naive` (512³ with `--quick`): a one-output-per-invocation kernel, the
//!   reference row. On the CPU the products are the CPU path's.

pub mod peak;
pub mod results;
pub mod tuning;

pub use tuning::{products, Product};

use crate::backend::Backend;
use crate::cpu::CpuBackend;
use crate::devices::{cpu_info, Device, Host};
pub use crate::devices::{host, opened_info};
#[cfg(not(target_arch = "wasm32"))]
use crate::devices::{open_devices, DeviceInfo};
use crate::error::{Error, Result};
use crate::gpu::layout::Layout;
use crate::gpu::tune::Parity;
use crate::gpu::{tune, Block};
use crate::gpu::{GpuBackend, GpuContext, LimitsChoice};
use crate::init::HostState;
use crate::job::Job;
use crate::text::{one_line, truncate};
#[cfg(not(target_arch = "wasm32"))]
use crate::wait::block_on;
use results::{HostOverhead, Results, Row, Status};
use std::collections::HashMap;
use std::sync::Arc;
use web_time::Instant;

/// What one bench run covers.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// `--device` values; empty: every adapter and the CPU.
    pub devices: Vec<String>,
    /// `--layout`: the memory layout on every adapter (None: each adapter's own choice).
    pub layout: Option<Layout>,
    /// `--limits`: the device limits requested.
    pub limits: LimitsChoice,
}

/// One case of the suite.
#[derive(Debug, Clone)]
enum Case {
    Train {
        name: String,
        job: Box<Job>,
        /// Epochs per sample; 0: calibrated to about `target_s`.
        epochs: usize,
    },
    Matmul {
        name: String,
        trans: (bool, bool),
        dims: (usize, usize, usize),
        naive: bool,
    },
}

impl Case {
    fn name(&self) -> &str {
        match self {
            Case::Train { name, .. } | Case::Matmul { name, .. } => name,
        }
    }
}

/// The `1000 -> hidden -> 10` net at `batch`, with an lr scaled so every size trains stably.
fn sweep_job(hidden: usize, batch: usize) -> Job {
    let base = Job::default();
    Job {
        layers: vec![1000, hidden, 10],
        batch,
        lr: base.lr * (64.0 * 100.0) / (batch * hidden) as f32,
        log_every: 0,
        ..base
    }
}

fn matmul_case(trans: (bool, bool), (m, n, k): (usize, usize, usize), naive: bool) -> Case {
    let t = match trans {
        (false, false) => "",
        (true, false) => "/Aᵀ",
        (false, true) => "/Bᵀ",
        (true, true) => "/AᵀBᵀ",
    };
    let kernel = if naive { "naive" } else { "tuned" };
    Case::Matmul {
        name: format!("matmul/{m}x{n}x{k}{t}/{kernel}"),
        trans,
        dims: (m, n, k),
        naive,
    }
}

fn suite(quick: bool) -> Vec<Case> {
    let mut cases = vec![Case::Train {
        name: "train/default".into(),
        job: Box::new(Job {
            log_every: 0,
            ..Job::default()
        }),
        epochs: 500,
    }];
    let (hidden, batch): (&[usize], &[usize]) = if quick {
        (&[1024], &[1024])
    } else {
        (&[256, 1024, 4096], &[256, 1024, 4096])
    };
    for &h in hidden {
        cases.push(Case::Train {
            name: format!("train/h{h}-b64"),
            job: Box::new(sweep_job(h, 64)),
            epochs: 0,
        });
    }
    for &b in batch {
        cases.push(Case::Train {
            name: format!("train/h100-b{b}"),
            job: Box::new(sweep_job(100, b)),
            epochs: 0,
        });
    }
    let nn = (false, false);
    // The naive kernel is ~100x slower than the tuned one on a software adapter (16 s for one
    // 1024³ product on lavapipe), so --quick compares the two at 512³.
    let (square, reference): (&[usize], usize) = if quick {
        (&[256, 512], 512)
    } else {
        (&[256, 1024, 2048], 1024)
    };
    for &s in square {
        cases.push(matmul_case(nn, (s, s, s), false));
    }
    cases.push(matmul_case(nn, (reference, reference, reference), true));
    // Skinny: the default job's forward and weight-gradient products, and those of hidden 4096.
    let mut skinny = vec![(nn, (64, 100, 1000)), ((true, false), (1000, 100, 64))];
    if !quick {
        skinny.extend([
            (nn, (64, 4096, 1000)),
            ((true, false), (1000, 4096, 64)),
            ((false, true), (64, 1000, 4096)),
        ]);
    }
    for (t, dims) in skinny {
        cases.push(matmul_case(t, dims, false));
    }
    cases
}

/// Samples and warm-up runs per case, and the time a calibrated sample aims at.
struct Budget {
    samples: usize,
    warmup: usize,
    target_s: f64,
}

impl Budget {
    fn of(quick: bool) -> Self {
        if quick {
            Budget {
                samples: 3,
                warmup: 1,
                target_s: 0.15,
            }
        } else {
            Budget {
                samples: 7,
                warmup: 2,
                target_s: 0.5,
            }
        }
    }
}

impl Budget {
    /// Extra warm-up runs and samples of a case whose sample takes about `sample_s`: one far
    /// longer than the target (the naive kernel at 1024³ takes 16 s on lavapipe) gets no warm-up
    /// beyond the run that measured it and at most 3 samples.
    fn runs(&self, sample_s: f64) -> (usize, usize) {
        if sample_s > 4.0 * self.target_s {
            (0, self.samples.min(3))
        } else {
            (self.warmup.saturating_sub(1), self.samples)
        }
    }
}

/// `|ΔL|` allowed between two f32 trajectories of one job at loss `l` (the model of
/// tests/library/parity.rs: the predictions may drift apart by 3e-3·sqrt(L), plus rounding of L itself).
pub fn trajectory_tol(l: f32) -> f64 {
    let l = l as f64;
    3e-3 * l.sqrt() + 1e-5 * l
}

/// The parity of a loss trajectory against the CPU's: `error` is the largest
/// `|ΔL| / trajectory_tol(L)`, which must stay at most 1.
fn trajectory_parity(got: &[f32], want: &[f32]) -> Parity {
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
fn error_row(device: usize, case: &Case, msg: String) -> Row {
    Row {
        device,
        case: case.name().into(),
        kind: match case {
            Case::Train { .. } => "train",
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
struct References {
    losses: HashMap<(String, usize), Vec<f32>>,
}

impl References {
    async fn losses(&mut self, name: &str, job: &Job, epochs: usize) -> Vec<f32> {
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
async fn train_row(
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
    let n = n_samples as f64;
    let gpu = matches!(dev, Device::Gpu(..));
    let host_overhead = gpu.then(|| HostOverhead {
        submits_per_sample: (backend.stats().submits - stats0.submits) as f64 / n,
        readbacks_per_sample: (backend.stats().submits - stats0.submits) as f64 / n,
        encode_s_per_epoch: (backend.stats().encode_s - stats0.encode_s) / n / epochs as f64,
    });
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
    let config = serde_json::to_value(Job {
        epochs,
        ..job.clone()
    })
    .unwrap_or_default();
    Ok(Row {
        device,
        case: name.into(),
        kind: "train".into(),
        config,
        status: match &parity {
            Some(p) if !p.passed => Status::Failed,
            _ => Status::Ok,
        },
        error: None,
        warmup: 1 + extra,
        samples_s: samples,
        per_sample: epochs,
        flops_per_sample: job.flops_of_epochs(epochs),
        bytes_per_sample: None,
        parity,
        host_overhead,
        kernels,
        steps_timed,
    })
}

/// Time a product: `per_product(reps)` runs it `reps` times back to back and returns seconds
/// per product. One run measures it (and warms up); then as many products per sample as take
/// about `budget.target_s`, the extra warm-up, and the samples (seconds each). Returns the
/// samples, the products per sample and the warm-up runs.
async fn sample_product(
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

async fn matmul_row(
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
            let key = tune::store_key(Layout::Buffer, trans.0, trans.1, Block::B8x8);
            let (a, b) = tune::random_inputs(key, *dims, 1);
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
            let key = tune::store_key(Layout::Buffer, false, false, Block::B8x8);
            let (a, b) = tune::random_inputs(key, *dims, 1);
            let (want, scale) = tune::cpu_reference(key, &a, &b, *dims);
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
            let key = tune::store_key(layout, trans.0, trans.1, block);
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

/// One line of the live table.
pub fn row_line(r: &Results, row: &Row) -> String {
    let dev = &r.devices[row.device];
    let head = format!("{:<28} {:<34}", truncate(&dev.label(), 28), row.case);
    if row.status == Status::Error {
        let msg = row.error.as_deref().unwrap_or("unknown");
        return format!("{head} ERROR: {}", one_line(msg));
    }
    let (v, unit) = row.headline().unwrap_or((f64::NAN, ""));
    let gbps = row
        .gbps()
        .map_or_else(String::new, |g| format!("  {g:7.2} GB/s"));
    let gflops = if row.kind == "train" {
        format!("  {:7.2} GFLOP/s", row.gflops())
    } else {
        String::new()
    };
    // The CPU rows' share of the machine's FMA peak.
    let peak = match (&r.host.fma_peak, dev.kind.as_str()) {
        (Some(p), "cpu") if row.flops_per_sample > 0.0 && p.gflops > 0.0 => {
            format!("  {:5.1}% of peak", 100.0 * row.gflops() / p.gflops)
        }
        _ => String::new(),
    };
    let parity = row.parity.map_or_else(
        || "   (reference)".to_string(),
        |p| {
            format!(
                "  parity {:.2e}/{:.1e}{}",
                p.error,
                p.tolerance,
                if p.passed { "" } else { " FAILED" }
            )
        },
    );
    format!(
        "{head} {v:10.2} {unit:<8} ±{:4.1}%{gflops}{gbps}{peak}  median {:.4} s{parity}",
        50.0 * row.spread(),
        row.median_s()
    )
}

/// Testing hook: the case (a substring of its name) before which the bench destroys the GPU
/// device, to check that a device failing mid-bench is reported and the bench goes on.
#[cfg(not(target_arch = "wasm32"))]
const LOSE_DEVICE_ENV: &str = "GPU_TRAIN_BENCH_LOSE_DEVICE";

#[cfg(not(target_arch = "wasm32"))]
/// Run the bench. Rows are printed as they complete (unless `quiet`).
pub fn run(plan: &Plan, quiet: bool) -> Result<Results> {
    let budget = Budget::of(plan.quick);
    let opened = open_devices(&plan.devices, plan.layout, plan.limits)?;
    let mut results = Results {
        format: results::FORMAT.into(),
        schema_version: results::SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("GPU_TRAIN_GIT_COMMIT").map(String::from),
        created_unix_s: crate::io::unix_now(),
        command: std::env::args().collect(),
        quick: plan.quick,
        host: host(),
        devices: opened.iter().map(|(i, _)| i.clone()).collect(),
        rows: Vec::new(),
    };
    if opened.iter().any(|(_, d)| matches!(d, Some(Device::Cpu))) {
        let p = peak::measure(crate::cpu::threads());
        if !quiet {
            println!(
                "CPU FMA peak: {:.1} GFLOP/s ({} threads, {}; `cargo bench --bench fma_peak`)",
                p.gflops, p.threads, p.isa
            );
        }
        results.host.fma_peak = Some(results::FmaPeak {
            isa: p.isa.into(),
            threads: p.threads,
            gflops: p.gflops,
        });
    }
    let mut refs = References::default();
    let lose = std::env::var(LOSE_DEVICE_ENV)
        .ok()
        .filter(|s| !s.is_empty());
    // wgpu panics on some calls to a lost device; each case catches that and reports it in its
    // row, so the default hook's message and backtrace would only be noise (RUST_LOG=debug shows
    // them).
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| log::debug!("{info}")));
    let out = run_devices(&opened, &budget, plan, quiet, &mut results, &mut refs, lose);
    std::panic::set_hook(default_hook);
    out.map(|()| results)
}

#[cfg(not(target_arch = "wasm32"))]
/// The suite on each opened device, rows appended to `results`.
fn run_devices(
    opened: &[(DeviceInfo, Option<Device>)],
    budget: &Budget,
    plan: &Plan,
    quiet: bool,
    results: &mut Results,
    refs: &mut References,
    lose: Option<String>,
) -> Result<()> {
    for (d, (info, dev)) in opened.iter().enumerate() {
        let Some(dev) = dev else {
            if !quiet {
                println!(
                    "{}: cannot be used: {}",
                    info.label(),
                    info.error.as_deref().unwrap_or("")
                );
            }
            continue;
        };
        let mut failed: Option<String> = None;
        let mut tuned_now = Vec::new();
        for case in suite(plan.quick) {
            if let (Case::Matmul { naive: true, .. }, Device::Cpu) = (&case, dev) {
                continue;
            }
            let row = if let Some(why) = &failed {
                error_row(
                    d,
                    &case,
                    format!("not run: the device failed earlier ({why})"),
                )
            } else {
                if let (Some(l), Device::Gpu(ctx, _)) = (&lose, dev) {
                    if case.name().contains(l.as_str()) {
                        ctx.device.destroy();
                    }
                }
                let outcome =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &case {
                        Case::Train { name, job, epochs } => {
                            block_on(train_row(d, dev, name, job, *epochs, budget, refs))
                        }
                        Case::Matmul { .. } => {
                            block_on(matmul_row(d, dev, &case, budget, &mut tuned_now))
                        }
                    }));
                let outcome = match outcome {
                    Ok(r) => r,
                    Err(panic) => Err(Error::Gpu(format!(
                        "panicked: {}",
                        panic
                            .downcast_ref::<String>()
                            .map(String::as_str)
                            .or_else(|| panic.downcast_ref::<&str>().copied())
                            .unwrap_or("unknown")
                    ))),
                };
                match outcome {
                    Ok(row) => row,
                    Err(e) => {
                        let msg = e.to_string();
                        // A device that reported an error outside any case's error scope (lost,
                        // out of memory, an invalid pipeline) is not trusted with the rest of
                        // the suite: every later wait would report that error again.
                        if let Device::Gpu(ctx, _) = dev {
                            // A poll delivers a pending device-lost notice.
                            let _ = ctx.device.poll(wgpu::PollType::Poll);
                            if let Err(dev_err) = ctx.check() {
                                failed = Some(one_line(&dev_err.to_string()));
                            } else if msg.to_lowercase().contains("lost") {
                                failed = Some(one_line(&msg));
                            }
                        }
                        error_row(d, &case, msg)
                    }
                }
            };
            if !quiet {
                println!("{}", row_line(results, &row));
            }
            results.rows.push(row);
        }
        if let (Device::Gpu(ctx, _), false) = (dev, tuned_now.is_empty()) {
            match tune::save(&ctx.info, &tuned_now, None) {
                Ok(p) if !quiet => println!(
                    "{}: tuned {} shapes, cached in {}",
                    info.label(),
                    tuned_now.len(),
                    p.display()
                ),
                Ok(_) => {}
                Err(e) => eprintln!("warning: cannot cache the tuning: {e}"),
            }
        }
    }
    Ok(())
}

/// The bench in the browser: the suite (with `quick`, `bench --quick`'s) on the page's adapter
/// `ctx` in `layout` and then on the CPU path (in wasm, one thread), each row reported to
/// `on_row` as it completes; the results in the schema `gpu-train bench compare` reads, with the
/// browser (`host`, `command`) recorded; and the tunings made on the spot for product shapes the
/// context's tuning lacked, as natively, for the caller to keep (the page, in the browser's
/// storage).
pub async fn run_suite(
    ctx: &Arc<GpuContext>,
    layout: Layout,
    host: Host,
    command: Vec<String>,
    quick: bool,
    on_row: &mut dyn FnMut(&Results, &Row),
) -> (Results, Vec<tune::Entry>) {
    let budget = Budget::of(quick);
    let mut cpu = cpu_info();
    cpu.name = host.cpu.clone();
    let devices = [
        (opened_info(ctx, layout), Device::Gpu(ctx.clone(), layout)),
        (cpu, Device::Cpu),
    ];
    let mut results = Results {
        format: results::FORMAT.into(),
        schema_version: results::SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("GPU_TRAIN_GIT_COMMIT").map(String::from),
        created_unix_s: crate::io::unix_now(),
        command,
        quick,
        host,
        devices: devices.iter().map(|(i, _)| i.clone()).collect(),
        rows: Vec::new(),
    };
    let mut refs = References::default();
    let mut tuned_now = Vec::new();
    for (d, (_, dev)) in devices.iter().enumerate() {
        for case in suite(quick) {
            let outcome = match (&case, dev) {
                (Case::Matmul { naive: true, .. }, Device::Cpu) => continue,
                (Case::Train { name, job, epochs }, _) => {
                    train_row(d, dev, name, job, *epochs, &budget, &mut refs).await
                }
                (Case::Matmul { .. }, _) => {
                    matmul_row(d, dev, &case, &budget, &mut tuned_now).await
                }
            };
            let row = outcome.unwrap_or_else(|e| error_row(d, &case, e.to_string()));
            on_row(&results, &row);
            results.rows.push(row);
        }
    }
    (results, tuned_now)
}

/// The speed target's figure: per device and square size measured with both kernels, the tuned
/// kernel's GFLOP/s over the naive one's.
pub fn tuned_over_naive(r: &Results) -> Vec<(usize, String, f64)> {
    let find = |d: usize, case: &str| {
        (r.rows.iter())
            .find(|row| row.device == d && row.case == case && row.status == Status::Ok)
            .map(|row| row.gflops())
    };
    let mut out = Vec::new();
    for naive in r.rows.iter().filter(|row| row.case.ends_with("/naive")) {
        let shape = naive
            .case
            .trim_start_matches("matmul/")
            .trim_end_matches("/naive");
        let (d, tuned) = (naive.device, naive.case.replace("/naive", "/tuned"));
        if let (Some(t), Some(n)) = (find(d, &tuned), find(d, &naive.case)) {
            out.push((d, shape.to_string(), t / n));
        }
    }
    out
}
