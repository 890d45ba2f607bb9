//! `gpu-train verify`: the kernel conformance suite as a command, for anyone who wants to know
//! whether a GPU and its driver compute right. Every kernel, variant, layout and epilogue runs on
//! awkward shapes (1, 7, 63, 64, 65, 100, 1000, 1001 across the dimensions) with its outputs
//! poisoned with NaN first, and is checked element by element against the CPU reference with a
//! stated error bound; then a few epochs of each optimizer, loss and activation (with weight
//! decay, a learning-rate schedule, mini-batches), each from the GPU's own state, are checked
//! parameter by parameter against the CPU's with the radii of `crate::check::train_step`.
//!
//! The bounds: a product element `v = Σ_p a_ip·b_pj` of length k is within `γ_k·S` of the exact
//! value in any f32 summation order (`S = Σ_p |a_ip|·|b_pj|`, `γ_k = k·u/(1-k·u)`, u = 2^-24:
//! Higham, §3.1), so the GPU and the CPU may differ by `2γ_k·S`; each epilogue carries that through
//! (evaluated in f64 at the product ± that error), plus the roundings of its own operations and
//! the precision WGSL states for its builtins (`crate::check::epilogue`, where each is derived).
//! The checks run cheapest first (the small kernels, then every epilogue on the first shape and
//! block, then the rest), so that `--fail-fast` stops a wrong kernel early; the mutation tests
//! (`tests/mutants/run.py`) show that each kind of wrong kernel fails.
//! Reductions that the two paths compute in the same order (`bias_update`'s column sums,
//! `loss_reduce`) must match bit for bit. A check's figure is the worst `|gpu - cpu| / bound` over
//! its elements: at most 1 passes; a NaN (an element never written) is infinite.

use crate::cpu::{self, CpuBackend, Epilogue};
#[cfg(not(target_arch = "wasm32"))]
use crate::devices::Device;
use crate::devices::{DeviceInfo, Host};
use crate::error::{Error, Result};
use crate::gpu::layout::Layout;
use crate::gpu::{
    run_advance, run_bias, run_cross_entropy, run_loss_reduce, Acc, BiasRun, Block, GpuBackend,
    GpuContext, LimitsChoice,
};
use crate::init::{HostState, Matrix};
use crate::job::{Activation, InitScheme, Job, Loss, Optimizer, OptimizerKind};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

mod kernels;
mod training;

use crate::check::cross_entropy::check_cross_entropy;
use crate::check::matmul::*;
pub use crate::check::worst_ratio;
use kernels::*;
use training::*;

/// What the JSON file says it is.
pub const FORMAT: &str = "gpu-train verify";
pub const SCHEMA_VERSION: u32 = 1;

/// What one `verify` run covers.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--device` values; empty: every adapter that can run compute shaders.
    pub devices: Vec<crate::gpu::adapters::DeviceChoice>,
    /// `--layout`: one layout (None: every layout each adapter can run).
    pub layout: Option<Layout>,
    pub limits: LimitsChoice,
    /// A reduced set of shapes and training runs, in the layout training takes on each adapter
    /// unless `layout` names one (under a minute on lavapipe).
    pub quick: bool,
    /// Stop at the first failing check (the mutation tests: a killed mutant need not run the
    /// rest).
    pub fail_fast: bool,
    /// The families of checks to run (empty: all).
    pub only: Vec<Family>,
}

/// A family of checks, by the kernel it checks (`--only`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `loss_reduce` and `loss_reduce/advance` (the step counters and the schedule).
    LossReduce,
    BiasUpdate,
    CrossEntropy,
    /// Every product variant with every epilogue.
    Matmul,
    /// The training runs (every kernel composed, parameters compared).
    Train,
    /// Sweeps: every model of a sweep bit for bit its lone run.
    Sweep,
}

impl Family {
    pub const ALL: [Family; 6] = [
        Family::LossReduce,
        Family::BiasUpdate,
        Family::CrossEntropy,
        Family::Matmul,
        Family::Train,
        Family::Sweep,
    ];

    /// The name `--only` takes, the first word of its checks' kernel names.
    pub fn name(self) -> &'static str {
        match self {
            Family::LossReduce => "loss_reduce",
            Family::BiasUpdate => "bias_update",
            Family::CrossEntropy => "cross_entropy",
            Family::Matmul => "matmul",
            Family::Train => "train",
            Family::Sweep => "sweep",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        let t = s.trim();
        (Family::ALL.into_iter())
            .find(|f| f.name() == t)
            .ok_or_else(|| {
                let names: Vec<_> = Family::ALL.iter().map(|f| f.name()).collect();
                Error::arg(
                    "--only",
                    format!("`{t}` is not a family of checks ({})", names.join(", ")),
                )
            })
    }
}

