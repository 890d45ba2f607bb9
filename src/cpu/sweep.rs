//! A sweep's models on the CPU ([`CpuModels`]): the thread team runs every variant's products in
//! one pass, one model to a thread. Each thread trains its models' whole chunk of epochs, so the
//! team meets once per chunk instead of twice per product, and no thread waits on another's
//! share of a product of a few dozen microseconds.
//!
//! A model run so makes each of its products with the very parts that the whole team would make
//! it with (the same columns, rows or ranges of the inner dimension, [`super::team`]'s size
//! alone decides them), one after another on its thread: a part runs the same operations
//! wherever it runs, so every model keeps the bits of its lone run, and how the models are
//! scheduled is free to change with what is measured.
//!
//! Whole rounds of the team (as many models as it has threads) always run one to a thread. The
//! models past the last round (fewer than the threads) run either one to a thread too, leaving
//! threads idle, or one after another on the whole team, as a lone run does: whichever is
//! measured faster here. A thread alone does a model's epoch in `lane` seconds; the team does it
//! in `team`, less than `lane` but by less than the thread count where the products are small
//! (the default job's, on many cores), so `r` models take `lane` one to a thread against
//! `r * team` on the team. The first chunk that has such models times one of them on the team
//! and the others one to a thread, for an epoch, and the choice follows.

use super::{matmul::team, CpuBackend};
use crate::backend::{Backend, DeviceInfo, Stats};
use crate::init::HostState;
use crate::job::Job;
use crate::sweep::Models;
use crate::wait::Wait;
use std::sync::Mutex;
use web_time::Instant;

/// The models of a sweep on the CPU, one [`CpuBackend`] each.
pub struct CpuModels {
    models: Vec<CpuBackend>,
    /// Seconds per epoch measured: of a round of models one to a thread, and of one model on the
    /// whole team (the latest of each).
    lane_s: Option<f64>,
    team_s: Option<f64>,
}

impl CpuModels {
    /// A model for each job (variants of one job: the same shapes, epochs and steps), from its
    /// state.
    pub fn new(jobs: &[Job], states: &[HostState]) -> Self {
        CpuModels {
            models: (jobs.iter().zip(states))
                .map(|(j, s)| CpuBackend::new(j, s))
                .collect(),
            lane_s: None,
            team_s: None,
        }
    }

    /// Of `models` models on a team of `threads`, how many make whole rounds of the team (one to
    /// a thread, always).
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
        let threads = team().size();
        let together = Self::at_once(on.len(), threads);
        let mut rest = on.split_off(together);
        if !on.is_empty() && epochs > 0 {
            let t = Instant::now();
            one_to_a_thread(&mut on, epochs, &mut out);
            let rounds = together / threads;
            self.lane_s = Some(t.elapsed().as_secs_f64() / (epochs * rounds) as f64);
        }
        let mut left = epochs;
        // Two or more past the last round: measure both ways where not yet measured (an epoch
        // of one model on the team, of the others one to a thread), then take the faster.
        if rest.len() >= 2 && left > 0 && (self.lane_s.is_none() || self.team_s.is_none()) {
            let t = Instant::now();
            on_the_team(&mut rest[..1], 1, &mut out);
            self.team_s = Some(t.elapsed().as_secs_f64());
            let t = Instant::now();
            one_to_a_thread(&mut rest[1..], 1, &mut out);
            self.lane_s = Some(t.elapsed().as_secs_f64());
            left -= 1;
        }
        if left > 0 && !rest.is_empty() {
            match faster_one_to_a_thread(rest.len(), threads, self.lane_s, self.team_s) {
                Some(true) => {
                    let t = Instant::now();
                    one_to_a_thread(&mut rest, left, &mut out);
                    self.lane_s = Some(t.elapsed().as_secs_f64() / left as f64);
                }
                _ => {
                    let t = Instant::now();
                    on_the_team(&mut rest, left, &mut out);
                    let n = (rest.len() * left) as f64;
                    self.team_s = Some(t.elapsed().as_secs_f64() / n);
                }
            }
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
        let together = Self::at_once(n, threads);
        let r = n - together;
        let ms = |s: Option<f64>| s.map_or("-".into(), |s| format!("{:.3}", s * 1e3));
        let rest = match faster_one_to_a_thread(r, threads, self.lane_s, self.team_s) {
            _ if r == 0 => String::new(),
            _ if r == 1 => "one model on the whole thread team".into(),
            None => format!(
                "{r} models one to a thread or one after another on the whole team, as measured \
                 faster"
            ),
            Some(lane) => format!(
                "{r} models {} (measured: {} ms per epoch of a round one to a thread, {} ms of \
                 one model on the team)",
                match lane {
                    true => "one to a thread",
                    false => "one after another on the whole thread team",
                },
                ms(self.lane_s),
                ms(self.team_s)
            ),
        };
        match (together, rest.is_empty()) {
            _ if threads < 2 => "one model after another, on one thread".into(),
            (0, _) => rest,
            (k, true) => format!("{k} models one to a thread, {threads} threads at once"),
            (k, false) => {
                format!("{k} models one to a thread, {threads} threads at once; then {rest}")
            }
        }
    }
}

