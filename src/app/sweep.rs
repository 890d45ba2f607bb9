//! `gpu-train sweep`: train every variant of the flags' lists together and write, into `--out`,
//! the index `sweep.json`, every variant's `<k>/summary.json` (and `<k>/model.safetensors` with
//! `--save`) and `curves.svg`; print one table.

use super::observer::{interrupt_flag, Progress};
use super::train::{describe_net, validation};
use crate::cli::SweepArgs;
use crate::cpu::CpuModels;
use crate::error::{Error, Result};
use crate::gpu::GpuModels;
use crate::io::history::{self, History};
use crate::io::{checkpoint, summary};
use crate::job::Job;
use crate::monitor::Monitor;
use crate::sweep::{Grid, Models, SweepSession};
use crate::train::Outcome;
use crate::wait::block_on;
use serde_json::json;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

pub(super) fn sweep_command(args: &SweepArgs) -> Result<()> {
    let grid = Grid::new(args.job.lists(), args.max_variants)?;
    check_out(&args.out, args.force)?;
    let base = args.job.base_spec();
    let data = super::load_data(&args.job.dataset, base.classes(), base.job()?.loss)?;
    let mut jobs = Vec::with_capacity(grid.len());
    let mut states = Vec::with_capacity(grid.len());
    let mut vals = Vec::with_capacity(grid.len());
    let available = crate::sweep::available_memory();
    for k in 0..grid.len() {
        let spec = grid.spec(&base, k);
        let (mut job, mut state) = super::resolve_with(&args.job, spec, data.clone())?;
        if k == 0 {
            crate::sweep::check_memory(&job, grid.len(), available)?;
        }
        vals.push(validation(&args.job, &mut job, &mut state)?);
        jobs.push(job);
        states.push(state);
    }
    let setup = Instant::now();
    let tune = (args.run.tune.into(), args.run.tune_budget);
    let gpu = args.run.gpu.options();
    let mut models = open_models(&args.run.device, gpu, tune, &jobs, &states)?;
    let setup_s = setup.elapsed().as_secs_f64();
    let device = models.describe();
    if !args.quiet {
        println!(
            "{} variants, varying {}, of {} (variant 0's values) on {} ({}, {})",
            grid.len(),
            grid.describe(),
            describe_net(&jobs[0]),
            device.name,
            device.device_type,
            device.backend
        );
        println!("{}", models.batching());
    }
    // Nothing is written before the sweep starts training.
    crate::io::ensure_dir(&args.out)?;
    let mut monitors: Vec<Monitor> = (jobs.iter().zip(&states).zip(vals))
        .map(|((j, s), v)| Monitor::new(j, s, v))
        .collect();
    let outcomes = run(args, &grid, &jobs, models.as_mut(), &mut monitors)?;
    let mut failed: Vec<Error> = Vec::new();
    let mut rows = Vec::with_capacity(grid.len());
    for (k, outcome) in outcomes.iter().enumerate() {
        let dir = args.out.join(k.to_string());
        let stats = models.stats_of(k);
        let mut s = summary::Summary::new(device.clone(), &jobs[k], outcome, setup_s, stats);
        monitors[k].fill(&mut s);
        let written = (crate::io::ensure_dir(&dir))
            .and_then(|()| summary::write_summary(&dir.join("summary.json"), &s));
        failed.extend(written.err());
        if args.save && outcome.diverged.is_none() {
            let state = models.model(k).state()?;
            let path = dir.join("model.safetensors");
            failed.extend(checkpoint::save(&path, &jobs[k], &state, outcome.end_epoch()).err());
        }
        rows.push(Row {
            label: grid.label(k),
            values: grid.varied(k),
            summary: s,
            outcome,
        });
    }
    print!("{}", table(&rows));
    let train_s = outcomes.first().map_or(0.0, |o| o.train_s);
    let timing = (setup_s, train_s, models.batching());
    failed.extend(write_index(&args.out, &device, timing, &rows).err());
    failed.extend(write_curves(&args.out.join("curves.svg"), &device.name, &rows).err());
    let stopped = outcomes.iter().any(|o| o.stopped);
    let finished = outcomes.iter().filter(|o| o.diverged.is_none()).count();
    if !failed.is_empty() {
        let outputs = Error::Outputs(failed);
        if !stopped && finished > 0 {
            return Err(outputs);
        }
        eprintln!("error: {outputs}");
    }
    if stopped {
        return Err(Error::Interrupted {
            epoch: outcomes.iter().map(Outcome::end_epoch).max().unwrap_or(0),
            saved: format!("what finished so far is written to {}", args.out.display()),
        });
    }
    match finished {
        0 => Err(Error::SweepDiverged {
            variants: outcomes.len(),
        }),
        _ => Ok(()),
    }
}

