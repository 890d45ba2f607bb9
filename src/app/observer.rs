//! The command line's work between a training session's chunks: the log lines (with the
//! monitor's scores), the progress bar, the history file as the run goes, the checkpoints every
//! `--checkpoint-every` epochs, and the interrupt that stops the run.

use crate::backend::Backend;
use crate::cli::TrainArgs;
use crate::error::Result;
use crate::io::checkpoint;
use crate::io::history::{self, HistoryWriter};
use crate::job::Job;
use crate::monitor::Monitor;
use crate::train::Chunk;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What one `gpu-train` training run does after each chunk.
pub(super) struct Observer<'a> {
    job: &'a Job,
    quiet: bool,
    first_epoch: usize,
    progress: Progress,
    history: Option<HistoryWriter>,
    /// `--save` and `--checkpoint-every` (0: only at the end, which is not this one's to write).
    checkpoint: Option<(&'a Path, usize)>,
    interrupted: Arc<AtomicBool>,
}

impl<'a> Observer<'a> {
    /// The observer of `job` on `device` from `first_epoch`, as `args` ask: it creates the
    /// history file and catches Ctrl-C.
    pub(super) fn new(
        args: &'a TrainArgs,
        job: &'a Job,
        device: &str,
        first_epoch: usize,
        monitor: &Monitor<'_>,
        every: usize,
    ) -> Result<Self> {
        // A progress bar on an interactive terminal, unless only the summary or explicit log
        // lines were asked for; loss lines go above it.
        let interactive = !args.out.quiet
            && args.job.log_every.is_none()
            && std::io::stdout().is_terminal()
            && std::io::stderr().is_terminal();
        let history = match &args.out.history {
            Some(p) => {
                let columns = history::Columns {
                    accuracy: monitor.classes(),
                    validation: monitor.validates(),
                };
                Some(HistoryWriter::create(p, device, first_epoch, columns)?)
            }
            None => None,
        };
        Ok(Observer {
            job,
            quiet: args.out.quiet,
            first_epoch,
            progress: Progress::new(interactive, job.epochs - first_epoch, "epochs"),
            history,
            checkpoint: args.out.save.as_deref().map(|p| (p, every)),
            interrupted: interrupt_flag(),
        })
    }

    /// After `chunk`: print its log lines, append it to the history, move the bar, score the
    /// parameters where due, write the checkpoint where due. Returns whether to stop (an
    /// interrupt).
    pub(super) async fn chunk(
        &mut self,
        chunk: &Chunk,
        monitor: &mut Monitor<'_>,
        backend: &mut dyn Backend,
    ) -> Result<bool> {
        if !self.quiet {
            for (epoch, loss) in chunk.log_points(self.job.log_every) {
                let scores = monitor.text(epoch);
                (self.progress).line(&format!("epoch {epoch:>6}  loss {loss:.6e}{scores}"));
            }
        }
        if let Some(h) = &mut self.history {
            h.append(
                chunk.first,
                &chunk.losses,
                monitor.last_score(),
                monitor.last_accuracy(),
            );
        }
        let Some(&loss) = chunk.losses.last().filter(|l| l.is_finite()) else {
            return Ok(false); // diverged: the session ends here
        };
        let done = chunk.done();
        self.progress.update(done - self.first_epoch, loss);
        if monitor.due(done) {
            monitor.measure(backend, done).await?;
        }
        if self.interrupted.load(Ordering::SeqCst) {
            return Ok(true);
        }
        // A checkpoint that cannot be written mid-run (a full disk) is reported and the run goes
        // on: the previous one is still whole, and the last is tried at the end.
        if let Some((path, every)) = self.checkpoint {
            if every > 0 && done.is_multiple_of(every) && done < self.job.epochs {
                let state = backend.state_async().await?;
                if let Err(e) = checkpoint::save(path, self.job, &state, done) {
                    self.progress.line(&format!(
                        "warning: the checkpoint of epoch {done} was not written ({e}); the \
                         previous one is kept"
                    ));
                }
            }
        }
        Ok(false)
    }

    /// The run is over: clear the bar; the history file, to finish with the run's scores.
    pub(super) fn finish(self) -> Option<HistoryWriter> {
        self.progress.finish();
        self.history
    }
}

/// Set by SIGINT or SIGTERM: the training loop stops after the chunk in flight and the run writes
/// its files. A second signal exits at once.
pub(super) fn interrupt_flag() -> Arc<AtomicBool> {
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
/// second, shown only when asked for (an interactive terminal); a sweep's counts models·epochs.
pub(super) struct Progress {
    enabled: bool,
    epochs: usize,
    unit: &'static str,
    start: Instant,
    bar: std::cell::RefCell<Option<indicatif::ProgressBar>>,
}

impl Progress {
    pub(super) fn new(enabled: bool, epochs: usize, unit: &'static str) -> Self {
        Progress {
            enabled,
            epochs,
            unit,
            start: Instant::now(),
            bar: std::cell::RefCell::new(None),
        }
    }

    /// A log line, above the bar if there is one.
    pub(super) fn line(&self, text: &str) {
        match &*self.bar.borrow() {
            Some(bar) => bar.suspend(|| println!("{text}")),
            None => println!("{text}"),
        }
    }

    pub(super) fn update(&self, done: usize, loss: f32) {
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
            let style = indicatif::ProgressStyle::with_template(&format!(
                "{{bar:40}} {{pos}}/{{len}} {}  {{msg}}  ETA {{eta}}",
                self.unit
            ));
            if let Ok(style) = style {
                b.set_style(style);
            }
            *bar = Some(b);
        }
        if let Some(b) = &*bar {
            b.set_position(done as u64);
            let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
            let unit = self.unit;
            b.set_message(format!("loss {loss:.4e}  {rate:.1} {unit}/s"));
        }
    }

    pub(super) fn finish(&self) {
        if let Some(b) = self.bar.borrow_mut().take() {
            b.finish_and_clear();
        }
    }
}
