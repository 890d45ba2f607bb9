//! The command line over the library: the flags become a [`crate::spec::JobSpec`] (in `cli`), its
//! dataset is loaded here, and each command is a few calls into the library. `train` runs the
//! job (its per-chunk work, the printing and files, in `observer`); `commands` holds the rest.

mod commands;
mod observer;
mod sweep;
mod train;

use crate::backend::Backend;
use crate::cli::{Cli, Command, DatasetArgs, JobArgs};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{context, DeviceChoice, GpuBackend, GpuContext, GpuOptions};
use crate::init::{HostState, Matrix};
use crate::io::data;
use crate::job::{self, Job, Loss};
use crate::spec::JobSpec;

pub use sweep::open_models;
pub use train::{profile_table, INTERRUPTED_CHECKPOINT};

/// Run what the command line asks for.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Some(Command::Devices) => {
            println!("{}", context::adapters_report(&context::list_adapters()));
            Ok(())
        }
        Some(Command::Presets) => {
            for p in job::PRESETS {
                println!("{:<13} {}", p.name, p.about);
            }
            Ok(())
        }
        Some(Command::Plot(args)) => commands::plot_command(&args),
        Some(Command::Eval(args)) => commands::eval_command(&args),
        Some(Command::Predict(args)) => commands::predict_command(&args),
        Some(Command::Bench(args)) => commands::bench_command(&args),
        Some(Command::Tune(args)) => commands::tune_command(&args),
        Some(Command::Verify(args)) => commands::verify_command(&args),
        Some(Command::Sweep(args)) => sweep::sweep_command(&args),
        None => train::train_command(&cli.train),
    }
}

/// The job and its initial state from the flags and `spec` (theirs, or a sweep's variant of
/// them): seeded, on a dataset from files, or loaded from `--init` (whose shapes fill in
/// `--layers`/`--batch` where those are not given, and must match them where they are).
pub fn resolve(args: &JobArgs, spec: JobSpec) -> Result<(Job, HostState)> {
    let data = load_data(&args.dataset, spec.classes(), spec.job()?.loss)?;
    resolve_with(args, spec, data)
}

/// [`resolve`] with the dataset from files already loaded (once for all the variants of a sweep).
pub(crate) fn resolve_with(
    args: &JobArgs,
    spec: JobSpec,
    data: Option<Dataset>,
) -> Result<(Job, HostState)> {
    if let Some((x, y, names)) = data {
        if args.init.is_some() {
            return Err(Error::arg(
                "--init",
                "cannot be combined with a dataset from files (--x/--y or --data)",
            ));
        }
        return spec.resolve_with_data(x, y, names);
    }
    match &args.init {
        Some(dir) => spec.resolve_init(dir),
        None => spec.resolve(),
    }
}

/// A dataset from files: x, y, and the names to record (of the files, or of a CSV's columns).
pub(crate) type Dataset = (Matrix, Matrix, (String, String));

/// The dataset of `--x`/`--y` or `--data`, if given, with the names to record; integer class
/// indices become one-hot rows over `classes` classes (default: the largest index + 1).
pub(crate) fn load_data(
    args: &DatasetArgs,
    classes: Option<usize>,
    loss: Loss,
) -> Result<Option<Dataset>> {
    // Cross-entropy's targets: class indices become one-hot, probabilities are checked.
    let targets = |path: &std::path::Path, y| data::targets_for(loss, path, y, classes);
    let shown = |p: &std::path::Path| p.display().to_string();
    if args.targets.is_some() && args.data.is_none() {
        return Err(Error::arg("--targets", "only applies to --data FILE.csv"));
    }
    match (&args.x, &args.y, &args.data) {
        (None, None, None) => Ok(None),
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(Error::arg(
            "--data",
            "give the dataset either as --data FILE.csv or as --x/--y, not both",
        )),
        (Some(_), None, None) => Err(Error::arg("--x", "needs --y FILE.npy (the targets)")),
        (None, Some(_), None) => Err(Error::arg("--y", "needs --x FILE.npy (the inputs)")),
        (Some(x), Some(y), None) => {
            let (xm, ym) = data::load_npy_pair(x, y, classes)?;
            let ym = targets(y, ym)?;
            let source = (shown(x), shown(y));
            Ok(Some((xm, ym, source)))
        }
        (None, None, Some(csv)) => {
            let Some(k) = &args.targets else {
                return Err(Error::arg(
                    "--targets",
                    "--data needs --targets K: how many of the last columns are targets",
                ));
            };
            let k = *k;
            let (xm, ym) = data::load_csv(csv, k)?;
            let ym = targets(csv, ym)?;
            let source = (
                format!("{} (all but the last {k} columns)", shown(csv)),
                format!("{} (the last {k} columns)", shown(csv)),
            );
            Ok(Some((xm, ym, source)))
        }
    }
}

/// Build the backend `--device` asks for, a GPU one with `gpu`'s layout and limits, its products
/// tuned first as `tune` says (the mode and the budget in seconds; the one line saying what it
/// chose goes to stderr). `auto` falls back to the CPU with a notice.
pub fn open_backend(
    choice: &DeviceChoice,
    gpu: GpuOptions,
    tune: (crate::gpu::tune::TuneMode, f64),
    job: &Job,
    state: &HostState,
) -> Result<Box<dyn Backend>> {
    open_backend_kept(choice, gpu, tune, job, state, &mut None)
}