/// The models of a sweep of `jobs` from `states` on the device `choice` asks for (see
/// [`super::open_backend`]): on a GPU, every model's dispatches in one submission per chunk
/// ([`GpuModels`]); on the CPU, one model to a thread of the team ([`CpuModels`]).
pub fn open_models(
    choice: &crate::gpu::DeviceChoice,
    gpu: crate::gpu::GpuOptions,
    tune: (crate::gpu::tune::TuneMode, f64),
    jobs: &[Job],
    states: &[crate::init::HostState],
) -> Result<Box<dyn Models>> {
    Ok(match super::open_gpu(choice, gpu, tune, &jobs[0])? {
        Some((ctx, layout)) => Box::new(GpuModels::new(ctx, jobs, states, layout)?),
        None => Box::new(CpuModels::new(jobs, states)),
    })
}

/// An existing `--out` must be a directory, and empty unless `--force`.
fn check_out(out: &Path, force: bool) -> Result<()> {
    if !out.exists() {
        return Ok(());
    }
    if !out.is_dir() {
        return Err(Error::arg(
            "--out",
            format!("{} exists and is not a directory", out.display()),
        ));
    }
    let entries = std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .count();
    if entries > 0 && !force {
        return Err(Error::arg(
            "--out",
            format!(
                "{} already holds {entries} entries: give a new directory, or --force to write \
                 into it",
                out.display()
            ),
        ));
    }
    Ok(())
}

/// Train every variant: log lines at each log point (the best loss so far and how many
/// diverged), a line when a variant diverges, the progress bar over models·epochs, the held-out
/// scores where due, Ctrl-C.
fn run(
    args: &SweepArgs,
    grid: &Grid,
    jobs: &[Job],
    models: &mut dyn Models,
    monitors: &mut [Monitor],
) -> Result<Vec<Outcome>> {
    let job = &jobs[0];
    let interactive = !args.quiet
        && args.job.log_every.is_none()
        && std::io::stdout().is_terminal()
        && std::io::stderr().is_terminal();
    let progress = Progress::new(interactive, jobs.len() * job.epochs, "model·epochs");
    let interrupted = interrupt_flag();
    let out = block_on(async {
        for (m, k) in monitors.iter_mut().zip(0..) {
            m.measure(models.model(k), 0).await?;
        }
        let mut session = SweepSession::new(jobs, models, 0);
        let mut model_epochs = 0;
        while let Some(chunks) = session.next_chunk().await? {
            let done = session.done();
            for (k, chunk) in chunks.iter().enumerate() {
                let Some(chunk) = chunk else { continue };
                model_epochs += chunk.losses.len();
                match session.diverged(k) {
                    Some((epoch, loss)) if !args.quiet => progress.line(&format!(
                        "variant {k} ({}) diverged at epoch {epoch} (loss {loss})",
                        grid.label(k)
                    )),
                    Some(_) => {}
                    None if monitors[k].due(done) => {
                        monitors[k].measure(session.models().model(k), done).await?;
                    }
                    None => {}
                }
            }
            // The best loss of the variants at each log point of the chunk.
            let best_at = |epoch: usize| {
                (chunks.iter().enumerate())
                    .filter_map(|(k, c)| {
                        let c = c.as_ref()?;
                        let l = *c.losses.get(epoch.checked_sub(c.first)?)?;
                        l.is_finite().then_some((l, k))
                    })
                    .min_by(|a, b| a.0.total_cmp(&b.0))
            };
            let first = chunks.iter().flatten().next();
            let log_epochs: Vec<usize> = first.map_or(Vec::new(), |c| {
                c.log_points(job.log_every).map(|(e, _)| e).collect()
            });
            let training = (0..jobs.len()).filter(|&k| session.diverged(k).is_none());
            let training = training.count();
            for epoch in log_epochs {
                if let (Some((loss, k)), false) = (best_at(epoch), args.quiet) {
                    progress.line(&format!(
                        "epoch {epoch:>6}  {training} training  best loss {loss:.6e} ({})",
                        grid.label(k)
                    ));
                }
            }
            if let Some((loss, _)) = best_at(done - 1) {
                progress.update(model_epochs, loss);
            }
            if interrupted.load(Ordering::SeqCst) {
                session.stop();
            }
        }
        session.finish().await
    });
    progress.finish();
    out
}

/// One variant's results.
struct Row<'a> {
    label: String,
    values: Vec<crate::sweep::Value>,
    summary: summary::Summary,
    outcome: &'a Outcome,
}

impl Row<'_> {
    fn held_out(&self) -> Option<&crate::io::history::ValPoint> {
        self.summary.validation.last()
    }

    fn accuracy(&self) -> Option<f64> {
        self.held_out()
            .and_then(|v| v.accuracy)
            .map(f64::from)
            .or_else(|| self.summary.accuracy.last().map(|a| a.accuracy as f64))
    }
}

