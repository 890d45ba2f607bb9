//! The tuning a training run does on its own before it starts (`--tune`): on a GPU whose cache
//! has no choice for some product of the job, each of those products is tuned as `gpu-train tune`
//! does (every variant checked against the CPU first, then timed), within a time budget, and the
//! choices are cached for later runs. A first run on an unseen GPU then trains with the variants
//! measured fastest there rather than with the untuned rule.

use super::*;
use crate::job::Job;
use std::time::Instant;

/// When a training run tunes its products first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TuneMode {
    /// Where the adapter is not of type Cpu and the cache lacks one of the job's products.
    #[default]
    Auto,
    /// Every product of the job, cached or not.
    Always,
    /// Never: the cached choices, else the untuned rule.
    Never,
}

/// What a run's own tuning did, as the summary reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SelfTuned {
    /// Seconds it took, checks and compiles included.
    pub seconds: f64,
    /// The budget it had.
    pub budget_s: f64,
    /// The product shapes it tuned, and how many it had to (fewer when the budget ran out).
    pub tuned: usize,
    pub wanted: usize,
    /// Per product tuned: `AᵀB 100x10x64: 4x4 (untuned rule: splitk)`.
    pub choices: Vec<String>,
}

impl SelfTuned {
    /// The one line a run prints.
    pub fn line(&self) -> String {
        let partial = if self.tuned < self.wanted {
            format!(
                " ({} of {}: the budget of {} s ran out; --tune-budget S)",
                self.tuned, self.wanted, self.budget_s
            )
        } else {
            String::new()
        };
        format!(
            "tuned the job's products in {:.1} s{partial}: {}",
            self.seconds,
            self.choices.join(", ")
        )
    }
}

/// The products of `job` (see `bench::products`) that the cache of `ctx` has no choice for in
/// `layout`.
pub fn untuned(ctx: &GpuContext, layout: Layout, job: &Job) -> Vec<crate::bench::Product> {
    (crate::bench::products(job).into_iter())
        .filter(|&(trans, dims)| ctx.tuning.get(layout, trans, dims).is_none())
        .collect()
}

/// The products a run with `mode` tunes first (none: it trains at once).
pub fn to_tune(
    mode: TuneMode,
    ctx: &GpuContext,
    layout: Layout,
    job: &Job,
) -> Vec<crate::bench::Product> {
    match mode {
        TuneMode::Never => Vec::new(),
        TuneMode::Always => crate::bench::products(job),
        TuneMode::Auto if ctx.plan_type == wgpu::DeviceType::Cpu => Vec::new(),
        TuneMode::Auto => untuned(ctx, layout, job),
    }
}

/// Tune `products` in `layout` within `budget_s` seconds: each shape's variants are timed for a
/// share of the budget, and a shape is started only if the longest one so far would still fit
/// (the first always is: a budget smaller than one shape tunes that one). Returns the entries
/// measured and what was done.
pub async fn tune_products(
    ctx: &GpuContext,
    layout: Layout,
    products: &[crate::bench::Product],
    budget_s: f64,
) -> Result<(Vec<Entry>, SelfTuned)> {
    let start = Instant::now();
    let variants = Block::of_layout(layout).len().max(1);
    // Three samples per variant plus its check and warm-up: about five timings' worth each.
    let target_s = (budget_s / (products.len().max(1) * variants * 5) as f64).clamp(0.002, 0.1);
    let mut entries = Vec::new();
    let mut choices = Vec::new();
    // The longest shape so far: a shape is not started unless it would fit in what is left.
    let mut longest = 0.0f64;
    for &((ta, tb), dims) in products {
        let elapsed = start.elapsed().as_secs_f64();
        if !entries.is_empty() && elapsed + longest > budget_s {
            break;
        }
        let e = tune_shape(ctx, layout, (ta, tb), dims, target_s).await?;
        longest = longest.max(start.elapsed().as_secs_f64() - elapsed);
        let rule = Block::for_product(ctx.plan_type, layout, dims);
        let t = |b: bool| if b { "ᵀ" } else { "" };
        let (m, n, k) = dims;
        choices.push(format!(
            "A{}B{} {m}x{n}x{k}: {}{}",
            t(ta),
            t(tb),
            e.block.name(),
            if e.block == rule {
                String::new()
            } else {
                format!(" (untuned rule: {})", rule.name())
            }
        ));
        entries.push(e);
    }
    let done = SelfTuned {
        seconds: start.elapsed().as_secs_f64(),
        budget_s,
        tuned: entries.len(),
        wanted: products.len(),
        choices,
    };
    Ok((entries, done))
}
