//! Recording and submission: a dispatch built once and replayed, bind groups, one compute pass
//! per chunk, the timed recording of `--profile`, and the error scope around device work.

use super::kernels::OPT_BINDING;
use super::GpuContext;
use crate::error::{Error, Result};

/// One recorded dispatch: built once, replayed every epoch.
pub(crate) struct Dispatch {
    /// What `--profile` reports the dispatch's time under: the kernel, its variant and shape.
    pub(crate) label: String,
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) bind_group: wgpu::BindGroup,
    pub(crate) groups: [u32; 3],
}

impl Dispatch {
    /// Workgroups the dispatch launches.
    pub(crate) fn workgroups(&self) -> u64 {
        self.groups.iter().map(|&g| g as u64).product()
    }
}

/// A bind group whose binding `i` is `resources[i]`, and, for the kernels that update parameters,
/// the optimizer's bindings from `OPT_BINDING` on.
pub(crate) fn bind_group(
    ctx: &GpuContext,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    resources: Vec<wgpu::BindingResource<'_>>,
    optimizer: Option<[wgpu::BindingResource<'_>; 2]>,
) -> wgpu::BindGroup {
    debug_assert!(optimizer.is_none() || resources.len() <= OPT_BINDING as usize);
    let numbered = (0..).zip(resources);
    let opt = (OPT_BINDING..).zip(optimizer.into_iter().flatten());
    let entries: Vec<wgpu::BindGroupEntry> = numbered
        .chain(opt)
        .map(|(binding, resource)| wgpu::BindGroupEntry { binding, resource })
        .collect();
    ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some(label),
        layout,
        entries: &entries,
    })
}

/// Record epochs into one compute pass, each running its plan in order.
pub(crate) fn record(enc: &mut wgpu::CommandEncoder, epochs: &[&[Dispatch]]) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("epochs"),
        timestamp_writes: None,
    });
    for plan in epochs {
        for d in plan.iter() {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }
}

/// Record `plans` for `--profile`, with timestamps before and after each dispatch into `queries`
/// (two per dispatch, from 0): inside one compute pass where the adapter can (`inside`), else
/// with each dispatch in a pass of its own that writes them at its start and end. The results are
/// the same as [`record`]'s.
pub(crate) fn record_timed(
    enc: &mut wgpu::CommandEncoder,
    plans: &[&[Dispatch]],
    queries: &wgpu::QuerySet,
    inside: bool,
) {
    let all = plans.iter().flat_map(|p| p.iter()).enumerate();
    if inside {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some("profiled steps"),
            timestamp_writes: None,
        });
        for (i, d) in all {
            pass.write_timestamp(queries, 2 * i as u32);
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
            pass.write_timestamp(queries, 2 * i as u32 + 1);
        }
        return;
    }
    for (i, d) in all {
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(&d.label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: queries,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        });
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.bind_group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
}

/// Timestamp queries of `--profile` and what they measured so far.
pub(crate) struct Profiler {
    pub(crate) queries: wgpu::QuerySet,
    pub(crate) resolve: wgpu::Buffer,
    pub(crate) staging: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    pub(crate) period: f64,
    /// Per label: calls and seconds, in the order first seen.
    pub(crate) totals: Vec<crate::backend::KernelTime>,
    pub(crate) steps: usize,
}

/// Timestamps one query set holds (wgpu's `QUERY_SET_MAX_QUERIES`).
pub(crate) const MAX_QUERIES: usize = 4096;

/// Record `plans` in one encoder and submit it.
pub(crate) fn submit(ctx: &GpuContext, plans: &[&[Dispatch]]) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    record(&mut enc, plans);
    ctx.queue.submit([enc.finish()]);
}

/// Seconds per run of `plan`: `reps` runs back to back in one submission, timed from submit to
/// idle, after one untimed run.
pub(crate) async fn time_plan(ctx: &GpuContext, plan: &[Dispatch], reps: usize) -> Result<f64> {
    submit(ctx, &[plan]);
    ctx.wait().await?;
    let start = web_time::Instant::now();
    submit(ctx, &vec![plan; reps.max(1)]);
    ctx.wait().await?;
    Ok(start.elapsed().as_secs_f64() / reps.max(1) as f64)
}

/// Fail with the sizes if a dispatch of `groups` workgroups exceeds the adapter's limit.
pub(crate) fn check_groups<const N: usize>(
    ctx: &GpuContext,
    what: String,
    groups: [usize; N],
) -> Result<()> {
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > max as usize) {
        let grid: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        return Err(Error::TooLarge {
            buffer: what,
            needed: format!("{} workgroups", grid.join("x")),
            limit: "max_compute_workgroups_per_dimension",
            allowed: max.to_string(),
        });
    }
    Ok(())
}

/// Run an error scope around `f` (a future: it starts here, inside the scope): out-of-memory and
/// validation errors become `Error::Gpu`.
pub(crate) async fn scoped<T>(
    ctx: &GpuContext,
    what: &str,
    f: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f.await;
    let v = validation.pop().await;
    let o = oom.pop().await;
    if let Some(e) = o {
        return Err(Error::Gpu(format!("out of GPU memory {what}: {e}")));
    }
    if let Some(e) = v {
        return Err(Error::Gpu(format!("{what}: {e}")));
    }
    out
}