/// One check: a kernel (and epilogue) in one variant and layout on one shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// Index into [`Report::devices`].
    pub device: usize,
    /// `matmul/<epilogue>`, `bias_update/<store|sgd>`, `loss_reduce` or `train/<optimizer>/<loss>`.
    pub kernel: String,
    /// The matmul block (`4x4`, `8x8`, `16x16`), or `-`.
    pub variant: String,
    pub layout: String,
    /// `MxNxK` for products, `RxC` for the others, the net for training.
    pub shape: String,
    /// The worst `|gpu - cpu| / bound` over the elements (infinite for NaN, a wrong length or
    /// a failure the note names; JSON has no infinity: null).
    #[serde(deserialize_with = "crate::check::null_as_infinity")]
    pub ratio: f64,
    /// What the bound is.
    pub bound: String,
    pub passed: bool,
    /// Why the check could not run, or what else failed (non-zero padding).
    #[serde(default)]
    pub note: Option<String>,
}

/// A whole run: where, what, and every check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub format: String,
    pub schema_version: u32,
    pub tool_version: String,
    #[serde(default)]
    pub git_commit: Option<String>,
    pub created_unix_s: u64,
    pub quick: bool,
    pub host: Host,
    pub devices: Vec<DeviceInfo>,
    pub checks: Vec<Check>,
}

impl Report {
    /// A report with no checks yet, stamped now.
    pub fn new(quick: bool, host: Host, devices: Vec<DeviceInfo>) -> Self {
        Report {
            format: FORMAT.into(),
            schema_version: SCHEMA_VERSION,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: option_env!("GPU_TRAIN_GIT_COMMIT").map(String::from),
            created_unix_s: crate::io::unix_now(),
            quick,
            host,
            devices,
            checks: Vec::new(),
        }
    }

    pub fn failed(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// Write the report as JSON, atomically.
    pub fn save(&self, path: &std::path::Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Gpu(e.to_string()))?;
        crate::io::atomic_write(path, |w| w.write_all(text.as_bytes()))
    }
}

/// The table's head and one line per check.
pub fn header() -> String {
    format!(
        "{:<24} {:<6} {:<7} {:<18} {:>10}  result",
        "kernel", "variant", "layout", "shape", "err/bound"
    )
}

pub fn line(c: &Check) -> String {
    let result = if c.passed { "pass" } else { "FAIL" };
    let note = c
        .note
        .as_deref()
        .map_or(String::new(), |n| format!("  ({n})"));
    format!(
        "{:<24} {:<6} {:<7} {:<18} {:>10.3e}  {result}{note}",
        c.kernel, c.variant, c.layout, c.shape, c.ratio
    )
}

struct Suite<'a> {
    checks: &'a mut Vec<Check>,
    device: usize,
    on_check: &'a mut dyn FnMut(&Check),
    fail_fast: bool,
}

