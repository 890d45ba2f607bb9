//! The commands: resolve the command line into a job and its initial state, pick the device, train,
//! print, write files.

use crate::backend::Backend;
use crate::cli::{Cli, Command, TrainArgs};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::{context, DeviceChoice, GpuBackend, GpuContext};
use crate::init::HostState;
use crate::io::{npy, summary};
use crate::job::{self, Activation, InitScheme, Job, Loss, Named, OptimizerKind};
use crate::train::{self, Report};
use std::time::Instant;

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
        None => train_command(&cli.train),
    }
}

/// The job and its initial state from the flags: seeded, or loaded from `--init` (whose shapes
/// fill in `--layers`/`--batch` where those are not given, and must match them where they are).
pub fn resolve(args: &TrainArgs) -> Result<(Job, HostState)> {
    let mut job = match &args.preset {
        Some(name) => job::preset(name)?,
        None => Job::default(),
    };
    job.seed = args.seed;
    if let Some(n) = &args.log_every {
        job.log_every = job::parse_count("--log-every", n)?;
    }
    if let Some(e) = &args.epochs {
        job.epochs = job::parse_count("--epochs", e)?;
    }
    if let Some(lr) = &args.lr {
        job.lr = job::parse_lr(lr)?;
    }
    if let Some(a) = &args.activation {
        job.activation = Activation::parse(a)?;
    }
    if let Some(l) = &args.loss {
        job.loss = Loss::parse(l)?;
    }
    if let Some(i) = &args.init_scheme {
        job.init_scheme = InitScheme::parse(i)?;
    }
    if let Some(m) = &args.dynamic_depth {
        let max = job::parse_count("--dynamic-depth", m)?;
        job.dynamic = Some(job::DynamicDepth {
            max,
            schedule: Vec::new(),
        });
    }
    if args.bias || args.no_bias {
        job.bias = args.bias;
    }
    let opt = &mut job.optimizer;
    if let Some(o) = &args.optimizer {
        opt.kind = OptimizerKind::parse(o)?;
    }
    opt.nesterov |= args.nesterov;
    for (flag, value, field) in [
        ("--momentum", &args.momentum, &mut opt.momentum),
        ("--beta1", &args.beta1, &mut opt.beta1),
        ("--beta2", &args.beta2, &mut opt.beta2),
        ("--eps", &args.eps, &mut opt.eps),
    ] {
        if let Some(v) = value {
            *field = job::parse_f32(flag, v)?;
        }
    }
    let layers = args.layers.as_deref().map(job::parse_layers).transpose()?;
    let batch = args
        .batch
        .as_deref()
        .map(|b| job::parse_count("--batch", b))
        .transpose()?;
    if let Some(l) = &layers {
        job.layers = l.clone();
    }
    if let Some(b) = batch {
        job.batch = b;
    }

    let Some(dir) = &args.init else {
        job.validate()?;
        let state = HostState::seeded(&job);
        return Ok((job, state));
    };
    // Validate what the flags say before reading files, so a bad flag is reported as such (all but
    // dynamic depth, which depends on the widths the files may give).
    let dynamic = job.dynamic.take();
    job.validate()?;
    job.dynamic = dynamic;
    let state = npy::load_state(dir)?;
    let (file_layers, file_batch) = state.dims();
    // A flag that is given must match the files; one that is not comes from them.
    job.layers = layers.unwrap_or(file_layers);
    job.batch = batch.unwrap_or(file_batch);
    check_init_matches(dir, &job, &state)?;
    // The files define the net: biases there mean a net with biases.
    if job.bias && state.biases.is_empty() {
        return Err(Error::BadFile {
            path: dir.join(npy::bias_file(0)),
            msg: "missing: --bias with --init needs b1.npy, b2.npy, ... beside the weights".into(),
        });
    }
    job.bias = !state.biases.is_empty();
    job.validate()?;
    Ok((job, state))
}

/// With explicit `--layers`/`--batch`, every --init file must have the shape they imply.
fn check_init_matches(dir: &std::path::Path, job: &Job, state: &HostState) -> Result<()> {
    let hint = || " (from --layers/--batch)".to_string();
    let mismatch = |name: String, expected: [usize; 2], found: [usize; 2]| -> Result<()> {
        if expected == found {
            return Ok(());
        }
        Err(Error::Shape {
            path: dir.join(name),
            expected: expected.to_vec(),
            found: found.to_vec(),
            hint: hint(),
        })
    };
    mismatch("x.npy".into(), job.x_shape(), state.x.shape())?;
    let n_files = state.weights.len();
    if n_files < job.depth() {
        return Err(Error::BadFile {
            path: dir.join(npy::weight_file(n_files)),
            msg: format!("missing: --layers asks for {} weights", job.depth()),
        });
    }
    if n_files > job.depth() {
        return Err(Error::BadFile {
            path: dir.join(npy::weight_file(job.depth())),
            msg: format!(
                "present, but --layers asks for only {} weights (remove the file or fix --layers)",
                job.depth()
            ),
        });
    }
    for (l, w) in state.weights.iter().enumerate() {
        mismatch(npy::weight_file(l), job.weight_shape(l), w.shape())?;
    }
    mismatch("y.npy".into(), job.y_shape(), state.y.shape())
}

