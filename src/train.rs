//! The training loop, written once above the [`Backend`] trait: chunks of epochs between log
//! points (and checkpoints), the divergence check, timing.

use crate::backend::Backend;
use crate::error::Result;
use crate::init::Params;
use crate::job::Job;
use crate::thinned::Thinned;
use std::time::Instant;

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The epoch the run started at (0, or a checkpoint's epoch when resumed).
    pub first_epoch: usize,
    /// The loss of every epoch run (up to and including a non-finite one) while the run is at
    /// most [`crate::thinned::CAP`] epochs long; past that, evenly thinned: `losses[i]` is the loss of
    /// epoch `first_epoch + i * loss_stride`.
    pub losses: Vec<f32>,
    /// 1, or the spacing in epochs of `losses` in a longer run (a power of two).
    pub loss_stride: usize,
    /// Epochs run.
    pub epochs_run: usize,
    /// The loss of the last epoch run.
    pub last_loss: Option<f32>,
    /// Seconds from the first epoch to the last loss read back.
    pub train_s: f64,
    /// `(epoch, loss)` where the loss first became NaN or infinite.
    pub diverged: Option<(usize, f32)>,
    /// Whether `on_chunk` asked to stop before the last epoch.
    pub stopped: bool,
    /// The weights and biases at the end.
    pub params: Params,
}

impl Report {
    pub fn final_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// The epoch after the last one run.
    pub fn end_epoch(&self) -> usize {
        self.first_epoch + self.epochs_run
    }
}

/// Train `job.epochs` epochs on `backend`, calling `on_log(epoch, loss)` for every `log_every`-th
/// epoch as soon as its loss is back on the host. Stops at the first non-finite loss.
pub fn train(
    job: &Job,
    backend: &mut dyn Backend,
    mut on_log: impl FnMut(usize, f32),
) -> Result<Report> {
    train_observed(
        job,
        backend,
        Hooks {
            on_log: &mut on_log,
            on_chunk: &mut |_, _, _| Ok(false),
            every: 0,
        },
    )
}

/// The after-chunk hook of [`Hooks`].
pub type OnChunk<'a> = dyn FnMut(&mut dyn Backend, usize, &[f32]) -> Result<bool> + 'a;

/// What [`train_observed`] calls back.
pub struct Hooks<'a> {
    /// `(epoch, loss)` of every `log_every`-th epoch.
    pub on_log: &'a mut dyn FnMut(usize, f32),
    /// After every chunk: `(backend, epochs done in all, the chunk's losses)`; returns whether
    /// to stop. The chunk's first loss is that of epoch `done - losses.len()`.
    pub on_chunk: &'a mut OnChunk<'a>,
    /// Also end a chunk at every multiple of this many epochs (checkpoints); 0: never.
    pub every: usize,
}

/// [`train`] from the epoch the backend is at (a resumed run continues its numbering) up to
/// `job.epochs`, with the hooks.
pub fn train_observed(job: &Job, backend: &mut dyn Backend, hooks: Hooks<'_>) -> Result<Report> {
    let first_epoch = backend.steps() / job.steps_per_epoch();
    let start = Instant::now();
    let mut losses = Thinned::default();
    let mut diverged = None;
    let mut stopped = false;
    while first_epoch + losses.len() < job.epochs && diverged.is_none() && !stopped {
        let done = first_epoch + losses.len();
        let mut n = job.epochs - done;
        // Read back at every log point, so a line appears as soon as its epoch is done.
        for every in [job.log_every, hooks.every] {
            if every > 0 {
                n = n.min(every - done % every);
            }
        }
        n = n.min(backend.max_chunk()).clamp(1, MAX_CHUNK);
        let mut chunk = backend.run(n)?;
        for (i, &loss) in chunk.iter().enumerate() {
            let epoch = done + i;
            losses.push(loss);
            if job.log_every > 0 && epoch.is_multiple_of(job.log_every) {
                (hooks.on_log)(epoch, loss);
            }
            if !loss.is_finite() {
                diverged = Some((epoch, loss));
                chunk.truncate(i + 1);
                break;
            }
        }
        let done = first_epoch + losses.len();
        stopped = (hooks.on_chunk)(backend, done, &chunk)? && done < job.epochs;
    }
    let train_s = start.elapsed().as_secs_f64();
    let params = backend.read_params()?;
    Ok(Report {
        first_epoch,
        losses: losses.kept().to_vec(),
        loss_stride: losses.stride(),
        epochs_run: losses.len(),
        last_loss: losses.last().copied(),
        train_s,
        diverged,
        stopped,
        params,
    })
}

/// Most epochs one chunk covers (their losses are held until the chunk ends), so that a run's
/// memory does not grow with its length.
pub const MAX_CHUNK: usize = 1 << 14;