impl Suite<'_> {
    /// Whether the suite stops here: a check failed and it was asked to stop at the first.
    fn stopped(&self) -> bool {
        self.fail_fast && self.checks.iter().any(|c| !c.passed)
    }

    fn push(&mut self, check: Check) {
        (self.on_check)(&check);
        self.checks.push(check);
    }

    #[allow(clippy::too_many_arguments)]
    fn record(
        &mut self,
        kernel: String,
        variant: &str,
        layout: Layout,
        shape: String,
        bound: &str,
        outcome: Result<(f64, Option<String>)>,
    ) {
        let (ratio, note) = match outcome {
            Ok((r, note)) => (r, note),
            Err(e) => (f64::INFINITY, Some(e.to_string())),
        };
        self.push(Check {
            device: self.device,
            kernel,
            variant: variant.into(),
            layout: layout.name().into(),
            shape,
            ratio,
            bound: bound.into(),
            passed: ratio <= 1.0 && note.is_none(),
            note,
        });
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Run the suite on every chosen adapter (and layout), reporting each check to `on_check` (with
/// the devices) as it completes. Fails (bad input, exit 2) if there is no adapter to verify.
pub fn run(options: &Options, on_check: &mut dyn FnMut(&[DeviceInfo], &Check)) -> Result<Report> {
    if options
        .devices
        .contains(&crate::gpu::adapters::DeviceChoice::Cpu)
    {
        return Err(Error::arg(
            "--device",
            "verify checks GPU kernels against the CPU reference; pick a GPU adapter (see \
             `gpu-train devices`)",
        ));
    }
    let opened = crate::devices::open_devices(&options.devices, options.layout, options.limits)?;
    let gpus: Vec<_> = opened
        .into_iter()
        .filter(|(info, _)| info.kind == "gpu")
        .collect();
    if gpus.is_empty() {
        return Err(Error::Device(
            "verify: no GPU adapter found (on Linux without a GPU, `apt-get install \
             mesa-vulkan-drivers` gives the software adapter lavapipe)"
                .into(),
        ));
    }
    let devices = gpus.iter().map(|(i, _)| i.clone()).collect();
    let mut report = Report::new(options.quick, crate::devices::host(), devices);
    let devices = report.devices.clone();
    let mut forward = |c: &Check| on_check(&devices, c);
    for (device, (info, dev)) in gpus.iter().enumerate() {
        let mut suite = Suite {
            checks: &mut report.checks,
            device,
            on_check: &mut forward,
            fail_fast: options.fail_fast,
        };
        let Some(Device::Gpu(ctx, _)) = dev else {
            let why = (info.error.clone()).unwrap_or_else(|| "it could not be opened".into());
            suite.push(Check {
                device,
                kernel: "open".into(),
                variant: "-".into(),
                layout: "-".into(),
                shape: "-".into(),
                ratio: f64::INFINITY,
                bound: "-".into(),
                passed: false,
                note: Some(why),
            });
            continue;
        };
        let layouts = layouts(ctx, options.layout, options.quick);
        let only = &options.only;
        crate::wait::block_on(check_device(&mut suite, ctx, &layouts, options.quick, only));
    }
    Ok(report)
}

/// The layouts to verify on `ctx`: the one asked for; with `quick` the one training would take
/// here; else every layout the adapter runs.
pub fn layouts(ctx: &GpuContext, asked: Option<Layout>, quick: bool) -> Vec<Layout> {
    match asked {
        Some(l) => vec![l],
        None if quick => vec![ctx.auto_layout()],
        None => (Layout::ALL.into_iter())
            .filter(|&l| ctx.kernels.supports(l))
            .collect(),
    }
}

/// Every check of the suite on one open device, in each of `layouts` (of the families `only`
/// names, or all).
async fn check_device(
    suite: &mut Suite<'_>,
    ctx: &Arc<GpuContext>,
    layouts: &[Layout],
    quick: bool,
    only: &[Family],
) {
    let asked = |f: Family| only.is_empty() || only.contains(&f);
    for &layout in layouts {
        // The cheap kernels first, then the products, then training (see `--fail-fast`).
        if layout == layouts[0] && asked(Family::LossReduce) && !suite.stopped() {
            loss_reduce_checks(suite, ctx, layout, quick).await;
            schedule_checks(suite, ctx, layout, quick).await;
        }
        if asked(Family::BiasUpdate) && !suite.stopped() {
            bias_checks(suite, ctx, layout, quick).await;
        }
        if asked(Family::CrossEntropy) && !suite.stopped() {
            cross_entropy_checks(suite, ctx, layout, quick).await;
        }
        if asked(Family::Matmul) && !suite.stopped() {
            matmul_checks(suite, ctx, layout, quick).await;
        }
        if asked(Family::Train) && !suite.stopped() {
            training_checks(suite, ctx, layout, quick).await;
        }
        if asked(Family::Sweep) && !suite.stopped() {
            sweep_checks(suite, ctx, layout).await;
        }
    }
}

/// The suite on one device already open (the browser's adapter, described by `info`, on the
/// `host` that runs it), each check reported to `on_check` as it completes.
pub async fn run_on(
    ctx: &Arc<GpuContext>,
    info: DeviceInfo,
    host: Host,
    asked: Option<Layout>,
    quick: bool,
    on_check: &mut dyn FnMut(&Check),
) -> Report {
    let mut report = Report::new(quick, host, vec![info]);
    let mut suite = Suite {
        checks: &mut report.checks,
        device: 0,
        on_check,
        fail_fast: false,
    };
    check_device(&mut suite, ctx, &layouts(ctx, asked, quick), quick, &[]).await;
    report
}
