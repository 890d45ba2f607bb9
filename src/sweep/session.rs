//! The training loop of a sweep: [`SweepSession`] runs chunks of epochs of every variant still
//! training (all at once where the device can, [`Models::run_async`]), stops a diverged variant
//! alone, and ends every variant's run with its own [`Outcome`]; the same chunking as a
//! [`crate::train::Session`], so that each variant's run is the one it would have had alone.

use crate::backend::{Backend, DeviceInfo, Stats};
use crate::error::Result;
use crate::job::Job;
use crate::thinned::Thinned;
use crate::train::{chunk_len, Chunk, Outcome};
use crate::wait::Wait;
use web_time::Instant;

/// The devices of a sweep's variants, one model each, of jobs that differ only in values (the
/// same shapes, epochs and steps).
pub trait Models {
    /// The device they run on.
    fn describe(&self) -> DeviceInfo;

    /// How many models.
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Model `k` alone: its parameters, its state, its scoring.
    fn model(&mut self, k: usize) -> &mut dyn Backend;

    /// Train `epochs` epochs of every model `k` with `active[k]`, together where the device can
    /// (one submission and one readback on the GPU); the losses of each (empty for the others).
    fn run_async<'a>(&'a mut self, epochs: usize, active: &'a [bool]) -> Wait<'a, Vec<Vec<f32>>>;

    /// Most epochs one `run_async` should cover.
    fn max_chunk(&self) -> usize;

    /// What the device counted, over all models.
    fn stats(&self) -> Stats;

    /// Model `k`'s counts as its summary reports them: its own dispatches, and the submissions
    /// and encoding time of the whole sweep, which it shared.
    fn stats_of(&mut self, k: usize) -> Stats {
        let all = self.stats();
        let mut own = self.model(k).stats();
        (own.submits, own.encode_s) = (all.submits, all.encode_s);
        own
    }

    /// How the models share the device: in the same dispatches, or each its own, and why.
    fn batching(&self) -> String;
}

/// A sweep in progress: every variant from epoch 0 up to the jobs' epochs, one chunk of epochs
/// at a time, chunked as a lone run of any of them would be.
pub struct SweepSession<'a> {
    jobs: &'a [Job],
    models: &'a mut dyn Models,
    every: usize,
    start: Instant,
    done: usize,
    losses: Vec<Thinned<f32>>,
    diverged: Vec<Option<(usize, f32)>>,
    stopped: bool,
}

impl<'a> SweepSession<'a> {
    /// A sweep of `jobs` (variants of one job) on `models` (one per job, in order), ending a
    /// chunk also at every multiple of `every` epochs (0: never).
    pub fn new(jobs: &'a [Job], models: &'a mut dyn Models, every: usize) -> Self {
        assert_eq!(jobs.len(), models.len(), "one model per variant");
        SweepSession {
            jobs,
            models,
            every,
            start: Instant::now(),
            done: 0,
            losses: (0..jobs.len()).map(|_| Thinned::default()).collect(),
            diverged: vec![None; jobs.len()],
            stopped: false,
        }
    }

    /// Epochs done by the variants still training.
    pub fn done(&self) -> usize {
        self.done
    }

    /// The epoch and loss where variant `k` diverged, if it did.
    pub fn diverged(&self, k: usize) -> Option<(usize, f32)> {
        self.diverged[k]
    }

    /// Whether variant `k` is still training.
    pub fn training(&self, k: usize) -> bool {
        self.diverged[k].is_none() && !self.stopped && self.done < self.epochs()
    }

    fn epochs(&self) -> usize {
        self.jobs.first().map_or(0, |j| j.epochs)
    }

    pub fn models(&mut self) -> &mut dyn Models {
        self.models
    }

    /// End every variant after the chunk just returned (an interrupt).
    pub fn stop(&mut self) {
        self.stopped |= self.done < self.epochs();
    }

    /// Run the next chunk of every variant still training; for each variant, its chunk (None
    /// for one that has stopped). None once every variant is over.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<Option<Chunk>>>> {
        let active: Vec<bool> = (0..self.jobs.len()).map(|k| self.training(k)).collect();
        if !active.contains(&true) {
            return Ok(None);
        }
        let job = &self.jobs[0];
        let done = self.done;
        let n = chunk_len(job, done, self.every, self.models.max_chunk());
        let all = self.models.run_async(n, &active).await?;
        let mut out = Vec::with_capacity(all.len());
        for (k, mut losses) in all.into_iter().enumerate() {
            if !active[k] {
                out.push(None);
                continue;
            }
            if let Some(i) = losses.iter().position(|l| !l.is_finite()) {
                self.diverged[k] = Some((done + i, losses[i]));
                losses.truncate(i + 1);
            }
            for &l in &losses {
                self.losses[k].push(l);
            }
            out.push(Some(Chunk {
                first: done,
                losses,
            }));
        }
        self.done += n;
        Ok(Some(out))
    }

    /// What every variant's run produced, with its parameters read back.
    pub async fn finish(self) -> Result<Vec<Outcome>> {
        let train_s = self.start.elapsed().as_secs_f64();
        let mut out = Vec::with_capacity(self.jobs.len());
        for (k, losses) in self.losses.into_iter().enumerate() {
            let params = self.models.model(k).read_params_async().await?;
            let epochs_run = losses.len();
            out.push(Outcome {
                first_epoch: 0,
                losses: losses.kept().to_vec(),
                loss_stride: losses.stride(),
                epochs_run,
                last_loss: losses.last().copied(),
                train_s,
                diverged: self.diverged[k],
                stopped: self.stopped && self.diverged[k].is_none(),
                params,
            });
        }
        Ok(out)
    }
}
