//! The search: every variant of a product shape checked against the CPU on random inputs, the
//! ones that pass timed, the fastest kept; and the faster layout for a job.

use super::*;
use crate::check::matmul::{check_matmul, store_key, Epi};

/// Choose among `candidates`: each is checked first (`check`), only those that pass are timed
/// (`time`, seconds per product of each sample), and the fastest median is the choice, unless
/// `default` (the untuned choice) passed and the fastest beats it by less than the relative spread
/// of either's samples: a difference within the noise keeps the default, so that choices do not
/// flip between runs. A variant that fails its check can never be chosen, however fast. Fails if
/// none passes.
pub async fn search(
    candidates: &[Block],
    default: Block,
    mut check: impl AsyncFnMut(Block) -> Result<Parity>,
    mut time: impl AsyncFnMut(Block) -> Result<Vec<f64>>,
) -> Result<(Block, Vec<Measured>)> {
    let mut measured = Vec::new();
    for &block in candidates {
        let parity = check(block).await?;
        let (seconds, spread) = if parity.passed {
            let t = time(block).await?;
            let mid = median(&t);
            let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.iter().copied().fold(0.0, f64::max);
            (Some(mid), Some((hi - lo) / mid))
        } else {
            log::warn!(
                "matmul {} failed its check against the CPU (error {:.3e} > {:.3e}): not a \
                 candidate",
                block.name(),
                parity.error,
                parity.tolerance
            );
            (None, None)
        };
        measured.push(Measured {
            block,
            parity,
            seconds,
            spread,
        });
    }
    let timed = |b: Block| {
        (measured.iter())
            .find(|m| m.block == b)
            .and_then(|m| Some((m.seconds?, m.spread.unwrap_or(0.0))))
    };
    let best = (measured.iter())
        .filter_map(|m| m.seconds.map(|s| (s, m.block)))
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, b)| b)
        .ok_or_else(|| {
            Error::Gpu("no matmul variant passed its check against the CPU".to_string())
        })?;
    let choice = match (timed(best), timed(default)) {
        (Some((t, s)), Some((td, sd))) if t > td * (1.0 - s.max(sd)) => default,
        _ => best,
    };
    Ok((choice, measured))
}

/// Check one variant against the CPU: the plain product's [`check_matmul`] (fresh random
/// inputs, the output poisoned first, `2γ_k·|A|·|B|` per element, the padding left zero), as
/// `verify` and the kernel tests check it, recorded as a [`Parity`].
pub async fn check_variant(
    ctx: &GpuContext,
    key: MatmulKey,
    dims: (usize, usize, usize),
) -> Result<Parity> {
    let (m, n, k) = dims;
    let seed = (m * 31 + n * 17 + k) as u64;
    let checked = check_matmul(ctx, key, Epi::Store, dims, seed).await?;
    Ok(Parity::of_ratio(checked.ratio(), k))
}

/// Seconds per product of one variant: the median of `samples` timings of as many back-to-back
/// dispatches as take about `target_s` (at least one).
pub async fn time_variant(
    ctx: &GpuContext,
    key: MatmulKey,
    dims: (usize, usize, usize),
    samples: usize,
    target_s: f64,
) -> Result<Vec<f64>> {
    let once = crate::gpu::time_matmul(ctx, key, dims, 1).await?;
    let reps = reps_for(once, target_s);
    let mut times = Vec::new();
    for _ in 0..samples.max(1) {
        times.push(crate::gpu::time_matmul(ctx, key, dims, reps).await?);
    }
    Ok(times)
}

/// Products per sample so that a sample takes about `target_s`, from one timed product.
pub fn reps_for(once: f64, target_s: f64) -> usize {
    ((target_s / once.max(1e-9)) as usize).clamp(1, 10_000)
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Tune one product shape on `ctx`: check every variant, time those that pass, keep the fastest
/// (or the untuned choice, where the fastest is not faster beyond the noise: [`search`]).
pub async fn tune_shape(
    ctx: &GpuContext,
    layout: Layout,
    (trans_a, trans_b): (bool, bool),
    dims: (usize, usize, usize),
    target_s: f64,
) -> Result<Entry> {
    let (block, measured) = search(
        &Block::of_layout(layout),
        Block::for_product(ctx.plan_type, layout, dims),
        async |b| check_variant(ctx, store_key(layout, trans_a, trans_b, b), dims).await,
        async |b| {
            let key = store_key(layout, trans_a, trans_b, b);
            time_variant(ctx, key, dims, 3, target_s).await
        },
    )
    .await?;
    let (m, n, k) = dims;
    use crate::gpu::pad4;
    Ok(Entry {
        layout,
        trans_a,
        trans_b,
        m: pad4(m),
        n: pad4(n),
        k: pad4(k),
        block,
        measured,
    })
}

/// Choose the layout for training from per-layout samples (seconds per epoch): the fastest median,
/// unless it beats the rule's choice `default` by less than the spread of either's samples.
pub fn choose_layout(default: Layout, samples: &[(Layout, Vec<f64>)]) -> (Layout, Vec<LayoutTime>) {
    let measured: Vec<LayoutTime> = (samples.iter())
        .map(|(layout, t)| {
            let mid = median(t);
            let lo = t.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = t.iter().copied().fold(0.0, f64::max);
            LayoutTime {
                layout: *layout,
                seconds: mid,
                spread: (hi - lo) / mid,
            }
        })
        .collect();
    let best = (measured.iter()).min_by(|a, b| a.seconds.total_cmp(&b.seconds));
    let rule = measured.iter().find(|m| m.layout == default);
    let choice = match (best, rule) {
        (Some(b), Some(d)) if b.seconds > d.seconds * (1.0 - b.spread.max(d.spread)) => default,
        (Some(b), _) => b.layout,
        (None, _) => default,
    };
    (choice, measured)
}
