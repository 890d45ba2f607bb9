//! `shaders/bias_update.wgsl`: a layer's bias gradient summed over the batch rows in order, and
//! its optimizer step; its uniform block, dispatch and standalone run.

use super::optimizer::{optimizer_bindings, read_moments, OptBind, StepState, COUNTER_MODEL_WORDS};
use super::{Acc, Opt, Update};
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::layout::{pad4, to_padded};
use crate::gpu::memory::{padded_matrix, uniform, vector, GpuMatrix};
use crate::gpu::record::{bind_group, scoped, submit, Dispatch};
use crate::gpu::GpuContext;

/// The bindings of `shaders/bias_update.wgsl` (with its layout prelude and `optimizer.wgsl`) by
/// number (see `matmul::BINDINGS`).
pub const BINDINGS: &[&str] = &[
    "params",
    "g",
    "b",
    "acc",
    "",
    "",
    "",
    "opt_state",
    "counters",
];

/// WGSL member names of [`BiasParams`] and their byte offsets here (checked by reflection).
pub const UNIFORM_FIELDS: &[(&str, usize)] = &[
    ("rows", std::mem::offset_of!(BiasParams, rows)),
    ("cols4", std::mem::offset_of!(BiasParams, cols4)),
    ("sg", std::mem::offset_of!(BiasParams, sg)),
    ("sb", std::mem::offset_of!(BiasParams, sb)),
    ("sopt", std::mem::offset_of!(BiasParams, sopt)),
    ("scount", std::mem::offset_of!(BiasParams, scount)),
    ("_pad0", std::mem::offset_of!(BiasParams, _pad)),
    ("_pad1", std::mem::offset_of!(BiasParams, _pad) + 4),
];

/// Uniform block of `shaders/bias_update.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct BiasParams {
    pub(crate) rows: u32,
    pub(crate) cols4: u32,
    /// A sweep's stacked models: from one model's g to the next's (vec4, or texel rows in the
    /// texels layout), vec4 from its bias to the
    /// next's and from the bias's optimizer state to the next's, words from its step counters to
    /// the next's; 0 for a lone run.
    pub(crate) sg: u32,
    pub(crate) sb: u32,
    pub(crate) sopt: u32,
    pub(crate) scount: u32,
    pub(crate) _pad: [u32; 2],
}

/// What one `bias_update` dispatch binds besides the gradient and the bias.
pub(crate) struct BiasStep<'a> {
    /// Store the gradient alone instead of stepping.
    pub(crate) store: bool,
    pub(crate) kind: Opt,
    /// The optimizer's bindings (every step binds its counters; None: `store`).
    pub(crate) opt: Option<OptBind<'a>>,
    /// Summing a shared layer's gradient (or a gradient over bands of the batch), in `sum`.
    pub(crate) acc: Acc,
    pub(crate) sum: Option<&'a wgpu::Buffer>,
    /// The band of g's padded rows bound (g larger than one storage binding), if any.
    pub(crate) band: Option<(usize, usize)>,
}

/// `bias_update` of a `[rows, cols]` output gradient into the bias buffer `b`: the optimizer
/// step, or (`store`) the gradient alone.
pub(crate) fn bias_update_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    step: BiasStep<'_>,
    g: &GpuMatrix,
    b: &wgpu::Buffer,
) -> Dispatch {
    let cols4 = pad4(cols) / 4;
    // A sweep's stacked models: one dispatch for all, model z of the grid.
    let models = g.models.max(1);
    let per_model = |stride: u32| if models > 1 { stride } else { 0 };
    let params = uniform(
        ctx,
        "bias_update params",
        &BiasParams {
            rows: rows as u32,
            cols4: cols4 as u32,
            sg: g.model_stride(),
            sb: per_model(cols4 as u32),
            sopt: (step.opt.and_then(|o| o.state)).map_or(0, |s| s.model_stride()),
            scount: per_model(COUNTER_MODEL_WORDS),
            _pad: [0; 2],
        },
    );
    let kn = &ctx.kernels;
    debug_assert!(step.acc == Acc::default() || step.sum.is_some());
    let resources = vec![
        params.as_entire_binding(),
        step.band.map_or_else(|| g.binding(), |band| g.window(band)),
        b.as_entire_binding(),
        step.sum.unwrap_or(&kn.dummy_rw).as_entire_binding(),
    ];
    let given = step.opt.and_then(|o| o.state).map_or(0, |b| b.copies);
    debug_assert_eq!(step.kind.state_buffers(), given);
    let optimizer = Some(optimizer_bindings(ctx, step.opt, 0));
    let layout = kn.bias_update_layout(g.layout());
    let bind_group = bind_group(ctx, "bias_update", layout, resources, optimizer);
    Dispatch {
        label: format!("bias_update {rows}x{cols}"),
        pipeline: kn.bias_update(&ctx.device, g.layout(), step.store, step.kind, step.acc),
        bind_group,
        groups: [cols4.div_ceil(64) as u32, 1, models as u32],
    }
}