/// The table on stdout: the varied values, the final loss, the held-out loss and accuracy where
/// scored, the epoch a variant diverged at.
fn table(rows: &[Row]) -> String {
    let Some(first) = rows.first() else {
        return String::new();
    };
    let names: Vec<String> = first.values.iter().map(|v| v.name()).collect();
    let mut head: Vec<String> = vec!["#".into()];
    head.extend(names.iter().cloned());
    let scored = rows.iter().any(|r| r.held_out().is_some());
    // The accuracy of the held-out rows where there are some, else of the training rows.
    let accuracy = if scored {
        "held-out accuracy"
    } else {
        "accuracy"
    };
    head.extend(["final loss", "held-out loss", accuracy, "diverged at"].map(String::from));
    let classes = rows.iter().any(|r| r.accuracy().is_some());
    let cells: Vec<Vec<String>> = (rows.iter().enumerate())
        .map(|(k, r)| {
            let mut c = vec![k.to_string()];
            c.extend(r.values.iter().map(|v| v.text()));
            c.push(
                r.outcome
                    .final_loss()
                    .map_or("-".into(), |l| format!("{l:.6e}")),
            );
            c.push(
                r.held_out()
                    .map_or("-".into(), |v| format!("{:.6e}", v.loss)),
            );
            c.push(r.accuracy().map_or("-".into(), |a| format!("{a:.4}")));
            c.push(
                r.outcome
                    .diverged
                    .map_or("-".into(), |(e, _)| e.to_string()),
            );
            c
        })
        .collect();
    // Columns with nothing to say are left out.
    let n = head.len();
    let keep: Vec<bool> = (0..n)
        .map(|i| match i {
            _ if i == n - 3 => scored,
            _ if i == n - 2 => classes,
            _ if i == n - 1 => rows.iter().any(|r| r.outcome.diverged.is_some()),
            _ => true,
        })
        .collect();
    let width: Vec<usize> = (0..n)
        .map(|i| {
            let w = cells
                .iter()
                .map(|c| c[i].chars().count())
                .max()
                .unwrap_or(0);
            w.max(head[i].chars().count())
        })
        .collect();
    let line = |c: &[String]| {
        let parts: Vec<String> = (0..n)
            .filter(|&i| keep[i])
            .map(|i| format!("{:>w$}", c[i], w = width[i]))
            .collect();
        parts.join("  ") + "\n"
    };
    let mut s = line(&head);
    for c in &cells {
        s += &line(c);
    }
    s
}

/// `sweep.json`: the device and the sweep's times, then each variant's values, final figures and
/// the path of its summary (relative to the directory).
fn write_index(
    out: &Path,
    device: &summary::DeviceInfo,
    (setup_s, train_s, batching): (f64, f64, String),
    rows: &[Row],
) -> Result<()> {
    let variants: Vec<serde_json::Value> = (rows.iter().enumerate())
        .map(|(k, r)| {
            let values: serde_json::Map<String, serde_json::Value> =
                (r.values.iter()).map(|v| (v.name(), v.json())).collect();
            json!({
                "index": k,
                "label": r.label,
                "values": values,
                "epochs_run": r.outcome.epochs_run,
                "final_loss": r.outcome.final_loss(),
                "validation_loss": r.held_out().map(|v| v.loss),
                "accuracy": r.accuracy(),
                "diverged_at": r.outcome.diverged.map(|(e, _)| e),
                "summary": format!("{k}/summary.json"),
            })
        })
        .collect();
    let model_epochs: usize = rows.iter().map(|r| r.outcome.epochs_run).sum();
    let index = json!({
        "tool": "gpu-train",
        "version": env!("CARGO_PKG_VERSION"),
        "device": device,
        "variants_count": rows.len(),
        "setup_s": setup_s,
        "train_s": train_s,
        "model_epochs_per_s": model_epochs as f64 / train_s.max(1e-12),
        "batching": batching,
        "variants": variants,
    });
    let path: PathBuf = out.join("sweep.json");
    let text = serde_json::to_vec_pretty(&index).map_err(|e| Error::io(&path, e.into()))?;
    crate::io::atomic_write(&path, |w| {
        w.write_all(&text)?;
        w.write_all(b"\n")
    })
}

/// `curves.svg`: every variant's loss curve, labelled by its values, a diverged one's label
/// saying where.
fn write_curves(path: &Path, device: &str, rows: &[Row]) -> Result<()> {
    let histories: Vec<History> = (rows.iter())
        .map(|r| {
            let mut h = History::new(device, r.outcome.first_epoch, r.outcome.losses.clone());
            h.loss_stride = r.outcome.loss_stride;
            h.validation = r.summary.validation.clone();
            h
        })
        .collect();
    let runs: Vec<(String, &History)> = (rows.iter().zip(&histories))
        .map(|(r, h)| {
            let label = match r.outcome.diverged {
                Some((e, _)) => format!("{} (diverged at {e})", r.label),
                None => r.label.clone(),
            };
            (label, h)
        })
        .collect();
    let title = format!("gpu-train sweep of {} variants on {device}", rows.len());
    history::plot(path, &title, &runs)
}