/// Train `models` `epochs` epochs each, one model to a part of the team (part i on thread i %
/// size); their products find the team busy and run their parts in turn on that thread. Each
/// model's losses are added to its `out`.
fn one_to_a_thread(models: &mut [(usize, &mut CpuBackend)], epochs: usize, out: &mut [Vec<f32>]) {
    let slots: Vec<Mutex<(usize, &mut CpuBackend, Vec<f32>)>> = (models.iter_mut())
        .map(|(k, m)| Mutex::new((*k, &mut **m, Vec::new())))
        .collect();
    team().run(slots.len(), &|i| {
        let mut slot = slots[i].lock().unwrap_or_else(|p| p.into_inner());
        let (_, model, losses) = &mut *slot;
        losses.extend((0..epochs).map(|_| model.epoch()));
    });
    for slot in slots {
        let (k, _, losses) = slot.into_inner().unwrap_or_else(|p| p.into_inner());
        out[k].extend(losses);
    }
}

/// Train `models` `epochs` epochs each, one after another, each on the whole team (a lone run).
fn on_the_team(models: &mut [(usize, &mut CpuBackend)], epochs: usize, out: &mut [Vec<f32>]) {
    for (k, model) in models {
        out[*k].extend((0..epochs).map(|_| model.epoch()));
    }
}

/// Whether `r` models (fewer than the team's `threads`) train faster one to a thread (a round
/// takes `lane_s` per epoch) than one after another on the team (`team_s` each); None where
/// that is not measured yet. One model always runs on the whole team.
fn faster_one_to_a_thread(
    r: usize,
    threads: usize,
    lane_s: Option<f64>,
    team_s: Option<f64>,
) -> Option<bool> {
    if r < 2 || threads < 2 {
        return Some(false);
    }
    Some(lane_s? < r as f64 * team_s?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_rounds_measure_a_thread_and_never_the_team() {
        let threads = team().size();
        if threads < 2 {
            return;
        }
        let jobs: Vec<Job> = (0..threads as u64)
            .map(|seed| Job {
                layers: vec![3, 2, 1],
                batch: 2,
                seed,
                ..Job::default()
            })
            .collect();
        let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
        let mut models = CpuModels::new(&jobs, &states);
        let losses = crate::wait::block_on(models.run_async(3, &vec![true; threads]));
        assert!(losses.unwrap().iter().all(|l| l.len() == 3));
        assert!(models.lane_s.is_some());
        assert_eq!(models.team_s, None, "no model ran on the team");
    }

    #[test]
    fn the_models_past_the_last_round_go_the_way_measured_faster() {
        // Whole rounds one to a thread, always.
        assert_eq!(CpuModels::at_once(8, 2), 8);
        assert_eq!(CpuModels::at_once(7, 4), 4);
        assert_eq!(CpuModels::at_once(3, 16), 0);
        assert_eq!(CpuModels::at_once(5, 1), 0);
        // One model, or one thread: the whole team.
        assert_eq!(
            faster_one_to_a_thread(1, 16, Some(1.0), Some(1.0)),
            Some(false)
        );
        assert_eq!(faster_one_to_a_thread(5, 1, None, None), Some(false));
        // Not measured: say so (the run measures first).
        assert_eq!(faster_one_to_a_thread(3, 16, Some(1.0), None), None);
        assert_eq!(faster_one_to_a_thread(3, 16, None, Some(1.0)), None);
        // 8 models on 16 threads: a thread does an epoch in 4 ms, the team in 1 ms (4x faster,
        // not 16x): 8 one to a thread take 4 ms, 8 on the team 8 ms.
        assert_eq!(
            faster_one_to_a_thread(8, 16, Some(4e-3), Some(1e-3)),
            Some(true)
        );
        // The team 8x faster than a thread (big products): 3 models take 3 ms on the team
        // against 8 ms one to a thread.
        assert_eq!(
            faster_one_to_a_thread(3, 16, Some(8e-3), Some(1e-3)),
            Some(false)
        );
    }
}
