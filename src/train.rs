//! The training loop, written once above the [`Backend`] trait: a [`Session`] runs chunks of
//! epochs between log points (and checkpoints), checks for divergence and times the run; the
//! command line and the browser page drive it.

use crate::backend::Backend;
use crate::error::Result;
use crate::init::Params;
use crate::job::Job;
use crate::thinned::Thinned;
use web_time::Instant;

/// What a training run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
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
    /// Whether the driver stopped the run ([`Session::stop`]) before the last epoch.
    pub stopped: bool,
    /// The weights and biases at the end.
    pub params: Params,
}

impl Outcome {
    pub fn final_loss(&self) -> Option<f32> {
        self.last_loss
    }

    /// The epoch after the last one run.
    pub fn end_epoch(&self) -> usize {
        self.first_epoch + self.epochs_run
    }
}

/// One chunk of epochs a [`Session`] ran: their losses, the first being that of epoch `first`
/// (truncated after a non-finite one).
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub first: usize,
    pub losses: Vec<f32>,
}

impl Chunk {
    /// The epoch after the chunk's last: epochs done in all.
    pub fn done(&self) -> usize {
        self.first + self.losses.len()
    }

    /// `(epoch, loss)` of the chunk's epochs that are multiples of `log_every` (none for 0).
    pub fn log_points(&self, log_every: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let first = self.first;
        (self.losses.iter().enumerate())
            .map(move |(i, &l)| (first + i, l))
            .filter(move |(e, _)| log_every > 0 && e.is_multiple_of(log_every))
    }
}

/// A training run in progress, from the epoch the backend is at (a resumed run continues its
/// numbering) up to `job.epochs`, one chunk of epochs at a time: a chunk ends at every log point
/// (one submission and one readback each on the GPU), at every multiple of `every` (checkpoints),
/// after [`MAX_CHUNK`] epochs, and at the first non-finite loss. Whoever drives it (the command
/// line, the browser page) does its own work between chunks: print, chart, checkpoint, stop.
pub struct Session<'a> {
    job: &'a Job,
    backend: &'a mut dyn Backend,
    every: usize,
    first_epoch: usize,
    start: Instant,
    losses: Thinned<f32>,
    diverged: Option<(usize, f32)>,
    stopped: bool,
}

impl<'a> Session<'a> {
    /// A session of `job` on `backend`; `every`: also end a chunk at every multiple of this many
    /// epochs (0: never).
    pub fn new(job: &'a Job, backend: &'a mut dyn Backend, every: usize) -> Self {
        let first_epoch = backend.steps() / job.steps_per_epoch();
        Session {
            job,
            backend,
            every,
            first_epoch,
            start: Instant::now(),
            losses: Thinned::default(),
            diverged: None,
            stopped: false,
        }
    }

    /// Epochs done in all (the resumed ones included).
    pub fn done(&self) -> usize {
        self.first_epoch + self.losses.len()
    }

    /// The device, for what the driver does between chunks (read the parameters, checkpoint).
    pub fn backend(&mut self) -> &mut dyn Backend {
        self.backend
    }

    /// End the run after the chunk just returned (an interrupt, a stop button). Not a stop if
    /// that chunk was the last.
    pub fn stop(&mut self) {
        self.stopped |= self.done() < self.job.epochs;
    }

    /// Run the next chunk; None once the run is over (all epochs done, diverged or stopped).
    pub async fn next_chunk(&mut self) -> Result<Option<Chunk>> {
        let job = self.job;
        if self.done() >= job.epochs || self.diverged.is_some() || self.stopped {
            return Ok(None);
        }
        let done = self.done();
        let n = chunk_len(job, done, self.every, self.backend.max_chunk());
        let mut losses = self.backend.run_async(n).await?;
        if let Some(i) = losses.iter().position(|l| !l.is_finite()) {
            self.diverged = Some((done + i, losses[i]));
            losses.truncate(i + 1);
        }
        for &l in &losses {
            self.losses.push(l);
        }
        Ok(Some(Chunk {
            first: done,
            losses,
        }))
    }

    /// What the run produced, with the parameters read back.
    pub async fn finish(self) -> Result<Outcome> {
        let train_s = self.start.elapsed().as_secs_f64();
        let params = self.backend.read_params_async().await?;
        let losses = self.losses;
        Ok(Outcome {
            first_epoch: self.first_epoch,
            losses: losses.kept().to_vec(),
            loss_stride: losses.stride(),
            epochs_run: losses.len(),
            last_loss: losses.last().copied(),
            train_s,
            diverged: self.diverged,
            stopped: self.stopped,
            params,
        })
    }
}

/// Train `job.epochs` epochs on `backend` on this thread, calling `on_log(epoch, loss)` for every
/// `log_every`-th epoch as soon as its loss is back on the host. Stops at the first non-finite
/// loss.
#[cfg(not(target_arch = "wasm32"))]
pub fn train(
    job: &Job,
    backend: &mut dyn Backend,
    mut on_log: impl FnMut(usize, f32),
) -> Result<Outcome> {
    crate::wait::block_on(async {
        let mut session = Session::new(job, backend, 0);
        while let Some(chunk) = session.next_chunk().await? {
            for (epoch, loss) in chunk.log_points(job.log_every) {
                on_log(epoch, loss);
            }
        }
        session.finish().await
    })
}

/// The epochs of the chunk from epoch `done`: up to the next log point (a line appears as soon
/// as its epoch is done), the next multiple of `every` (0: none), the end, at most `max_chunk`
/// and [`MAX_CHUNK`]. A [`Session`] and a sweep's chunk alike, so that a variant of a sweep runs
/// the chunks of its lone run.
pub(crate) fn chunk_len(job: &Job, done: usize, every: usize, max_chunk: usize) -> usize {
    let mut n = job.epochs - done;
    for every in [job.log_every, every] {
        if every > 0 {
            n = n.min(every - done % every);
        }
    }
    n.min(max_chunk).clamp(1, MAX_CHUNK)
}

/// Most epochs one chunk covers (their losses are held until the chunk ends), so that a run's
/// memory does not grow with its length.
pub const MAX_CHUNK: usize = 1 << 14;