/// A GPU device kept open between the runs of one process (a Python session), so that a later
/// run with the same device and options skips opening it and compiling its kernels again.
pub struct KeptDevice {
    choice: DeviceChoice,
    gpu: GpuOptions,
    ctx: std::sync::Arc<GpuContext>,
    layout: crate::gpu::layout::Layout,
}

impl KeptDevice {
    /// The adapter's name.
    pub fn name(&self) -> &str {
        &self.ctx.info.name
    }
}

/// [`open_backend`], reusing the device in `kept` where it was opened for the same `choice` and
/// `gpu` options, has reported no error, and needs no tuning for `job` (the same device, kernels
/// and tuned choices: the same bits as a fresh one); otherwise it opens the device afresh and
/// keeps that one in `kept` (unless it tuned itself: its description says so, which a later
/// run's must not).
pub fn open_backend_kept(
    choice: &DeviceChoice,
    gpu: GpuOptions,
    tune: (crate::gpu::tune::TuneMode, f64),
    job: &Job,
    state: &HostState,
    kept: &mut Option<KeptDevice>,
) -> Result<Box<dyn Backend>> {
    if *choice == DeviceChoice::Cpu {
        return Ok(Box::new(CpuBackend::new(job, state)));
    }
    if let Some(k) = kept.as_ref() {
        let same = k.choice == *choice && k.gpu == gpu && k.ctx.check().is_ok();
        if same && crate::gpu::tune::to_tune(tune.0, &k.ctx, k.layout, job).is_empty() {
            let backend = GpuBackend::with_layout(k.ctx.clone(), job, state, k.layout)?;
            return Ok(Box::new(backend));
        }
    }
    *kept = None;
    match open_gpu(choice, gpu, tune, job)? {
        Some((ctx, layout)) => {
            if ctx.self_tuned.is_none() {
                *kept = Some(KeptDevice {
                    choice: choice.clone(),
                    gpu,
                    ctx: ctx.clone(),
                    layout,
                });
            }
            Ok(Box::new(GpuBackend::with_layout(ctx, job, state, layout)?))
        }
        None => Ok(Box::new(CpuBackend::new(job, state))),
    }
}

/// The adapter `--device` asks for, opened with `gpu`'s limits, and the layout to run `job` in,
/// its products tuned first as `tune` says; None for the CPU (asked for, or `auto`'s fallback,
/// with a notice).
pub(crate) fn open_gpu(
    choice: &DeviceChoice,
    gpu: GpuOptions,
    tune: (crate::gpu::tune::TuneMode, f64),
    job: &Job,
) -> Result<Option<(std::sync::Arc<GpuContext>, crate::gpu::layout::Layout)>> {
    if *choice == DeviceChoice::Cpu {
        return Ok(None);
    }
    match context::choose(choice, context::list_adapters())? {
        Some(entry) => {
            let mut ctx = GpuContext::open(&entry.adapter, gpu.limits)?;
            let layout = gpu.layout.unwrap_or_else(|| ctx.auto_layout());
            self_tune(&mut ctx, layout, job, tune)?;
            Ok(Some((ctx, layout)))
        }
        None => {
            eprintln!(
                "notice: no GPU adapter found, training on the CPU (on Linux, `apt-get install \
                 mesa-vulkan-drivers` gives the software adapter lavapipe)"
            );
            Ok(None)
        }
    }
}

/// Tune the products of `job` on `ctx` first where `tune` asks for it (see
/// `gpu::tune::to_tune`), cache the choices and take them, and say what was chosen in one line.
/// A Ctrl-C meanwhile ends the process before anything is written (the cache is written
/// atomically at the end).
fn self_tune(
    ctx: &mut std::sync::Arc<GpuContext>,
    layout: crate::gpu::layout::Layout,
    job: &Job,
    (mode, budget_s): (crate::gpu::tune::TuneMode, f64),
) -> Result<()> {
    use crate::gpu::tune;
    let products = tune::to_tune(mode, ctx, layout, job);
    if products.is_empty() {
        return Ok(());
    }
    eprintln!(
        "tuning: {} has no measured choice for {} of this job's products in the {layout} layout; \
         measuring them first (at most about {budget_s} s; --tune never to skip)",
        ctx.info.name,
        products.len()
    );
    let (entries, done) =
        crate::wait::block_on(tune::tune_products(ctx, layout, &products, budget_s))?;
    match tune::save(&ctx.info, &entries, None) {
        Ok(path) => eprintln!("{}; cached in {}", done.line(), path.display()),
        Err(e) => eprintln!("{} (not cached: {e})", done.line()),
    }
    if let Some(c) = std::sync::Arc::get_mut(ctx) {
        for e in &entries {
            c.tuning.insert(e);
        }
        c.self_tuned = Some(done);
    }
    Ok(())
}

/// Data whose width must be the net's (`what`: inputs or outputs).
pub(super) fn check_width(flag: &'static str, m: &Matrix, want: usize, what: &str) -> Result<()> {
    if m.cols == want {
        return Ok(());
    }
    Err(Error::arg(
        flag,
        format!("has {} columns per row; the net has {want} {what}", m.cols),
    ))
}
