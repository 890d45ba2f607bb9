//! The commands: resolve the command line into a job and its initial state, pick the device, train,
//! print, write files.

use crate::backend::Backend;
use crate::cli::{Cli, Command, DatasetArgs, EvalArgs, PlotArgs, PredictArgs, TrainArgs};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::gpu::layout::Layout;
use crate::gpu::{context, DeviceChoice, GpuBackend, GpuContext, GpuOptions};
use crate::init::{HostState, Matrix};
use crate::io::history::{self, AccPoint, History, HistoryWriter, ValPoint};
use crate::io::{checkpoint, data, npy, summary};
use crate::job::{self, Activation, DataSource, InitScheme, Job, Loss, Named, OptimizerKind};
use crate::thinned::Thinned;
use crate::train::{self, Report};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
        Some(Command::Plot(args)) => plot_command(&args),
        Some(Command::Eval(args)) => eval_command(&args),
        Some(Command::Predict(args)) => predict_command(&args),
        Some(Command::Bench(args)) => bench_command(&args),
        Some(Command::Tune(args)) => tune_command(&args),
        Some(Command::Verify(args)) => verify_command(&args),
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
    opt.weight_decay = match &args.weight_decay {
        Some(v) => job::parse_f32("--weight-decay", v)?,
        None if opt.kind == OptimizerKind::AdamW => job::DEFAULT_ADAMW_DECAY,
        None => opt.weight_decay,
    };
    if args.lr_schedule.is_some() || args.warmup.is_some() {
        job.lr_schedule = crate::schedule::LrSchedule::parse(
            args.lr_schedule.as_deref(),
            args.warmup.as_deref(),
        )?;
    }
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
    if args.shuffle || args.no_shuffle {
        job.shuffle = args.shuffle;
    }
    let layers = args.layers.as_deref().map(job::parse_layers).transpose()?;
    let batch = args
        .batch
        .as_deref()
        .map(|b| job::parse_count("--batch", b))
        .transpose()?;
    let rows = args
        .rows
        .as_deref()
        .map(|r| job::parse_count("--rows", r))
        .transpose()?;
    if let Some(l) = &layers {
        job.layers = l.clone();
    }
    if let Some(b) = batch {
        job.batch = b;
    }

    // Class indices become one-hot over the outputs of --layers, if given.
    let classes = layers.as_ref().and_then(|l| l.last().copied());
    if let Some((x, y, source)) = load_data(&args.dataset, classes, job.loss)? {
        for (flag, given) in [("--init", args.init.is_some()), ("--rows", rows.is_some())] {
            if given {
                return Err(Error::arg(
                    flag,
                    "cannot be combined with a dataset from files (--x/--y or --data)",
                ));
            }
        }
        return crate::spec::with_data(job, (x, y, source), layers.is_some(), batch.is_some());
    }
    if let Some(r) = rows {
        if args.init.is_some() {
            return Err(Error::arg(
                "--rows",
                "the --init files give the dataset's rows",
            ));
        }
        job.rows = Some(r);
        if batch.is_none() {
            job.batch = job.batch.min(r.max(1));
        }
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
    let mut state = npy::load_state(dir)?;
    let y = std::mem::replace(&mut state.y, Matrix::zeros(0, 0));
    state.y = data::targets_for(job.loss, &dir.join("y.npy"), y, classes)?;
    let (file_layers, file_rows) = state.dims();
    // A flag that is given must match the files; one that is not comes from them. The files'
    // rows are the dataset; --batch may split it into mini-batches.
    job.layers = layers.unwrap_or(file_layers);
    job.batch = batch.unwrap_or(file_rows);
    job.rows = Some(file_rows);
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

/// The dataset of `--x`/`--y` or `--data`, if given, with the source to record; integer class
/// indices become one-hot rows over `classes` classes (default: the largest index + 1).
fn load_data(
    args: &DatasetArgs,
    classes: Option<usize>,
    loss: Loss,
) -> Result<Option<(Matrix, Matrix, DataSource)>> {
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
            let source = DataSource::Files {
                x: shown(x),
                y: shown(y),
            };
            Ok(Some((xm, ym, source)))
        }
        (None, None, Some(csv)) => {
            let Some(k) = &args.targets else {
                return Err(Error::arg(
                    "--targets",
                    "--data needs --targets K: how many of the last columns are targets",
                ));
            };
            let k = job::parse_count("--targets", k)?;
            let (xm, ym) = data::load_csv(csv, k)?;
            let ym = targets(csv, ym)?;
            let source = DataSource::Files {
                x: format!("{} (all but the last {k} columns)", shown(csv)),
                y: format!("{} (the last {k} columns)", shown(csv)),
            };
            Ok(Some((xm, ym, source)))
        }
    }
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

