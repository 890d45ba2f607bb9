//! `gpu-train` (no subcommand): train the job the flags describe and write what they ask for.

use super::observer::Observer;
use crate::cli::{JobArgs, TrainArgs};
use crate::error::{Error, Result};
use crate::init::{HostState, Matrix};
use crate::io::history::{self, History};
use crate::io::{checkpoint, data, npy, summary};
use crate::job::{InitScheme, Job};
use crate::monitor::Monitor;
use crate::train::{Outcome, Session};
use crate::wait::block_on;
use std::time::Instant;

/// Where an interrupted run without --save leaves its checkpoint.
pub const INTERRUPTED_CHECKPOINT: &str = "gpu-train-interrupted.safetensors";

pub(super) fn train_command(args: &TrainArgs) -> Result<()> {
    let (mut job, mut state) = super::resolve(&args.job, args.job.spec()?)?;
    let val = validation(&args.job, &mut job, &mut state)?;
    let (job, state) = (job, state);
    prepare_outputs(args, &state)?;
    // A checkpoint to continue from is checked against the flags before anything is set up.
    let resumed = (args.out.resume.as_deref())
        .map(|path| checkpoint::resume(path, &job))
        .transpose()?;
    let every = match &args.out.checkpoint_every {
        Some(n) if args.out.save.is_none() => {
            return Err(Error::arg(
                "--checkpoint-every",
                format!("`{n}` needs --save FILE, the checkpoint to write"),
            ))
        }
        Some(n) => *n,
        None => 0,
    };
    let setup = Instant::now();
    let tune = (args.run.tune.into(), args.run.tune_budget);
    let mut backend =
        super::open_backend(&args.run.device, args.run.gpu.options(), tune, &job, &state)?;
    let setup_s = setup.elapsed().as_secs_f64();
    let device = backend.describe();
    if !args.out.quiet {
        println!(
            "{} on {} ({}, {})",
            describe_net(&job),
            device.name,
            device.device_type,
            device.backend
        );
    }
    if args.out.profile {
        if let Err(why) = backend.enable_profiling() {
            eprintln!("profile: {why}; wall-clock times only");
        }
    }
    let first_epoch = match resumed {
        Some((state, epoch)) => {
            backend.restore(&state)?;
            epoch
        }
        None => 0,
    };
    let mut monitor = Monitor::new(&job, &state, val);
    let mut observer = Observer::new(args, &job, &device.name, first_epoch, &monitor, every)?;
    let report = block_on(async {
        monitor.measure(backend.as_mut(), first_epoch).await?;
        let mut session = Session::new(&job, backend.as_mut(), every);
        while let Some(chunk) = session.next_chunk().await? {
            if observer
                .chunk(&chunk, &mut monitor, session.backend())
                .await?
            {
                session.stop();
            }
        }
        session.finish().await
    })?;
    let history = observer.finish();
    // The checkpoint at the end, or where an interrupt stopped the run.
    let saved = match (&args.out.save, report.stopped) {
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
    monitor.fill(&mut s);
    println!("{}", s.line());
    if let Some(p) = &s.profile {
        print!("{}", profile_table(p, job.steps_per_epoch()));
    }
    if let Some(v) = monitor.last_score() {
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

/// Fail on an unwritable output before training, not after; write `--save-init`.
fn prepare_outputs(args: &TrainArgs, state: &HostState) -> Result<()> {
    for p in [
        &args.out.history,
        &args.out.summary_json,
        &args.out.plot,
        &args.out.save,
    ]
    .into_iter()
    .flatten()
    {
        crate::io::check_writable(p)?;
    }
    for dir in [&args.out.save_init, &args.out.save_final]
        .into_iter()
        .flatten()
    {
        crate::io::ensure_dir(dir)?;
    }
    if let Some(dir) = &args.out.save_init {
        npy::save_state(dir, state)?;
    }
    Ok(())
}

pub(super) fn describe_net(job: &Job) -> String {
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
pub(super) fn validation(
    args: &JobArgs,
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
        Some(f) => Some(*f),
    };
    if let Some((x, y)) = files {
        super::check_width("--val-x", &x, job.layers[0], "inputs")?;
        super::check_width("--val-y", &y, job.layers[job.depth()], "outputs")?;
        return Ok(Some((x, y)));
    }
    let Some(fraction) = fraction else {
        return Ok(None);
    };
    let batch_given = args.batch.is_some();
    let val = crate::eval::hold_out(job, state, fraction, batch_given, "--val-split")?;
    Ok(Some(val))
}

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
fn write_outputs(args: &TrainArgs, s: &summary::Summary, report: &Outcome) -> Vec<Error> {
    let mut failed = Vec::new();
    if let Some(p) = &args.out.plot {
        let mut history = History::new(&s.device.name, report.first_epoch, report.losses.clone());
        history.loss_stride = report.loss_stride;
        history.validation = s.validation.clone();
        history.accuracy = s.accuracy.clone();
        let title = format!("gpu-train on {}", s.device.name);
        failed.extend(history::plot(p, &title, &[(s.device.name.clone(), &history)]).err());
    }
    if let Some(p) = &args.out.summary_json {
        failed.extend(summary::write_summary(p, s).err());
    }
    if let Some(dir) = &args.out.save_final {
        failed.extend(npy::save_params(dir, &report.params).err());
    }
    failed
}
