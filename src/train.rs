//! The training loop, written once above the [`Backend`] trait: chunks of epochs between log
//! points, the divergence check, timing.

use crate::backend::Backend;
use crate::error::Result;
use crate::init::Params;
use crate::job::Job;
use std::time::Instant;

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Report {
    /// The loss of every epoch run (up to and including a non-finite one).
    pub losses: Vec<f32>,
    /// Seconds from the first epoch to the last loss read back.
    pub train_s: f64,
    /// `(epoch, loss)` where the loss first became NaN or infinite.
    pub diverged: Option<(usize, f32)>,
    /// The weights and biases at the end.
    pub params: Params,
}

impl Report {
    pub fn final_loss(&self) -> Option<f32> {
        self.losses.last().copied()
    }
}

/// Train `job.epochs` epochs on `backend`, calling `on_log(epoch, loss)` for every `log_every`-th
/// epoch as soon as its loss is back on the host. Stops at the first non-finite loss.
pub fn train(
    job: &Job,
    backend: &mut dyn Backend,
    on_log: impl FnMut(usize, f32),
) -> Result<Report> {
    train_observed(job, backend, on_log, |_, _| {})
}

/// [`train`], also calling `on_chunk(epochs done, last loss)` after every chunk of epochs (for a
/// progress display).
pub fn train_observed(
    job: &Job,
    backend: &mut dyn Backend,
    mut on_log: impl FnMut(usize, f32),
    mut on_chunk: impl FnMut(usize, f32),
) -> Result<Report> {
    let start = Instant::now();
    let mut losses = Vec::with_capacity(job.epochs);
    let mut diverged = None;
    while losses.len() < job.epochs && diverged.is_none() {
        let done = losses.len();
        let mut n = job.epochs - done;
        if job.log_every > 0 {
            // Read back at every log point, so a line appears as soon as its epoch is done.
            n = n.min(job.log_every - done % job.log_every);
        }
        n = n.min(backend.max_chunk()).max(1);
        for loss in backend.run(n)? {
            let epoch = losses.len();
            losses.push(loss);
            if job.log_every > 0 && epoch % job.log_every == 0 {
                on_log(epoch, loss);
            }
            if !loss.is_finite() {
                diverged = Some((epoch, loss));
                break;
            }
        }
        if let Some(&last) = losses.last() {
            on_chunk(losses.len(), last);
        }
    }
    let train_s = start.elapsed().as_secs_f64();
    let params = backend.read_params()?;
    Ok(Report {
        losses,
        train_s,
        diverged,
        params,
    })
}
