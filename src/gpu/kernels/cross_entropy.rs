//! `shaders/cross_entropy.wgsl`: the softmax cross-entropy of the output layer's logits, its
//! gradient and its deterministic sum, in the dispatch that reduces the loss; its bindings,
//! dispatch and standalone run (the kernel tests). The CPU twin is `cpu::cross_entropy`.

use super::loss_reduce::{ReduceParams, Stack};
use crate::error::Result;
use crate::gpu::layout::{pad4, to_padded, Layout};
use crate::gpu::memory::{self, storage, uniform, GpuMatrix, STORAGE};
use crate::gpu::record::{bind_group, scoped, submit, Dispatch};
use crate::gpu::GpuContext;
use wgpu::util::DeviceExt;

/// The bindings of `shaders/cross_entropy.wgsl` (after `loss_reduce.wgsl` and its layout
/// prelude) by number (see `matmul::BINDINGS`); the uniform block is `loss_reduce`'s.
pub const BINDINGS: &[&str] = &["params", "values", "history", "state", "y", "grad"];

/// What one `cross_entropy` dispatch reads and writes: the `[rows, cols]` logits in `logits`
/// (from the band's first row), the targets and the gradient (windows of the batch's matrices
/// where it is banded), the history slot and the counters.
pub(crate) struct CrossEntropyBind<'a> {
    pub(crate) logits: &'a wgpu::Buffer,
    pub(crate) y: wgpu::BindingResource<'a>,
    pub(crate) grad: wgpu::BindingResource<'a>,
    pub(crate) history: &'a wgpu::Buffer,
    pub(crate) state: &'a wgpu::Buffer,
}

/// `cross_entropy` over `[rows, cols]` logits: the gradient times `coef` into `grad`, the rows'
/// summed losses times `scale` into the history. `advance`: as `loss_reduce_dispatch`'s, with
/// `None` for a band's partial sum (the slot in `state[0]`, nothing advanced); a sweep's models
/// in `stack`.
pub(crate) fn cross_entropy_dispatch(
    ctx: &GpuContext,
    layout: Layout,
    (rows, cols): (usize, usize),
    (scale, coef): (f32, f32),
    (advance, stack): (Option<(bool, bool)>, Stack),
    bind: CrossEntropyBind<'_>,
) -> Dispatch {
    let params = uniform(
        ctx,
        "cross_entropy params",
        &ReduceParams::new((rows, cols), scale, coef, stack),
    );
    let kn = &ctx.kernels;
    let (bind_layout, pipeline) = kn.cross_entropy(layout, advance);
    let resources = vec![
        params.as_entire_binding(),
        bind.logits.as_entire_binding(),
        bind.history.as_entire_binding(),
        bind.state.as_entire_binding(),
        bind.y,
        bind.grad,
    ];
    let bind_group = bind_group(ctx, "cross_entropy", bind_layout, resources, None);
    Dispatch {
        label: format!(
            "cross_entropy {layout} {rows}x{cols}{}",
            if advance.is_none() { " (a band)" } else { "" }
        ),
        pipeline,
        bind_group,
        groups: [1, 1, stack.models as u32],
    }
}

/// Run `cross_entropy` once on `[rows, cols]` logits `z` (padded with NaN, which the kernel must
/// skip) against `y`, in `layout`: returns the loss it wrote (the rows' losses summed, times
/// `scale`) and the gradient (times `coef`), `[pad4(rows), pad4(cols)]` padded, the gradient
/// matrix poisoned with NaN first so that an element left unwritten shows.
pub async fn run_cross_entropy(
    ctx: &GpuContext,
    layout: Layout,
    z: &[f32],
    y: &[f32],
    (rows, cols): (usize, usize),
    (scale, coef): (f32, f32),
) -> Result<(f32, Vec<f32>)> {
    scoped(ctx, "running cross_entropy", async {
        let logits = storage(
            ctx,
            "logits",
            pad4(rows) * pad4(cols),
            Some(&to_padded(rows, cols, z, f32::NAN)),
        )?;
        let ym = memory::matrix(ctx, layout, "y", rows, cols, Some(y))?;
        let poison = vec![f32::NAN; pad4(rows) * pad4(cols)];
        let grad: GpuMatrix =
            memory::padded_matrix(ctx, layout, "gradient", rows, cols, Some(&poison))?;
        let history = storage(ctx, "history", 4, Some(&[f32::NAN; 4]))?;
        let state = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("state"),
                contents: bytemuck::cast_slice(&[1u32; 96]),
                usage: STORAGE,
            });
        let bind = CrossEntropyBind {
            logits: &logits,
            y: ym.binding(),
            grad: grad.binding(),
            history: &history,
            state: &state,
        };
        let d = cross_entropy_dispatch(
            ctx,
            layout,
            (rows, cols),
            (scale, coef),
            (Some((false, false)), Stack::ONE),
            bind,
        );
        submit(ctx, &[&[d]]);
        let h = ctx.read_f32(&history, 16).await?;
        Ok((h[1], grad.read_padded(ctx).await?))
    })
    .await
}