/// [`run_bias`] summing a shared layer's gradient by `acc`, with the sum so far `sum` (`[cols]`;
/// NaN-poisoned without it), at a constant rate `lr` (or, `store`, the gradient alone). Returns
/// the bias and the sum after the kernel.
#[allow(clippy::too_many_arguments)]
pub async fn run_bias_sum(
    ctx: &GpuContext,
    layout: Layout,
    g: &[f32],
    dims: (usize, usize),
    b: &[f32],
    (lr, store): (f32, bool),
    acc: Acc,
    sum: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let step = BiasRun {
        lr,
        store,
        acc,
        sum,
        ..BiasRun::default()
    };
    let out = run_bias(ctx, layout, g, dims, b, step).await?;
    Ok((out.0, out.1))
}

/// What [`run_bias`] runs besides the gradient and the bias.
#[derive(Clone, Copy, Default)]
pub struct BiasRun<'a> {
    pub lr: f32,
    /// The gradient alone into a NaN-poisoned bias, instead of a step.
    pub store: bool,
    /// The optimizer step, its decay and schedule.
    pub opt: Opt,
    pub update: Update,
    /// The optimizer's state and counters (None: plain SGD at a constant rate).
    pub state: Option<&'a StepState>,
    pub acc: Acc,
    /// The sum so far of a shared layer's gradient (`[cols]`; NaN-poisoned without it).
    pub sum: Option<&'a [f32]>,
}

/// Run `bias_update` once on a `[rows, cols]` output gradient `g` (row-major, unpadded; padded
/// with NaN, which the kernel must not read) and a bias `b` (`[cols]`) as `run` says. Returns the
/// bias, the sum and the optimizer's moments after the kernel (`[cols]` each).
pub async fn run_bias(
    ctx: &GpuContext,
    layout: Layout,
    g: &[f32],
    (rows, cols): (usize, usize),
    b: &[f32],
    run: BiasRun<'_>,
) -> Result<(Vec<f32>, Vec<f32>, Vec<Vec<f32>>)> {
    scoped(ctx, "running bias_update", async {
        let gm = padded_matrix(
            ctx,
            layout,
            "g",
            rows,
            cols,
            Some(&to_padded(rows, cols, g, f32::NAN)),
        )?;
        let bb = if run.store {
            vector(ctx, "b", cols, None, f32::NAN)?
        } else {
            vector(ctx, "b", cols, Some(b), 0.0)?
        };
        let sb = match run.sum {
            Some(s) => vector(ctx, "sum", cols, Some(s), 0.0)?,
            None => vector(ctx, "sum", cols, None, f32::NAN)?,
        };
        // Every step reads its rate and hyperparameters from the counters.
        let plain = StepState::default();
        let steps = [(run.state.unwrap_or(&plain), run.lr)];
        let uploaded = (!run.store)
            .then(|| StepState::upload_models(ctx, (1, cols), &steps, run.update))
            .transpose()?;
        let opt = uploaded.as_ref().map(|(state, counters)| OptBind {
            state: state.as_ref(),
            counters: (counters, 0),
            stacked: false,
        });
        let step = BiasStep {
            store: run.store,
            kind: run.opt,
            opt,
            acc: run.acc,
            sum: Some(&sb),
            band: None,
        };
        let d = bias_update_dispatch(ctx, (rows, cols), step, &gm, &bb);
        submit(ctx, &[&[d]]);
        let out = ctx.read_f32(&bb, (pad4(cols) * 4) as u64).await?;
        let summed = ctx.read_f32(&sb, (pad4(cols) * 4) as u64).await?;
        let moments = match &uploaded {
            Some((state, _)) => read_moments(ctx, state.as_ref(), (1, cols), 1)
                .await?
                .remove(0),
            None => Vec::new(),
        };
        Ok((out[..cols].to_vec(), summed[..cols].to_vec(), moments))
    })
    .await
}

/// The override constants of a `bias_update` variant: STORE (the gradient alone) or the optimizer
/// step `opt` (its decay and schedule are read from the step counters), the sum over a shared
/// layer's uses.
pub(crate) fn constants(store: bool, opt: Opt, acc: Acc) -> [(&'static str, f64); 4] {
    [
        ("STORE", store as u8 as f64),
        ("OPT", opt as u32 as f64),
        ("ACC_IN", acc.input as u8 as f64),
        ("ACC_OUT", acc.output as u8 as f64),
    ]
}