/// Build the backend `--device` asks for, a GPU one with `gpu`'s layout and limits. `auto`
/// falls back to the CPU with a notice.
pub fn open_backend(
    device: &str,
    gpu: GpuOptions,
    job: &Job,
    state: &HostState,
) -> Result<Box<dyn Backend>> {
    let choice = DeviceChoice::parse(device)?;
    if choice == DeviceChoice::Cpu {
        return Ok(Box::new(CpuBackend::new(job, state)));
    }
    match context::choose(&choice, context::list_adapters())? {
        Some(entry) => {
            let ctx = GpuContext::open(&entry.adapter, gpu.limits)?;
            let layout = gpu.layout.unwrap_or_else(|| ctx.auto_layout());
            Ok(Box::new(GpuBackend::with_layout(ctx, job, state, layout)?))
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
    let activation = job.activation.describe();
    let init = match job.init_scheme {
        InitScheme::Normal => String::new(),
        other => format!(", {other} init"),
    };
    let bias = if job.bias { ", bias" } else { "" };
    let dynamic = match (job.shared_layer(), &job.dynamic) {
        (Some(s), Some(d)) => format!(", w{} shared and run 0-{} times per epoch", s + 1, d.max),
        _ => String::new(),
    };
    let data = if job.minibatched() {
        let order = if job.shuffle { "shuffled" } else { "in order" };
        format!(
            "{} rows in batches of {} ({order})",
            job.dataset_rows(),
            job.batch
        )
    } else {
        format!("batch {}", job.batch)
    };
    let schedule = match job.lr_schedule.is_constant() {
        true => String::new(),
        false => format!(" ({})", job.lr_schedule.describe()),
    };
    format!(
        "{data} x [{}]{bias}{dynamic}, {activation}, {}{init}, {} lr {:e}{schedule}, {} epochs",
        widths.join(" -> "),
        job.loss.describe(),
        job.optimizer.describe(),
        job.lr,
        job.epochs
    )
}

/// A held-out set from `--val-split` (taken out of the dataset, which shrinks) or
/// `--val-x`/`--val-y`.
fn validation(
    args: &TrainArgs,
    job: &mut Job,
    state: &mut HostState,
) -> Result<Option<(Matrix, Matrix)>> {
    let files = match (&args.val_x, &args.val_y) {
        (None, None) => None,
        (Some(x), Some(y)) => {
            let classes = Some(job.layers[job.depth()]);
            let (xm, ym) = data::load_npy_pair(x, y, classes)?;
            Some((xm, data::targets_for(job.loss, y, ym, classes)?))
        }
        (Some(_), None) => return Err(Error::arg("--val-x", "needs --val-y FILE.npy")),
        (None, Some(_)) => return Err(Error::arg("--val-y", "needs --val-x FILE.npy")),
    };
    let fraction = match &args.val_split {
        None => None,
        Some(_) if files.is_some() => {
            return Err(Error::arg(
                "--val-split",
                "give the held-out set either as --val-split or as --val-x/--val-y",
            ))
        }
        Some(f) => match f.trim().parse::<f64>() {
            Ok(v) if v > 0.0 && v < 1.0 => Some(v),
            _ => {
                return Err(Error::arg(
                    "--val-split",
                    format!("`{f}` must be a fraction between 0 and 1, e.g. 0.2"),
                ))
            }
        },
    };
    if let Some((x, y)) = files {
        check_width("--val-x", &x, job.layers[0], "inputs")?;
        check_width("--val-y", &y, job.layers[job.depth()], "outputs")?;
        return Ok(Some((x, y)));
    }
    let Some(fraction) = fraction else {
        return Ok(None);
    };
    let Some(((tx, ty), val)) = crate::eval::split(&state.x, &state.y, fraction, job.seed) else {
        return Err(Error::arg(
            "--val-split",
            format!(
                "{fraction} of {} rows leaves none to train on",
                state.x.rows
            ),
        ));
    };
    (state.x, state.y) = (tx, ty);
    job.rows = Some(state.x.rows);
    if args.batch.is_none() {
        job.batch = job.batch.min(state.x.rows);
    }
    job.validate()?;
    Ok(Some(val))
}

fn train_command(args: &TrainArgs) -> Result<()> {
    let (mut job, mut state) = resolve(args)?;
    let val = validation(args, &mut job, &mut state)?;
    let (job, state) = (job, state);
    // Fail on an unwritable output before training, not after.
    for p in [&args.history, &args.summary_json, &args.plot, &args.save]
        .into_iter()
        .flatten()
    {
        crate::io::check_writable(p)?;
    }
    for dir in [&args.save_init, &args.save_final].into_iter().flatten() {
        crate::io::ensure_dir(dir)?;
    }
    if let Some(dir) = &args.save_init {
        npy::save_state(dir, &state)?;
    }
    // A checkpoint to continue from is checked against the flags before anything is set up.
    let resumed = match &args.resume {
        Some(path) => {
            let (state, epoch) = checkpoint::load(path, &job)?;
            // The epoch numbering of a resumed run counts steps of this job's batches.
            if epoch.checked_mul(job.steps_per_epoch()) != Some(state.step) {
                return Err(Error::arg(
                    "--batch",
                    format!(
                        "{} is at epoch {epoch}, step {}: trained with other batches than {} \
                         steps per epoch; resume it with the --batch and dataset it was trained \
                         with",
                        path.display(),
                        state.step,
                        job.steps_per_epoch()
                    ),
                ));
            }
            if epoch >= job.epochs {
                return Err(Error::arg(
                    "--epochs",
                    format!(
                        "{} has already trained {epoch} epochs; raise --epochs to continue",
                        path.display()
                    ),
                ));
            }
            Some((state, epoch))
        }
        None => None,
    };
    let setup = Instant::now();
    let mut backend = open_backend(&args.device, args.gpu.options(), &job, &state)?;
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
    if args.profile {
        if let Err(why) = backend.enable_profiling() {
            eprintln!("profile: {why}; wall-clock times only");
        }
    }
    let first_epoch = match resumed {
        Some(state) => {
            backend.restore(&state.0)?;
            state.1
        }
        None => 0,
    };
    let every = match &args.checkpoint_every {
        Some(n) if args.save.is_none() => {
            return Err(Error::arg(
                "--checkpoint-every",
                format!("`{n}` needs --save FILE, the checkpoint to write"),
            ))
        }
        Some(n) => job::parse_count("--checkpoint-every", n)?,
        None => 0,
    };
    let interrupted = interrupt_flag();
    let quiet = args.quiet;
    // The held-out score at the start of every logged epoch and at the end, from the parameters
    // read back then.
    // With class targets, the accuracy on the training rows at the same points (a forward
    // pass over them on the host, from the same parameters).
    let scores = std::cell::RefCell::new(Thinned::<ValPoint>::default());
    let classes = crate::eval::one_hot(&state.y);
    let accuracy = std::cell::RefCell::new(Thinned::<AccPoint>::default());
    let evaluate = |backend: &mut dyn Backend, epoch: usize| -> Result<()> {
        if val.is_none() && !classes {
            return Ok(());
        }
        let params = backend.read_params()?;
        if let Some((x, y)) = &val {
            let s = crate::eval::score(&job, &params, x, y);
            scores.borrow_mut().push(ValPoint {
                epoch,
                loss: s.loss,
                accuracy: s.accuracy,
            });
        }
        if classes {
            let pred = crate::eval::predict(&job, &params, &state.x);
            accuracy.borrow_mut().push(AccPoint {
                epoch,
                accuracy: crate::eval::accuracy(&pred, &state.y),
            });
        }
        Ok(())
    };
    evaluate(backend.as_mut(), first_epoch)?;
    let val_text = |epoch: usize| {
        let scores = scores.borrow();
        let v = scores.last().filter(|v| v.epoch == epoch);
        let acc = accuracy.borrow();
        let train = (acc.last().filter(|a| a.epoch == epoch))
            .map_or_else(String::new, |a| format!("  acc {:.4}", a.accuracy));
        let val = v.map_or_else(String::new, |v| {
            let acc = v
                .accuracy
                .map_or_else(String::new, |a| format!("  val_acc {a:.4}"));
            format!("  val_loss {:.6e}{acc}", v.loss)
        });
        format!("{train}{val}")
    };
    // A progress bar on an interactive terminal, unless only the summary or explicit log lines
    // were asked for; loss lines go above it.
    let interactive = !quiet
        && args.log_every.is_none()
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal();
    let progress = Progress::new(interactive, job.epochs - first_epoch);
    let mut history = match &args.history {
        Some(p) => {
            let columns = history::Columns {
                accuracy: classes,
                validation: val.is_some(),
            };
            Some(HistoryWriter::create(
                p,
                &device.name,
                first_epoch,
                columns,
            )?)
        }
        None => None,
    };
    let report = train::train_observed(
        &job,
        backend.as_mut(),
        train::Hooks {
            on_log: &mut |epoch, loss| {
                if !quiet {
                    let v = val_text(epoch);
                    progress.line(&format!("epoch {epoch:>6}  loss {loss:.6e}{v}"));
                }
            },
            on_chunk: &mut |backend, done, chunk| {
                if let Some(h) = &mut history {
                    let v = scores.borrow().last().copied();
                    let a = accuracy.borrow().last().copied();
                    h.append(done - chunk.len(), chunk, v, a);
                }
                let Some(&loss) = chunk.last().filter(|l| l.is_finite()) else {
                    return Ok(false); // diverged: the run ends here
                };
                progress.update(done - first_epoch, loss);
                if (job.log_every > 0 && done.is_multiple_of(job.log_every)) || done == job.epochs {
                    evaluate(backend, done)?;
                }
                if interrupted.load(Ordering::SeqCst) {
                    return Ok(true);
                }
                // A checkpoint that cannot be written mid-run (a full disk) is reported and the
                // run goes on: the previous one is still whole, and the last is tried at the end.
                if let (Some(path), true) = (&args.save, every > 0 && done % every == 0) {
                    if done < job.epochs {
                        if let Err(e) = checkpoint::save(path, &job, &backend.state()?, done) {
                            progress.line(&format!(
                                "warning: the checkpoint of epoch {done} was not written ({e}); \
                                 the previous one is kept"
                            ));
                        }
                    }
                }
                Ok(false)
            },
            every,
        },
    )?;
    progress.finish();
    // The checkpoint at the end, or where an interrupt stopped the run.
    let saved = match (&args.save, report.stopped) {
        (Some(path), _) => Some(path.clone()),
        (None, true) => Some(std::path::PathBuf::from(INTERRUPTED_CHECKPOINT)),
        (None, false) => None,
    };
    // Every output is tried, each one whole or not at all; the failures are reported together.
    let mut failed: Vec<Error> = Vec::new();
    if let (Some(path), None) = (&saved, report.diverged) {
        let state = backend.state()?;
        if let Err(e) = checkpoint::save(path, &job, &state, report.end_epoch()) {
            failed.push(e);
        }
    }

    let mut s = summary::Summary::new(device, &job, &report, setup_s, backend.stats());
    s.validation = scores.borrow().with_last();
    s.accuracy = accuracy.borrow().with_last();
    println!("{}", s.line());
    if let Some(p) = &s.profile {
        print!("{}", profile_table(p, job.steps_per_epoch()));
    }
    if let Some(v) = scores.borrow().last() {
        let acc = v
            .accuracy
            .map_or_else(String::new, |a| format!(", accuracy {a:.4}"));
        println!("held-out loss {:.6e}{acc} after {} epochs", v.loss, v.epoch);
    }
    if let Some(h) = history {
        if let Err(e) = h.finish(&s.validation, &s.accuracy) {
            failed.push(e);
        }
    }
    failed.extend(write_outputs(args, &s, &report));
    if !failed.is_empty() {
        let outputs = Error::Outputs(failed);
        if !report.stopped && report.diverged.is_none() {
            return Err(outputs);
        }
        // The interrupt's or the divergence's exit code and message stay those of the run.
        eprintln!("error: {outputs}");
    }
    if report.stopped {
        let saved = saved.map_or_else(String::new, |p| {
            format!(
                "checkpoint written to {} (continue with the same flags and --resume {})",
                p.display(),
                p.display()
            )
        });
        return Err(Error::Interrupted {
            epoch: report.end_epoch(),
            saved,
        });
    }
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

fn bench_command(args: &crate::cli::BenchArgs) -> Result<()> {
    use crate::bench::results::{compare_plot, compare_table, Results, Status};
    if let Some(crate::cli::BenchAction::Compare(c)) = &args.action {
        if let Some(p) = &c.plot {
            crate::io::check_writable(p)?;
        }
        let files = (c.files.iter())
            .map(|p| Results::load(p).map(|r| (p.clone(), r)))
            .collect::<Result<Vec<_>>>()?;
        print!("{}", compare_table(&files));
        if let Some(p) = &c.plot {
            compare_plot(p, &files)?;
            println!("plot written to {}", p.display());
        }
        return Ok(());
    }
    if let Some(p) = &args.out {
        crate::io::check_writable(p)?;
    }
    let gpu = args.gpu.options();
    let plan = crate::bench::Plan {
        quick: args.quick,
        devices: args.devices.clone(),
        layout: gpu.layout,
        limits: gpu.limits,
    };
    let r = crate::bench::run(&plan, false)?;
    for (d, shape, ratio) in crate::bench::tuned_over_naive(&r) {
        println!(
            "{}: tuned matmul at {shape} is {ratio:.1}x the naive kernel",
            r.devices[d].label()
        );
    }
    for row in r.rows.iter().filter(|row| row.case == "train/default") {
        if let Some(h) = row.host_overhead {
            println!(
                "{}: default job host overhead: {} submit(s) and {} readback(s) per 500 epochs, \
                 {:.1} µs encoding per epoch",
                r.devices[row.device].label(),
                h.submits_per_sample,
                h.readbacks_per_sample,
                h.encode_s_per_epoch * 1e6
            );
        }
    }
    if let Some(p) = &args.out {
        r.save(p)?;
        println!("results written to {}", p.display());
    }
    let failed = r.rows.iter().filter(|x| x.status == Status::Failed).count();
    let errors = r.rows.iter().filter(|x| x.status == Status::Error).count();
    let unusable = r.devices.iter().filter(|d| d.error.is_some()).count();
    if failed + errors + unusable > 0 {
        return Err(Error::Bench(format!(
            "bench: {failed} row(s) failed their parity check, {errors} could not run, \
             {unusable} device(s) could not be opened (see above)"
        )));
    }
    Ok(())
}

fn verify_command(args: &crate::cli::VerifyArgs) -> Result<()> {
    use crate::verify;
    if let Some(p) = &args.json {
        crate::io::check_writable(p)?;
    }
    let gpu = crate::cli::GpuArgs {
        layout: args.layout,
        limits: args.limits,
    }
    .options();
    let plan = verify::Plan {
        devices: args.devices.clone(),
        layout: gpu.layout,
        limits: gpu.limits,
        quick: args.quick,
    };
    let mut last = None;
    let report = verify::run(&plan, &mut |devices, check| {
        if last != Some(check.device) {
            last = Some(check.device);
            println!("\n{}", devices[check.device].label());
            println!("{}", verify::header());
        }
        println!("{}", verify::line(check));
    })?;
    let failed: Vec<_> = report.failed().collect();
    println!(
        "\n{} checks, {} passed, {} failed",
        report.checks.len(),
        report.checks.len() - failed.len(),
        failed.len()
    );
    if let Some(p) = &args.json {
        report.save(p)?;
        println!("results written to {}", p.display());
    }
    if failed.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = (failed.iter().take(5))
        .map(|c| format!("{} {} {} {}", c.kernel, c.variant, c.layout, c.shape))
        .collect();
    Err(Error::Verify(format!(
        "verify: {} check(s) failed: {}{}",
        failed.len(),
        named.join("; "),
        if failed.len() > 5 { "; ..." } else { "" }
    )))
}

fn tune_command(args: &crate::cli::TuneArgs) -> Result<()> {
    let mut job = Job::default();
    if let Some(l) = &args.layers {
        job.layers = job::parse_layers(l)?;
    }
    if let Some(b) = &args.batch {
        job.batch = job::parse_count("--batch", b)?;
    }
    let mut shapes = crate::bench::products(&job);
    let squares = if args.shapes.is_empty() {
        vec![(1024, 1024, 1024)]
    } else {
        (args.shapes.iter())
            .map(|s| parse_shape(s))
            .collect::<Result<Vec<_>>>()?
    };
    shapes.extend(squares.into_iter().map(|d| ((false, false), d)));
    let choice = DeviceChoice::parse(&args.device)?;
    if choice == DeviceChoice::Cpu {
        return Err(Error::arg(
            "--device",
            "the CPU path has no kernel variants to tune; pick a GPU adapter",
        ));
    }
    let entry = context::choose(&choice, context::list_adapters())?.ok_or_else(|| {
        Error::Device(
            "gpu-train tune: no GPU adapter to tune (see `gpu-train devices`)".to_string(),
        )
    })?;
    let gpu = args.gpu.options();
    let ctx = GpuContext::open(&entry.adapter, gpu.limits)?;
    // `--layout auto`: every layout the adapter runs, and the faster one for training cached.
    let layouts: Vec<Layout> = match gpu.layout {
        Some(l) => {
            ctx.kernels.layout(l)?;
            vec![l]
        }
        None => (Layout::ALL.into_iter())
            .filter(|&l| ctx.kernels.supports(l))
            .collect(),
    };
    crate::bench::tune_command(&ctx, &layouts, &job, &shapes, 0.1, gpu.layout.is_none())
}

/// `MxNxK`, three positive sizes.
fn parse_shape(s: &str) -> Result<(usize, usize, usize)> {
    let bad = || {
        Error::arg(
            "--shape",
            format!("`{s}` is not MxNxK (e.g. 1024x1024x1024)"),
        )
    };
    let v: Vec<usize> = (s.split(['x', 'X']))
        .map(|p| p.trim().parse::<usize>().ok().filter(|&n| n > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    match v[..] {
        [m, n, k] => Ok((m, n, k)),
        _ => Err(bad()),
    }
}

/// A checkpoint's net and parameters, for `eval` and `predict`.
fn load_net(path: &std::path::Path) -> Result<(Job, crate::init::Params)> {
    let job = checkpoint::job_of(path)?;
    let (state, _) = checkpoint::load(path, &job)?;
    Ok((job, state.params))
}

/// Data whose width must be the net's (`what`: inputs or outputs).
fn check_width(flag: &'static str, m: &Matrix, want: usize, what: &str) -> Result<()> {
    if m.cols == want {
        return Ok(());
    }
    Err(Error::arg(
        flag,
        format!("has {} columns per row; the net has {want} {what}", m.cols),
    ))
}

/// `gpu-train eval`: the loss (and accuracy) of a checkpoint on a dataset.
fn eval_command(args: &EvalArgs) -> Result<()> {
    let (job, params) = load_net(&args.checkpoint)?;
    let Some((x, y, _)) = load_data(&args.dataset, Some(job.layers[job.depth()]), job.loss)? else {
        return Err(Error::arg(
            "--x",
            "give the dataset as --x FILE.npy --y FILE.npy, or as --data FILE.csv --targets K",
        ));
    };
    let depth = job.depth();
    check_width("--x", &x, job.layers[0], "inputs")?;
    check_width("--y", &y, job.layers[depth], "outputs")?;
    let s = crate::eval::score(&job, &params, &x, &y);
    let acc = s
        .accuracy
        .map_or_else(String::new, |a| format!(" | accuracy {a:.4}"));
    println!(
        "rows {} | loss {:.6e} ({}){acc}",
        x.rows,
        s.loss,
        job.loss.describe()
    );
    Ok(())
}

/// `gpu-train predict`: a checkpoint's outputs for the rows of --x, as .npy.
fn predict_command(args: &PredictArgs) -> Result<()> {
    const KINDS: [&str; 3] = ["outputs", "probabilities", "classes"];
    let kind = args.kind.as_deref().unwrap_or("outputs");
    let kind = kind.trim().to_ascii_lowercase();
    if !KINDS.contains(&kind.as_str()) {
        return Err(Error::arg(
            "--as",
            format!("unknown value `{kind}`; valid: {}", KINDS.join(", ")),
        ));
    }
    crate::io::check_writable(&args.output)?;
    let (job, params) = load_net(&args.checkpoint)?;
    let x = npy::read_matrix(&args.x)?;
    data::check_finite(&args.x, &x)?;
    check_width("--x", &x, job.layers[0], "inputs")?;
    let pred = crate::eval::predict(&job, &params, &x);
    match kind.as_str() {
        "outputs" => npy::write_matrix(&args.output, &pred)?,
        "probabilities" => npy::write_matrix(&args.output, &crate::eval::softmax_rows(&pred))?,
        "classes" => {
            let classes: Vec<usize> = pred
                .data
                .chunks(pred.cols)
                .map(crate::eval::argmax)
                .collect();
            npy::write_classes(&args.output, &classes)?;
            println!(
                "wrote {} ({} class indices)",
                args.output.display(),
                classes.len()
            );
            return Ok(());
        }
        _ => unreachable!("checked above"),
    }
    println!(
        "wrote {} ({} x {})",
        args.output.display(),
        pred.rows,
        pred.cols
    );
    Ok(())
}

/// `gpu-train plot`: every history's curve in one plot, labelled by file name (and device).
fn plot_command(args: &PlotArgs) -> Result<()> {
    crate::io::check_writable(&args.output)?;
    let runs = (args.histories.iter())
        .map(|p| History::read(p).map(|h| (p, h)))
        .collect::<Result<Vec<_>>>()?;
    let labelled: Vec<(String, &History)> = (runs.iter())
        .map(|(p, h)| {
            let stem = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            let label = if h.device.is_empty() || h.device == stem {
                stem
            } else {
                format!("{stem} ({})", h.device)
            };
            (label, h)
        })
        .collect();
    let title = args.title.as_deref().unwrap_or("loss");
    history::plot(&args.output, title, &labelled)?;
    println!("wrote {}", args.output.display());
    Ok(())
}

/// Where an interrupted run without --save leaves its checkpoint.
pub const INTERRUPTED_CHECKPOINT: &str = "gpu-train-interrupted.safetensors";

/// Set by SIGINT or SIGTERM: the training loop stops after the chunk in flight and the run writes
/// its files. A second signal exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let installed = ctrlc::set_handler(move || {
        if set.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("interrupted: finishing the epochs in flight, then writing the files (again to quit at once)");
    });
    if let Err(e) = installed {
        log::warn!(
            "cannot catch Ctrl-C ({e}): an interrupt will stop the run without a checkpoint"
        );
    }
    flag
}

/// An indicatif progress bar (epochs, loss, epochs/s, ETA) for runs that take more than about a
/// second, shown only when asked for (an interactive terminal).
struct Progress {
    enabled: bool,
    epochs: usize,
    start: Instant,
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
}

impl Progress {
    fn new(enabled: bool, epochs: usize) -> Self {
        Progress {
            enabled,
            epochs,
            start: Instant::now(),
            bar: std::cell::RefCell::new(None),
        }
    }

    /// A log line, above the bar if there is one.
    fn line(&self, text: &str) {
        match &*self.bar.borrow() {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    fn update(&self, done: usize, loss: f32) {
        if !self.enabled || done >= self.epochs {
            return;
        }
        let mut bar = self.bar.borrow_mut();
        if bar.is_none() {
            // Show it once the run looks like it will take more than a second in all.
            let elapsed = self.start.elapsed().as_secs_f64();
            if elapsed * self.epochs as f64 / done.max(1) as f64 <= 1.0 {
                return;
            }
            let b = indicatif::ProgressBar::new(self.epochs as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} epochs  {msg}  ETA {eta}",
            );
            if let Ok(style) = style {
                b.set_style(style);
            }
            *bar = Some(b);
        }
        if let Some(b) = &*bar {
            b.set_position(done as u64);
            let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            b.set_message(format!("loss {loss:.4e}  {rate:.1} epochs/s"));
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
    }
}

/// The one line every run ends with.
/// The `--profile` breakdown: one line per kernel (variant and shape), slowest first.
pub fn profile_table(p: &summary::Profile, steps_per_epoch: usize) -> String {
    let total: f64 = p.kernels.iter().map(|k| k.seconds).sum();
    let mut rows = p.kernels.clone();
    rows.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let width = rows
        .iter()
        .map(|k| k.name.chars().count())
        .max()
        .unwrap_or(6);
    let mut s = format!(
        "profile: GPU timestamps over {} steps ({:.1} epochs), {:.3} ms of kernels per step\n",
        p.steps_timed,
        p.steps_timed as f64 / steps_per_epoch.max(1) as f64,
        total / p.steps_timed.max(1) as f64 * 1e3
    );
    s += &format!(
        "  {:<width$}  {:>10}  {:>8}  {:>11}  {:>10}  {:>6}\n",
        "kernel", "workgroups", "calls", "total ms", "mean µs", "share"
    );
    for k in rows {
        s += &format!(
            "  {:<width$}  {:>10}  {:>8}  {:>11.3}  {:>10.1}  {:>5.1}%\n",
            k.name,
            k.workgroups,
            k.calls,
            k.seconds * 1e3,
            k.seconds / k.calls.max(1) as f64 * 1e6,
            100.0 * k.seconds / total.max(1e-30)
        );
    }
    s
}

/// Write the outputs of the end of a run besides the checkpoint and the history (written as the
/// run goes): each is tried, and the failures returned.
fn write_outputs(args: &TrainArgs, s: &summary::Summary, report: &Report) -> Vec<Error> {
    let mut failed = Vec::new();
    if let Some(p) = &args.plot {
        let mut history = History::new(&s.device.name, report.first_epoch, report.losses.clone());
        history.loss_stride = report.loss_stride;
        history.validation = s.validation.clone();
        history.accuracy = s.accuracy.clone();
        let title = format!("gpu-train on {}", s.device.name);
        failed.extend(history::plot(p, &title, &[(s.device.name.clone(), &history)]).err());
    }
    if let Some(p) = &args.summary_json {
        failed.extend(summary::write_summary(p, s).err());
    }
    if let Some(dir) = &args.save_final {
        failed.extend(npy::save_params(dir, &report.params).err());
    }
    failed
}
