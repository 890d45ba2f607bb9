//! `gpu-train tune` as one library run: every matmul variant of each layout checked against the
//! CPU and timed on each product of a job (`gpu::tune`), and, where the adapter runs more than one
//! layout, the job's training timed in each. The caller keeps the outcome: natively a cache file
//! per adapter and driver (`tune::save`), in the page the browser's storage (`tune::merge`).

use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::{tune, GpuBackend, GpuContext};
use crate::init::HostState;
use crate::job::Job;
use std::sync::Arc;
use web_time::Instant;

/// A product to tune: the transposes of A and B, and `(m, n, k)`.
pub type Product = ((bool, bool), (usize, usize, usize));

/// The products of one step of `job` (each layer's forward, input gradient but the first's, and
/// weight gradient), as `gpu-train tune` measures them.
pub fn products(job: &Job) -> Vec<Product> {
    let (b, d) = (job.batch, &job.layers);
    let mut v = Vec::new();
    for l in 0..job.depth() {
        v.push(((false, false), (b, d[l + 1], d[l])));
        if l > 0 {
            v.push(((false, true), (b, d[l], d[l + 1])));
        }
        v.push(((true, false), (d[l], d[l + 1], b)));
    }
    v.dedup();
    v
}

/// What one tuning run measured: the chosen variant of every product in every layout, and the
/// layout chosen for training (if more than one was timed).
#[derive(Debug, Clone, Default)]
pub struct Tuning {
    pub entries: Vec<tune::Entry>,
    pub layout: Option<tune::LayoutChoice>,
}

/// Tune every product of `shapes` in each of `layouts` (about `target_s` of samples per
/// variant); with `choose_layout` and more than one layout, also time `job`'s training in each
/// and choose the faster (`tune::choose_layout`, the rule's layout kept within the noise).
/// `report` gets one line per variant and shape, and per layout timed.
pub async fn run(
    ctx: &Arc<GpuContext>,
    layouts: &[Layout],
    job: &Job,
    shapes: &[Product],
    target_s: f64,
    choose_layout: bool,
    report: &mut dyn FnMut(&str),
) -> Result<Tuning> {
    let mut entries = Vec::new();
    for &layout in layouts {
        report(&format!(
            "tuning matmul on {} ({}, driver {} {}), {layout} layout",
            ctx.info.name, ctx.info.backend, ctx.info.driver, ctx.info.driver_info
        ));
        for &(trans, dims) in shapes {
            let e = tune::tune_shape(ctx, layout, trans, dims, target_s).await?;
            for line in variant_lines(&e, dims) {
                report(&line);
            }
            entries.push(e);
        }
    }
    let mut layout = None;
    if choose_layout && layouts.len() > 1 {
        let samples = time_layouts(ctx, job, layouts, 4.0 * target_s, 5).await?;
        let rule = Layout::for_adapter(ctx.plan_type);
        let (chosen, measured) = tune::choose_layout(rule, &samples);
        for m in &measured {
            report(&format!(
                "  training {:?} batch {} in the {} layout: {:.3} ms per epoch (spread {:.0}%){}",
                job.layers,
                job.batch,
                m.layout,
                m.seconds * 1e3,
                m.spread * 100.0,
                if m.layout == chosen {
                    "  <- chosen"
                } else {
                    ""
                }
            ));
        }
        layout = Some(tune::LayoutChoice {
            layout: chosen,
            job: format!("{:?} batch {}", job.layers, job.batch),
            measured,
        });
    }
    Ok(Tuning { entries, layout })
}

/// One line per variant measured for the product `(m, n, k)`: its speed (or that it failed its check), its
/// parity, and which was chosen.
fn variant_lines(e: &tune::Entry, (m, n, k): (usize, usize, usize)) -> Vec<String> {
    let t = |b: bool| if b { "ᵀ" } else { "" };
    (e.measured.iter())
        .map(|v| {
            let speed = v.seconds.map_or_else(
                || "FAILED its check".to_string(),
                |s| format!("{:8.2} GFLOP/s", e.gflops(s)),
            );
            format!(
                "  A{}·B{} {m}x{n}x{k}  {:>5}  {speed}  parity {:.2e}{}",
                t(e.trans_a),
                t(e.trans_b),
                v.block.name(),
                v.parity.error,
                if v.block == e.block {
                    "  <- chosen"
                } else {
                    ""
                }
            )
        })
        .collect()
}

/// Seconds per epoch of `job`'s training in each of `layouts` on `ctx`: samples of as many epochs
/// as take about `target_s`, the layouts alternating round by round (the machine's noise hits
/// them alike), each sample from the same start.
pub async fn time_layouts(
    ctx: &Arc<GpuContext>,
    job: &Job,
    layouts: &[Layout],
    target_s: f64,
    rounds: usize,
) -> Result<Vec<(Layout, Vec<f64>)>> {
    let state = HostState::seeded(job);
    let mut runs = Vec::new();
    for &layout in layouts {
        let mut b = GpuBackend::create(ctx.clone(), job, &state, layout).await?;
        let start = b.state_async().await?;
        let t = Instant::now();
        b.run_async(5).await?;
        let per_epoch = t.elapsed().as_secs_f64() / 5.0;
        let epochs = ((target_s / per_epoch.max(1e-9)) as usize).clamp(5, 500);
        runs.push((layout, b, start, epochs, Vec::new()));
    }
    for _ in 0..rounds.max(1) {
        for (_, b, start, epochs, samples) in runs.iter_mut() {
            b.restore_async(start).await?;
            let t = Instant::now();
            let mut left = *epochs;
            while left > 0 {
                let n = left.min(b.max_chunk());
                b.run_async(n).await?;
                left -= n;
            }
            samples.push(t.elapsed().as_secs_f64() / *epochs as f64);
        }
    }
    Ok(runs.into_iter().map(|(l, _, _, _, s)| (l, s)).collect())
}
