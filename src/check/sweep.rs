//! The sweep's promise, checked: every model of a [`GpuModels`] ends bit for bit where its lone
//! [`GpuBackend`] run of the same job ends (every epoch's loss, the parameters, the optimizer's
//! state and counters), also when some models sit out a chunk (a diverged variant) and the others
//! run on. The lone run is itself checked against the CPU by the training checks, so this carries
//! that check over to every model of a sweep. Called by `verify` and the library's tests.

use crate::backend::{Backend, TrainState};
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::{GpuBackend, GpuContext, GpuModels};
use crate::init::HostState;
use crate::job::Job;
use crate::sweep::Models;
use std::sync::Arc;

/// Every tensor of a state as bits, named (`w1`, `m.w1`, ...), then the counters and the step.
fn bits(s: &TrainState) -> Vec<(String, Vec<u32>)> {
    let names = s.params.named();
    let mut out: Vec<(String, Vec<u32>)> = (names.iter())
        .map(|(name, m)| (name.clone(), m.data.iter().map(|v| v.to_bits()).collect()))
        .collect();
    for ((name, _), copies) in names.iter().zip(&s.opt_state) {
        for (i, m) in copies.iter().enumerate() {
            let data = m.data.iter().map(|v| v.to_bits()).collect();
            out.push((format!("{}.{name}", ["m", "v"][i.min(1)]), data));
        }
    }
    for (name, c) in [
        ("counters", s.counters),
        ("shared_counters", s.shared_counters),
    ] {
        out.push((
            name.into(),
            vec![c.t, c.beta1_t.to_bits(), c.beta2_t.to_bits()],
        ));
    }
    out.push(("step".into(), vec![s.step as u32]));
    out
}

/// The first difference between two runs' losses and states, if any.
fn first_difference(
    (losses, state): (&[f32], &TrainState),
    (want_losses, want): (&[f32], &TrainState),
) -> Option<String> {
    let at = (losses.iter().zip(want_losses)).position(|(a, b)| a.to_bits() != b.to_bits());
    if at.is_some() || losses.len() != want_losses.len() {
        let at = at.unwrap_or(losses.len().min(want_losses.len()));
        return Some(format!(
            "loss of epoch {at}: {:?}, its lone run {:?} ({} and {} epochs)",
            losses.get(at),
            want_losses.get(at),
            losses.len(),
            want_losses.len()
        ));
    }
    for ((name, got), (_, want)) in bits(state).iter().zip(bits(want)) {
        if let Some(i) = got.iter().zip(&want).position(|(a, b)| a != b) {
            return Some(format!(
                "{name}[{i}]: {:e}, its lone run {:e}",
                f32::from_bits(got[i]),
                f32::from_bits(want[i])
            ));
        }
        if got.len() != want.len() {
            return Some(format!(
                "{name}: {} elements, its lone run {}",
                got.len(),
                want.len()
            ));
        }
    }
    None
}

/// Train `jobs` (variants of one job: the same shapes and epochs) as one sweep on `ctx` in
/// `layout`: all of them for the first half of the epochs, then all but model 1 (when there are
/// more than one) for the rest; then each job alone for the epochs its model ran. Returns the
/// first model that differs from its lone run in any bit, and where; None when none does.
pub async fn check_sweep(
    ctx: &Arc<GpuContext>,
    layout: Layout,
    jobs: &[Job],
) -> Result<Option<String>> {
    let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
    let mut models = GpuModels::create(ctx.clone(), jobs, &states, layout).await?;
    let epochs = jobs.first().map_or(0, |j| j.epochs);
    let first = epochs.div_ceil(2);
    let mut losses = vec![Vec::new(); jobs.len()];
    // Epochs each model should have run: its lone run runs these, whatever the sweep reports.
    let mut ran = vec![0; jobs.len()];
    let mut active = vec![true; jobs.len()];
    let mut done = 0;
    while done < epochs {
        if done >= first && jobs.len() > 1 {
            active[1] = false;
        }
        let end = if done < first { first } else { epochs };
        let n = (end - done).min(models.max_chunk());
        for (all, l) in losses.iter_mut().zip(models.run_async(n, &active).await?) {
            all.extend(l);
        }
        for (r, &on) in ran.iter_mut().zip(&active) {
            *r += if on { n } else { 0 };
        }
        done += n;
    }
    for (k, (job, state)) in jobs.iter().zip(&states).enumerate() {
        let mut lone = GpuBackend::create(ctx.clone(), job, state, layout).await?;
        let mut want = Vec::new();
        while want.len() < ran[k] {
            let n = (ran[k] - want.len()).min(lone.max_chunk());
            want.extend(lone.run_async(n).await?);
        }
        let got_state = models.model(k).state_async().await?;
        let want_state = lone.state_async().await?;
        if let Some(at) = first_difference((&losses[k], &got_state), (&want, &want_state)) {
            return Ok(Some(format!("model {k} of {}: {at}", jobs.len())));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;

    /// One bit anywhere (a loss, a weight, a moment, a counter, the step) is a difference, named.
    #[test]
    fn a_single_bit_is_a_difference() {
        let job = Job {
            layers: vec![5, 4, 3],
            batch: 3,
            epochs: 2,
            bias: true,
            optimizer: crate::job::Optimizer {
                kind: crate::job::OptimizerKind::Adam,
                ..Default::default()
            },
            ..Job::default()
        };
        let mut cpu = CpuBackend::new(&job, &HostState::seeded(&job));
        let losses = cpu.run(2).unwrap();
        let state = cpu.state().unwrap();
        let flip = |v: &mut f32| *v = f32::from_bits(v.to_bits() ^ 1);
        assert_eq!(first_difference((&losses, &state), (&losses, &state)), None);
        let mut l = losses.clone();
        flip(&mut l[1]);
        let d = first_difference((&l, &state), (&losses, &state)).unwrap();
        assert!(d.starts_with("loss of epoch 1"), "{d}");
        let mut s = state.clone();
        flip(&mut s.opt_state[3][1].data[2]);
        let d = first_difference((&losses, &s), (&losses, &state)).unwrap();
        assert!(d.starts_with("v.b2[2]"), "{d}");
        let mut s = state.clone();
        flip(&mut s.counters.beta2_t);
        let d = first_difference((&losses, &s), (&losses, &state)).unwrap();
        assert!(d.starts_with("counters[2]"), "{d}");
        let mut s = state.clone();
        s.step += 1;
        assert!(first_difference((&losses, &s), (&losses, &state))
            .unwrap()
            .starts_with("step"));
    }
}