/// Build the backend `--device` asks for. `auto` falls back to the CPU with a notice.
pub fn open_backend(device: &str, job: &Job, state: &HostState) -> Result<Box<dyn Backend>> {
    let choice = DeviceChoice::parse(device)?;
    if choice == DeviceChoice::Cpu {
        return Ok(Box::new(CpuBackend::new(job, state)));
    }
    match context::choose(&choice, context::list_adapters())? {
        Some(entry) => {
            let ctx = GpuContext::new(&entry.adapter)?;
            Ok(Box::new(GpuBackend::new(ctx, job, state)?))
        }
        None => {
            eprintln!(
                "notice: no GPU adapter found, training on the CPU (on Linux, `apt-get install \
                 mesa-vulkan-drivers` gives the software adapter lavapipe)"
            );
            Ok(Box::new(CpuBackend::new(job, state)))
        }
    }
}

fn describe_net(job: &Job) -> String {
    let widths: Vec<String> = job.layers.iter().map(|d| d.to_string()).collect();
    let activation = match job.activation {
        Activation::Relu => "ReLU",
        Activation::None => "linear (no activation)",
    };
    let init = match job.init_scheme {
        InitScheme::Normal => String::new(),
        other => format!(", {other} init"),
    };
    let bias = if job.bias { ", bias" } else { "" };
    let dynamic = match (job.shared_layer(), &job.dynamic) {
        (Some(s), Some(d)) => format!(", w{} shared and run 0-{} times per epoch", s + 1, d.max),
        _ => String::new(),
    };
    format!(
        "batch {} x [{}]{bias}{dynamic}, {activation}, {}{init}, {} lr {:e}, {} epochs",
        job.batch,
        widths.join(" -> "),
        job.loss.describe(),
        job.optimizer.describe(),
        job.lr,
        job.epochs
    )
}

fn train_command(args: &TrainArgs) -> Result<()> {
    let (job, state) = resolve(args)?;
    // Fail on an unwritable output before training, not after.
    for p in [&args.history, &args.summary_json].into_iter().flatten() {
        crate::io::check_writable(p)?;
    }
    for dir in [&args.save_init, &args.save_final].into_iter().flatten() {
        crate::io::ensure_dir(dir)?;
    }
    if let Some(dir) = &args.save_init {
        npy::save_state(dir, &state)?;
    }
    let setup = Instant::now();
    let mut backend = open_backend(&args.device, &job, &state)?;
    let setup_s = setup.elapsed().as_secs_f64();
    let device = backend.describe();
    if !args.quiet {
        println!(
            "{} on {} ({}, {})",
            describe_net(&job),
            device.name,
            device.device_type,
            device.backend
        );
    }
    let quiet = args.quiet;
    let report = train::train(&job, backend.as_mut(), |epoch, loss| {
        if !quiet {
            println!("epoch {epoch:>6}  loss {loss:.6e}");
        }
    })?;

    let epochs_run = report.losses.len();
    let eps = epochs_run as f64 / report.train_s.max(1e-12);
    let s = summary::Summary {
        tool: "gpu-train",
        version: env!("CARGO_PKG_VERSION"),
        device,
        config: job.clone(),
        epochs_run,
        final_loss: report.final_loss(),
        losses: report.losses.clone(),
        timings: summary::Timings {
            setup_s,
            train_s: report.train_s,
            epochs_per_s: eps,
            gflops: job.flops_of_epochs(epochs_run) / report.train_s.max(1e-12) / 1e9,
        },
        dispatches_per_epoch: backend.dispatches_per_epoch(),
        submits: backend.submits(),
        diverged_at: report.diverged.map(|(e, _)| e),
    };
    println!("{}", summary_line(&s));
    write_outputs(args, &s, &report)?;
    match report.diverged {
        Some((epoch, loss)) => Err(Error::Diverged {
            epoch,
            loss,
            lr: job.lr,
            suggest: job.lr / 10.0,
        }),
        None => Ok(()),
    }
}

/// The one line every run ends with.
pub fn summary_line(s: &summary::Summary) -> String {
    let loss = s
        .final_loss
        .map_or_else(|| "-".to_string(), |l| format!("{l:.6e}"));
    format!(
        "device {} | epochs {} | final loss {} | train {:.3} s | {:.1} epochs/s | {:.2} GFLOP/s",
        s.device.name,
        s.epochs_run,
        loss,
        s.timings.train_s,
        s.timings.epochs_per_s,
        s.timings.gflops
    )
}

fn write_outputs(args: &TrainArgs, s: &summary::Summary, report: &Report) -> Result<()> {
    if let Some(p) = &args.history {
        summary::write_history(p, &report.losses)?;
    }
    if let Some(p) = &args.summary_json {
        summary::write_summary(p, s)?;
    }
    if let Some(dir) = &args.save_final {
        npy::save_params(dir, &report.params)?;
    }
    Ok(())
}
