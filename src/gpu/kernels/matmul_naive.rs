//! `shaders/matmul_naive.wgsl`, the bench's reference kernel: one output per invocation.

use crate::error::Result;
use crate::gpu::memory::{storage, uniform};
use crate::gpu::record::{bind_group, check_groups, scoped, submit, time_plan, Dispatch};
use crate::gpu::GpuContext;

/// The bindings of `shaders/matmul_naive.wgsl` by number (see `matmul::BINDINGS`).
pub const BINDINGS: &[&str] = &["params", "a", "b", "c"];

/// Its uniform block, `[m, n, k, 0]`: WGSL member names and byte offsets (checked by reflection).
pub const UNIFORM_FIELDS: &[(&str, usize)] = &[("m", 0), ("n", 4), ("k", 8), ("_pad", 12)];

/// `matmul_naive` (shaders/matmul_naive.wgsl) bound to `[m, k]` and `[k, n]` row-major inputs:
/// the dispatch, and the output buffer `[m, n]`.
pub(crate) fn naive_dispatch(
    ctx: &GpuContext,
    a: &wgpu::Buffer,
    b: &wgpu::Buffer,
    (m, n, k): (usize, usize, usize),
) -> Result<(Dispatch, wgpu::Buffer)> {
    let c = storage(ctx, "c", m * n, Some(&vec![f32::NAN; m * n]))?;
    let params = uniform(ctx, "naive params", &[m as u32, n as u32, k as u32, 0]);
    let (layout, pipeline) = ctx.kernels.naive(&ctx.device);
    let resources = vec![
        params.as_entire_binding(),
        a.as_entire_binding(),
        b.as_entire_binding(),
        c.as_entire_binding(),
    ];
    let groups = [n.div_ceil(8), m.div_ceil(8)];
    check_groups(ctx, format!("the naive {m}x{k}·{k}x{n} product"), groups)?;
    let bind_group = bind_group(ctx, "matmul_naive", &layout, resources, None);
    Ok((
        Dispatch {
            label: format!("matmul_naive {m}x{n}x{k}"),
            pipeline,
            bind_group,
            groups: [groups[0] as u32, groups[1] as u32, 1],
        },
        c,
    ))
}

/// Run the bench's reference kernel once: `C = A·B`, row-major `[m, k]` and `[k, n]`, its output
/// poisoned with NaN first. Returns C `[m, n]`.
pub async fn run_naive(
    ctx: &GpuContext,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>> {
    scoped(ctx, "running matmul_naive", async {
        let ab = storage(ctx, "a", m * k, Some(a))?;
        let bb = storage(ctx, "b", k * n, Some(b))?;
        let (d, c) = naive_dispatch(ctx, &ab, &bb, (m, n, k))?;
        submit(ctx, &[&[d]]);
        ctx.read_f32(&c, (m * n * 4) as u64).await
    })
    .await
}

/// [`time_matmul`] for the reference kernel.
pub async fn time_naive(
    ctx: &GpuContext,
    (m, n, k): (usize, usize, usize),
    reps: usize,
) -> Result<f64> {
    scoped(ctx, "timing matmul_naive", async {
        let ab = storage(ctx, "a", m * k, None)?;
        let bb = storage(ctx, "b", k * n, None)?;
        let (d, _c) = naive_dispatch(ctx, &ab, &bb, (m, n, k))?;
        time_plan(ctx, &[d], reps).await
    })
    .await
}

/// The bindings `shaders/matmul_naive.wgsl` declares: the sizes, A, B, C.
pub(crate) fn entries() -> [wgpu::BindGroupLayoutEntry; 4] {
    use super::{entry, READ, RW, UNIFORM};
    [
        entry(0, UNIFORM),
        entry(1, READ),
        entry(2, READ),
        entry(3, RW),
    ]
}
