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
mod rows;
mod suite;
pub mod tuning;

pub use tuning::{products, Product};

use crate::backend::Backend;
use crate::cpu::CpuBackend;
pub use crate::devices::host;
#[cfg(not(target_arch = "wasm32"))]
use crate::devices::{open_devices, DeviceInfo};
use crate::devices::{Device, Host};
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
use rows::*;
use std::collections::HashMap;
use std::sync::Arc;
use suite::*;
use web_time::Instant;

/// What one bench run covers.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// `--device` values; empty: every adapter and the CPU.
    pub devices: Vec<crate::gpu::adapters::DeviceChoice>,
    /// `--layout`: the memory layout on every adapter (None: each adapter's own choice).
    pub layout: Option<Layout>,
    /// `--limits`: the device limits requested.
    pub limits: LimitsChoice,
}

pub use crate::check::trajectory_tol;

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
pub fn run(options: &Options, quiet: bool) -> Result<Results> {
    let budget = Budget::of(options.quick);
    let opened = open_devices(&options.devices, options.layout, options.limits)?;
    let mut results = Results {
        format: results::FORMAT.into(),
        schema_version: results::SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: option_env!("GPU_TRAIN_GIT_COMMIT").map(String::from),
        created_unix_s: crate::io::unix_now(),
        command: std::env::args().collect(),
        quick: options.quick,
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
    let out = run_devices(
        &opened,
        &budget,
        options,
        quiet,
        &mut results,
        &mut refs,
        lose,
    );
    std::panic::set_hook(default_hook);
    out.map(|()| results)
}

#[cfg(not(target_arch = "wasm32"))]
/// The suite on each opened device, rows appended to `results`.
fn run_devices(
    opened: &[(DeviceInfo, Option<Device>)],
    budget: &Budget,
    options: &Options,
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
        for case in suite(options.quick) {
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
                        Case::Sweep {
                            name,
                            job,
                            variants,
                            epochs,
                        } => block_on(sweep_row(
                            d,
                            dev,
                            name,
                            job,
                            (*variants, *epochs),
                            budget,
                            refs,
                        )),
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
    let mut cpu = crate::cpu::describe();
    cpu.name = host.cpu.clone();
    let devices = [
        (ctx.describe(layout), Device::Gpu(ctx.clone(), layout)),
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
                (
                    Case::Sweep {
                        name,
                        job,
                        variants,
                        epochs,
                    },
                    _,
                ) => sweep_row(d, dev, name, job, (*variants, *epochs), &budget, &mut refs).await,
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
