//! A sweep's models on the CPU ([`CpuModels`]): the thread team runs every variant's products in
//! one pass, one model to a thread. Each thread trains its models' whole chunk of epochs, so the
//! team meets once per chunk instead of twice per product, and no thread waits on another's
//! share of a product of a few dozen microseconds.
//!
//! A model run so makes each of its products with the very parts that the whole team would make
//! it with (the same columns, rows or ranges of the inner dimension, [`super::team`]'s size
//! alone decides them), one after another on its thread: a part runs the same operations
//! wherever it runs, so every model keeps the bits of its lone run. Models past the last full
//! round of the team (fewer than its threads) run after the others, one after another, each on
//! the whole team, as a lone run does.

use super::{matmul::team, CpuBackend};
use crate::backend::{Backend, DeviceInfo, Stats};
use crate::init::HostState;
use crate::job::Job;
use crate::sweep::Models;
use crate::wait::Wait;
use std::sync::Mutex;

/// The models of a sweep on the CPU, one [`CpuBackend`] each.
pub struct CpuModels {
    models: Vec<CpuBackend>,
}

impl CpuModels {
    /// A model for each job (variants of one job: the same shapes, epochs and steps), from its
    /// state.
    pub fn new(jobs: &[Job], states: &[HostState]) -> Self {
        CpuModels {
            models: (jobs.iter().zip(states))
                .map(|(j, s)| CpuBackend::new(j, s))
                .collect(),
        }
    }

    /// Of `models` models on a team of `threads`, how many run one to a thread (whole rounds of
    /// the team; the rest run one after another on the whole team).
    pub fn at_once(models: usize, threads: usize) -> usize {
        match threads {
            0 | 1 => 0,
            t => models / t * t,
        }
    }
}

impl Models for CpuModels {
    fn describe(&self) -> DeviceInfo {
        super::describe()
    }

    fn len(&self) -> usize {
        self.models.len()
    }

    fn model(&mut self, k: usize) -> &mut dyn Backend {
        &mut self.models[k]
    }

    fn run_async<'a>(&'a mut self, epochs: usize, active: &'a [bool]) -> Wait<'a, Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); self.models.len()];
        let mut on: Vec<(usize, &mut CpuBackend)> = (self.models.iter_mut().enumerate())
            .filter(|(k, _)| active.get(*k).copied().unwrap_or(false))
            .collect();
        let team = team();
        let together = Self::at_once(on.len(), team.size());
        let rest = on.split_off(together);
        // One model to a part: part i runs on thread i % size, so each thread trains the same
        // number of models. Their products find the team busy and run their parts in turn.
        let slots: Vec<Mutex<(usize, &mut CpuBackend, Vec<f32>)>> = (on.into_iter())
            .map(|(k, m)| Mutex::new((k, m, Vec::new())))
            .collect();
        team.run(slots.len(), &|i| {
            let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
            let (_, model, losses) = &mut *slot;
            *losses = (0..epochs).map(|_| model.epoch()).collect();
        });
        for slot in slots {
            let (k, _, losses) = slot.into_inner().unwrap_or_else(|p| p.into_inner());
            out[k] = losses;
        }
        for (k, model) in rest {
            out[k] = (0..epochs).map(|_| model.epoch()).collect();
        }
        Box::pin(std::future::ready(Ok(out)))
    }

    fn max_chunk(&self) -> usize {
        self.models.iter().map(|b| b.max_chunk()).min().unwrap_or(1)
    }

    fn stats(&self) -> Stats {
        Stats::default()
    }

    fn batching(&self) -> String {
        let (n, threads) = (self.models.len(), team().size());
        match Self::at_once(n, threads) {
            0 => "one model after another, each on the whole thread team".into(),
            k if k == n => format!("one model to a thread, {threads} threads at once"),
            k => format!(
                "one model to a thread, {threads} threads at once ({k} models); the last {} one \
                 after another on the whole team",
                n - k
            ),
        }
    }
}
