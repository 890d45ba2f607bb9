//! The sweep's promise, checked: every model of a [`GpuModels`] ends bit for bit where its lone
//! [`GpuBackend`] run of the same job ends (every epoch's loss, the parameters, the optimizer's
//! state and counters), also when some models sit out a chunk (a diverged variant) and the others
//! run on. The lone run is itself checked against the CPU by the training checks, so this carries
//! that check over to every model of a sweep. Called by `verify` and the library's tests. The
//! same on the CPU ([`check_cpu_sweep`]): a sweep's models, one to a thread, against their lone
//! runs on the whole team.
//!
//! The same promise kernel by kernel ([`check_matmul_models`]): one matmul dispatch of many
//! models stacked gives each model the bits of its own lone dispatch, in every block (split-K's
//! ranges of every model included), epilogue and shape, each model with its own inputs, rate and
//! hyperparameters, its outputs poisoned first.

use crate::backend::{Backend, TrainState};
use crate::check::matmul::{epilogue_inputs, extra_inputs, random_inputs, seeded, Epi};
use crate::cpu::{CpuBackend, CpuModels};
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::{run_matmul, run_matmul_models, MatmulKey, MatmulOutput};
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
/// `layout` (in the same dispatches, but for a dynamic-depth net: a sweep that does not share
/// them is a difference): all of them for the first half of the epochs, then all but model 1
/// (when there are more than one) for the rest; then each job alone for the epochs its model
/// ran. Returns the first model that differs from its lone run in any bit, and where; None when
/// none does.
/// At most `per_stack` models share dispatches (None: as many as fit).
pub async fn check_sweep(
    ctx: &Arc<GpuContext>,
    (layout, per_stack): (Layout, Option<usize>),
    jobs: &[Job],
) -> Result<Option<String>> {
    let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
    let stacks = (layout, per_stack);
    let mut models = GpuModels::create_in_stacks(ctx.clone(), jobs, &states, stacks).await?;
    // The models share their dispatches, but a dynamic-depth net's.
    let stackable = jobs.len() > 1;
    if let (true, None, Some(why)) = (
        stackable,
        jobs[0].shared_layer(),
        models.per_model_dispatches(),
    ) {
        return Ok(Some(format!("the models did not share dispatches: {why}")));
    }
    let (losses, ran) = train_one_sitting_out(&mut models, jobs).await?;
    for (k, (job, state)) in jobs.iter().zip(&states).enumerate() {
        let mut lone = GpuBackend::create(ctx.clone(), job, state, layout).await?;
        if let Some(at) = lone_difference(&mut models, k, (&losses[k], ran[k]), &mut lone).await? {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// [`check_sweep`] on the CPU: `jobs` as one sweep of [`CpuModels`] (one model to a thread of
/// the team), each model against its lone [`CpuBackend`] run, bit for bit.
pub async fn check_cpu_sweep(jobs: &[Job]) -> Result<Option<String>> {
    let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
    let mut models = CpuModels::new(jobs, &states);
    let (losses, ran) = train_one_sitting_out(&mut models, jobs).await?;
    for (k, (job, state)) in jobs.iter().zip(&states).enumerate() {
        let mut lone = CpuBackend::new(job, state);
        if let Some(at) = lone_difference(&mut models, k, (&losses[k], ran[k]), &mut lone).await? {
            return Ok(Some(at));
        }
    }
    Ok(None)
}

/// Train `models` (of `jobs`) in chunks as a sweep does: all of them for the first half of the
/// epochs, then all but model 1 (when there are more than one). Each model's losses, and the
/// epochs it should have run (its lone run runs these, whatever the sweep reports).
async fn train_one_sitting_out(
    models: &mut dyn Models,
    jobs: &[Job],
) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let epochs = jobs.first().map_or(0, |j| j.epochs);
    let first = epochs.div_ceil(2);
    let mut losses = vec![Vec::new(); jobs.len()];
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
    Ok((losses, ran))
}

/// Model `k` of `models`, which gave `losses` over `ran` epochs, against `lone` (its job, from
/// its state) run as many epochs: where they first differ, if they do.
async fn lone_difference(
    models: &mut dyn Models,
    k: usize,
    (losses, ran): (&[f32], usize),
    lone: &mut dyn Backend,
) -> Result<Option<String>> {
    let mut want = Vec::new();
    while want.len() < ran {
        let n = (ran - want.len()).min(lone.max_chunk());
        want.extend(lone.run_async(n).await?);
    }
    let got_state = models.model(k).state_async().await?;
    let want_state = lone.state_async().await?;
    let n = models.len();
    Ok(first_difference((losses, &got_state), (&want, &want_state))
        .map(|at| format!("model {k} of {n}: {at}")))
}

/// One matmul dispatch of `key` with epilogue `e` on `dims` for one model per seed of `seeds`,
/// stacked (in `key`'s layout), each model's inputs drawn from its seed (model j's rate and
/// hyperparameters scaled by 1 + j/8, so that each is its own), against each model's lone
/// dispatch: the first model whose outputs (C, AUX_OUT, the moments, the padding) differ in any
/// bit, and where; None when none does.
pub async fn check_matmul_models(
    ctx: &GpuContext,
    key: MatmulKey,
    e: Epi,
    dims: (usize, usize, usize),
    seeds: &[u64],
) -> Result<Option<String>> {
    let (m, n, _) = dims;
    let poison = vec![f32::NAN; m * n];
    let drawn: Vec<_> = (seeds.iter())
        .enumerate()
        .map(|(j, &seed)| {
            let (a, b) = random_inputs(key, dims, seed);
            let mut extra = extra_inputs(e, (m, n), &mut seeded(seed ^ 0x5eed));
            let own = 1.0 + j as f32 / 8.0;
            extra.state.hyper = extra.state.hyper.map(|h| h / own);
            (a, b, extra, own)
        })
        .collect();
    let models: Vec<_> = (drawn.iter())
        .map(|(a, b, extra, own)| {
            let mut inputs = epilogue_inputs(e, extra, &poison);
            if let Epi::Update(..) = e {
                inputs.scalar *= own;
            }
            (&a[..], &b[..], inputs)
        })
        .collect();
    let stacked = run_matmul_models(ctx, key, dims, &models).await?;
    for (j, (got, (a, b, inputs))) in stacked.iter().zip(&models).enumerate() {
        let lone = run_matmul(ctx, key, a, b, dims, *inputs).await?;
        if let Some(at) = output_difference(got, &lone) {
            return Ok(Some(format!("model {j} of {}: {at}", seeds.len())));
        }
    }
    Ok(None)
}

/// The first bit in which two runs' outputs differ, named.
fn output_difference(got: &MatmulOutput, want: &MatmulOutput) -> Option<String> {
    let named = |o: &MatmulOutput| {
        let mut v = vec![("C", o.c.clone()), ("AUX_OUT", o.aux_out.clone())];
        v.extend((o.moments.iter()).map(|m| ("a moment", m.clone())));
        v
    };
    for ((name, g), (_, w)) in named(got).into_iter().zip(named(want)) {
        if g.len() != w.len() {
            return Some(format!(
                "{name}: {} elements, its lone run {}",
                g.len(),
                w.len()
            ));
        }
        if let Some(i) = (g.iter().zip(&w)).position(|(p, q)| p.to_bits() != q.to_bits()) {
            return Some(format!("{name}[{i}]: {:e}, its lone run {:e}", g[i], w[i]));
        }
    }
    (got.padding_zero != want.padding_zero).then(|| "the padding".into())
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
