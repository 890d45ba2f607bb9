//! The GPU backend: every tensor resident on the device, whole chunks of epochs recorded into one
//! compute pass of one command encoder, the loss of each epoch written to a history buffer on the
//! GPU (the epoch index kept there too), and one readback per chunk.
//!
//! Every matrix lives on the GPU as an rgba32float texture (a texel holds 4 consecutive elements
//! of a row) with both dimensions padded to a multiple of 4 and the padding zero (see
//! `shaders/matmul.wgsl`); uploads pad and readbacks strip it. A kernel cannot read and write one
//! texture, so each weight matrix has two: an epoch reads one and its optimizer step writes the
//! other, and the next epoch swaps them (two recorded plans, chosen by the epoch's parity).
//! Biases and the optimizer's state are storage buffers, updated in place.
//!
//! One epoch of an L-layer net is 3L dispatches (L forward + 1 reduce + (L-1) + L backward), plus
//! L `bias_update` with biases:
//! - forward: `matmul[relu]` (or `[store]` without activation) for each hidden layer,
//!   `matmul[sq-err]` or `[abs-err]` for the output layer (fused with the loss and its gradient),
//!   `loss_reduce` (deterministic sum into the history, and the optimizer's step counters);
//! - backward, from the last layer down: `matmul[mask]` (input gradient g·wᵀ through the ReLU,
//!   while w is still the old weight), then `matmul[update]` (weight gradient aᵀ·g fused with the
//!   optimizer step, into the other texture of the pair), then `bias_update`.

pub mod context;
pub mod kernels;

pub use context::{list_adapters, AdapterEntry, DeviceChoice, GpuContext};
pub use kernels::{Block, MatmulKey, Mode, Opt};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::init::{HostState, Matrix, Params};
use crate::io::summary::DeviceSummary;
use crate::job::{Activation, Job};
use kernels::{MATRIX_FORMAT, OPT_BINDING};
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Uniform block of `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    /// lr for `Mode::Update`, the loss gradient's factor for the error modes.
    scalar: f32,
    /// Real (unpadded) rows of C: the bias is added to these only.
    rows: u32,
    /// The optimizer's hyperparameters (mu or beta1, beta2, eps) for `Mode::Update`.
    hyper: [f32; 3],
}

/// Uniform block of `shaders/bias_update.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct BiasParams {
    rows: u32,
    cols4: u32,
    lr: f32,
    hyper: [f32; 3],
    _pad: [u32; 2],
}

/// Uniform block of `shaders/loss_reduce.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    len: u32,
    cols: u32,
    cols_padded: u32,
    scale: f32,
    beta1: f32,
    beta2: f32,
    _pad: [u32; 2],
}

/// `n` rounded up to a multiple of 4: the padded size of every matrix dimension on the GPU.
pub fn pad4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// A row-major `[rows, cols]` matrix in the GPU layout `[pad4(rows), pad4(cols)]`, the new
/// elements set to `fill` (zero for real data; tests poison with NaN).
pub fn to_padded(rows: usize, cols: usize, data: &[f32], fill: f32) -> Vec<f32> {
    let (pr, pc) = (pad4(rows), pad4(cols));
    let mut out = vec![fill; pr * pc];
    for r in 0..rows {
        out[r * pc..r * pc + cols].copy_from_slice(&data[r * cols..(r + 1) * cols]);
    }
    out
}

/// The `[rows, cols]` matrix inside a padded GPU-layout one.
pub fn from_padded(rows: usize, cols: usize, padded: &[f32]) -> Vec<f32> {
    let pc = pad4(cols);
    (0..rows)
        .flat_map(|r| padded[r * pc..r * pc + cols].iter().copied())
        .collect()
}

/// One recorded dispatch: built once, replayed every epoch.
struct Dispatch {
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

/// The GPU's `state` at the start: epoch index 0, optimizer step 0, beta1^0 = beta2^0 = 1.
const INITIAL_COUNTERS: [u32; 4] = [0, 0, 0x3f80_0000, 0x3f80_0000];

const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

fn too_large(ctx: &GpuContext, label: &str, bytes: u64) -> Result<()> {
    let l = &ctx.limits;
    let fmt = |b: u64| format!("{b} bytes ({:.1} MiB)", b as f64 / (1u64 << 20) as f64);
    if bytes > l.max_storage_buffer_binding_size {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: fmt(bytes),
            limit: "max_storage_buffer_binding_size",
            allowed: fmt(l.max_storage_buffer_binding_size),
        });
    }
    if bytes > l.max_buffer_size {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: fmt(bytes),
            limit: "max_buffer_size",
            allowed: fmt(l.max_buffer_size),
        });
    }
    Ok(())
}

/// A matrix on the GPU: an rgba32float texture `pad4(cols) / 4` texels wide and `pad4(rows)` high.
pub struct GpuMatrix {
    pub texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    pub rows: usize,
    pub cols: usize,
}

impl GpuMatrix {
    fn extent(rows: usize, cols: usize) -> wgpu::Extent3d {
        wgpu::Extent3d {
            width: (pad4(cols) / 4) as u32,
            height: pad4(rows) as u32,
            depth_or_array_layers: 1,
        }
    }

    /// The whole padded matrix, `[pad4(rows), pad4(cols)]` row-major.
    pub fn read_padded(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        ctx.read_texture(&self.texture)
    }

    /// The `[rows, cols]` matrix, padding stripped.
    pub fn read(&self, ctx: &GpuContext) -> Result<Matrix> {
        let padded = self.read_padded(ctx)?;
        Ok(Matrix::from_vec(
            self.rows,
            self.cols,
            from_padded(self.rows, self.cols, &padded),
        ))
    }
}

/// A `[rows, cols]` matrix in the padded GPU layout, zero-filled, or holding `data` (row-major,
/// unpadded) if given.
fn matrix(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    data: Option<&[f32]>,
) -> Result<GpuMatrix> {
    let padded = data.map(|d| to_padded(rows, cols, d, 0.0));
    padded_matrix(ctx, label, rows, cols, padded.as_deref())
}

/// A vector of `n` f32 (a bias) in a storage buffer of `pad4(n)`, the padding set to `fill`,
/// holding `data` if given (else `fill` throughout).
fn vector(
    ctx: &GpuContext,
    label: &str,
    n: usize,
    data: Option<&[f32]>,
    fill: f32,
) -> Result<wgpu::Buffer> {
    let mut v = vec![fill; pad4(n)];
    if let Some(d) = data {
        v[..n].copy_from_slice(d);
    }
    storage(ctx, label, v.len(), Some(&v))
}

/// A `[rows, cols]` matrix filled with `padded` (`[pad4(rows), pad4(cols)]`, padding included) if
/// given, else zeros; checked against the adapter's texture limits first.
fn padded_matrix(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    padded: Option<&[f32]>,
) -> Result<GpuMatrix> {
    let size = GpuMatrix::extent(rows, cols);
    let max = ctx.limits.max_texture_dimension_2d;
    if size.width > max || size.height > max {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: format!(
                "a {}x{} texture ({} rows, {} columns / 4)",
                size.width,
                size.height,
                pad4(rows),
                pad4(cols)
            ),
            limit: "max_texture_dimension_2d",
            allowed: max.to_string(),
        });
    }
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: MATRIX_FORMAT,
        usage: wgpu::TextureUsages::STORAGE_BINDING
            | wgpu::TextureUsages::COPY_SRC
            | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    if let Some(p) = padded {
        debug_assert_eq!(p.len(), pad4(rows) * pad4(cols));
        ctx.queue.write_texture(
            texture.as_image_copy(),
            bytemuck::cast_slice(p),
            wgpu::TexelCopyBufferLayout {
                offset: 0,
                bytes_per_row: Some(size.width * 16),
                rows_per_image: Some(size.height),
            },
            size,
        );
    }
    let view = texture.create_view(&Default::default());
    Ok(GpuMatrix {
        texture,
        view,
        rows,
        cols,
    })
}

/// A storage buffer of `len` f32, filled with `data` if given; checked against the limits first.
fn storage(
    ctx: &GpuContext,
    label: &str,
    len: usize,
    data: Option<&[f32]>,
) -> Result<wgpu::Buffer> {
    let bytes = (len.max(1) * 4) as u64;
    too_large(ctx, label, bytes)?;
    Ok(match data {
        Some(d) => ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents: bytemuck::cast_slice(d),
                usage: STORAGE,
            }),
        None => ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: STORAGE,
            mapped_at_creation: false,
        }),
    })
}

fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, v: &T) -> wgpu::Buffer {
    ctx.device
        .create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::bytes_of(v),
            usage: wgpu::BufferUsages::UNIFORM,
        })
}

/// The matrices one matmul dispatch binds.
struct MatmulBind<'a> {
    a: &'a GpuMatrix,
    b: &'a GpuMatrix,
    c: &'a GpuMatrix,
    aux: Option<&'a GpuMatrix>,
    aux_out: Option<&'a wgpu::Buffer>,
    bias: Option<&'a wgpu::Buffer>,
    /// The optimizer of `Mode::Update` (None: plain SGD, or another mode).
    opt: Option<OptBind<'a>>,
}

/// What an optimizer step binds besides the parameters and their gradient.
#[derive(Clone, Copy)]
struct OptBind<'a> {
    /// The optimizer's state of the parameters, as many buffers as the step keeps.
    state: [Option<&'a wgpu::Buffer>; 2],
    /// The step counters (`loss_reduce`'s state).
    counters: &'a wgpu::Buffer,
    /// mu, or beta1, beta2, eps.
    hyper: [f32; 3],
}

/// A bind group whose binding `i` is `resources[i]`, and, for the kernels that update parameters,
/// the optimizer's bindings from `OPT_BINDING` on.
fn bind_group(
    ctx: &GpuContext,
    label: &str,
    layout: &wgpu::BindGroupLayout,
    resources: Vec<wgpu::BindingResource<'_>>,
    optimizer: Option<[wgpu::BindingResource<'_>; 3]>,
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

/// The optimizer's two state buffers and the step counters, at `OPT_BINDING` on in the kernels
/// that update parameters (dummies where the step keeps no state: plain SGD reads none).
fn optimizer_bindings<'a>(
    ctx: &'a GpuContext,
    opt: Option<OptBind<'a>>,
) -> [wgpu::BindingResource<'a>; 3] {
    let kn = &ctx.kernels;
    let state = opt.map_or([None, None], |o| o.state);
    [
        state[0].unwrap_or(&kn.dummy_opt[0]).as_entire_binding(),
        state[1].unwrap_or(&kn.dummy_opt[1]).as_entire_binding(),
        opt.map_or(&kn.dummy_bias, |o| o.counters)
            .as_entire_binding(),
    ]
}

/// The optimizer's hyperparameters as the kernels' uniforms take them (zeros for plain SGD).
fn hyper(opt: Option<OptBind<'_>>) -> [f32; 3] {
    opt.map_or([0.0; 3], |o| o.hyper)
}

fn matmul_dispatch(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    scalar: f32,
    bind: MatmulBind<'_>,
) -> Result<Dispatch> {
    debug_assert_eq!(key.bias, bind.bias.is_some());
    // An optimizer that keeps state must be given it: the unchecked shader indexes it.
    let given = bind.opt.map_or(0, |o| o.state.iter().flatten().count());
    debug_assert_eq!(key.opt.state_buffers(), given);
    let rows = m;
    let (m, n, k) = (pad4(m), pad4(n), pad4(k));
    let (tile_rows, tile_cols) = key.block.tile();
    let groups = [
        n.div_ceil(tile_cols as usize),
        m.div_ceil(tile_rows as usize),
    ];
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > max as usize) {
        return Err(Error::TooLarge {
            buffer: format!("the {m}x{k}·{k}x{n} product"),
            needed: format!("{}x{} workgroups", groups[0], groups[1]),
            limit: "max_compute_workgroups_per_dimension",
            allowed: max.to_string(),
        });
    }
    let params = uniform(
        ctx,
        "matmul params",
        &MatmulParams {
            m: m as u32,
            n: n as u32,
            k: k as u32,
            scalar,
            rows: rows as u32,
            hyper: hyper(bind.opt),
        },
    );
    let kn = &ctx.kernels;
    let view = wgpu::BindingResource::TextureView;
    let resources = vec![
        params.as_entire_binding(),
        view(&bind.a.view),
        view(&bind.b.view),
        view(&bind.c.view),
        view(bind.aux.map_or(&kn.dummy_read, |m| &m.view)),
        bind.aux_out.unwrap_or(&kn.dummy_rw).as_entire_binding(),
        bind.bias.unwrap_or(&kn.dummy_bias).as_entire_binding(),
    ];
    let optimizer = Some(optimizer_bindings(ctx, bind.opt));
    let bind_group = bind_group(ctx, "matmul", &kn.matmul_layout, resources, optimizer);
    Ok(Dispatch {
        pipeline: kn.matmul(&ctx.device, key),
        bind_group,
        groups: [groups[0] as u32, groups[1] as u32, 1],
    })
}

/// `loss_reduce` of `[rows, cols]` values times `scale`; with `advance = Some((beta1, beta2))` it
/// also advances the optimizer's step counters.
fn loss_reduce_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    scale: f32,
    advance: Option<(f32, f32)>,
    values: &wgpu::Buffer,
    history: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Dispatch {
    let params = uniform(
        ctx,
        "loss_reduce params",
        &ReduceParams {
            len: (rows * cols) as u32,
            cols: cols as u32,
            cols_padded: pad4(cols) as u32,
            scale,
            beta1: advance.map_or(1.0, |a| a.0),
            beta2: advance.map_or(1.0, |a| a.1),
            _pad: [0; 2],
        },
    );
    let kn = &ctx.kernels;
    let resources = vec![
        params.as_entire_binding(),
        values.as_entire_binding(),
        history.as_entire_binding(),
        state.as_entire_binding(),
    ];
    let bind_group = bind_group(ctx, "loss_reduce", &kn.loss_reduce_layout, resources, None);
    Dispatch {
        pipeline: kn.loss_reduce(advance.is_some()),
        bind_group,
        groups: [1, 1, 1],
    }
}

/// What one `bias_update` dispatch binds besides the gradient and the bias.
struct BiasStep<'a> {
    lr: f32,
    /// Store the gradient alone instead of stepping.
    store: bool,
    kind: Opt,
    /// The optimizer's bindings (None: plain SGD).
    opt: Option<OptBind<'a>>,
}

/// `bias_update` of a `[rows, cols]` output gradient into the bias buffer `b`: the optimizer
/// step, or (`store`) the gradient alone.
fn bias_update_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    step: BiasStep<'_>,
    g: &GpuMatrix,
    b: &wgpu::Buffer,
) -> Dispatch {
    let cols4 = pad4(cols) / 4;
    let params = uniform(
        ctx,
        "bias_update params",
        &BiasParams {
            rows: rows as u32,
            cols4: cols4 as u32,
            lr: step.lr,
            hyper: hyper(step.opt),
            _pad: [0; 2],
        },
    );
    let kn = &ctx.kernels;
    let resources = vec![
        params.as_entire_binding(),
        wgpu::BindingResource::TextureView(&g.view),
        b.as_entire_binding(),
    ];
    let given = step.opt.map_or(0, |o| o.state.iter().flatten().count());
    debug_assert_eq!(step.kind.state_buffers(), given);
    let optimizer = Some(optimizer_bindings(ctx, step.opt));
    let layout = &kn.bias_update_layout;
    let bind_group = bind_group(ctx, "bias_update", layout, resources, optimizer);
    Dispatch {
        pipeline: kn.bias_update(&ctx.device, step.store, step.kind),
        bind_group,
        groups: [cols4.div_ceil(64) as u32, 1, 1],
    }
}

/// Record `epochs` epochs into one compute pass: epoch `e` runs `plans[(first + e) % 2]`.
fn record(enc: &mut wgpu::CommandEncoder, plans: [&[Dispatch]; 2], first: usize, epochs: usize) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("epochs"),
        timestamp_writes: None,
    });
    for e in 0..epochs {
        for d in plans[(first + e) % 2] {
            pass.set_pipeline(&d.pipeline);
            pass.set_bind_group(0, &d.bind_group, &[]);
            pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
        }
    }
}

/// Run an error scope around `f`: out-of-memory and validation errors become `Error::Gpu`.
fn scoped<T>(ctx: &GpuContext, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let oom = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
    let validation = ctx.device.push_error_scope(wgpu::ErrorFilter::Validation);
    let out = f();
    let v = pollster::block_on(validation.pop());
    let o = pollster::block_on(oom.pop());
    if let Some(e) = o {
        return Err(Error::Gpu(format!("out of GPU memory {what}: {e}")));
    }
    if let Some(e) = v {
        return Err(Error::Gpu(format!("{what}: {e}")));
    }
    out
}

/// The GPU backend. Build it with [`GpuBackend::new`] from an open [`GpuContext`].
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    /// `weights[l][p]`: the two textures of weight matrix l; epochs of parity p read `[p]` and
    /// write `[1 - p]`.
    weights: Vec<[GpuMatrix; 2]>,
    /// Which texture of each pair holds the current weights.
    parity: usize,
    /// Loss of each epoch of the current chunk.
    history: wgpu::Buffer,
    /// `[epoch index within the chunk, optimizer step t, bits of beta1^t, bits of beta2^t]`
    state: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// One epoch for each parity.
    train_plans: [Vec<Dispatch>; 2],
    /// Same forward and backward, but the gradients stored into `dws` and `dbs`, parameters
    /// untouched.
    grad_plans: [Vec<Dispatch>; 2],
    dws: Vec<GpuMatrix>,
    /// `biases[l]`: `pad4(d_{l+1})` f32, updated in place; empty without biases.
    biases: Vec<wgpu::Buffer>,
    dbs: Vec<wgpu::Buffer>,
    /// The optimizer's state (kept alive; the plans bind it).
    _opt_state: Vec<Vec<wgpu::Buffer>>,
    /// Widths `d_0 .. d_L`, to strip the biases' padding.
    layers: Vec<usize>,
    max_chunk: usize,
    submits: usize,
}

impl GpuBackend {
    /// Upload x, y and the weights once and build every dispatch of an epoch.
    pub fn new(ctx: Arc<GpuContext>, job: &Job, state: &HostState) -> Result<Self> {
        let c = ctx.clone();
        scoped(&c, "setting up the job", || Self::build(ctx, job, state))
    }

    fn build(ctx: Arc<GpuContext>, job: &Job, host: &HostState) -> Result<Self> {
        let b = job.batch;
        let depth = job.depth();
        let d = &job.layers;
        let x = matrix(
            &ctx,
            &format!("x ({b}x{} f32)", d[0]),
            b,
            d[0],
            Some(&host.x.data),
        )?;
        let y = matrix(
            &ctx,
            &format!("y ({b}x{} f32)", d[depth]),
            b,
            d[depth],
            Some(&host.y.data),
        )?;
        // w1, w2, ... as uploaded (and the second texture of each pair), and dw1, dw2, ... (the
        // gradients, for `gradients()`).
        let per_weight = |name: &str, upload: bool| {
            host.weights
                .iter()
                .enumerate()
                .map(|(l, w)| {
                    let label = format!("{name}{} ({}x{} f32)", l + 1, w.rows, w.cols);
                    matrix(&ctx, &label, w.rows, w.cols, upload.then_some(&w.data[..]))
                })
                .collect::<Result<Vec<_>>>()
        };
        let weights: Vec<[GpuMatrix; 2]> = per_weight("w", true)?
            .into_iter()
            .zip(per_weight("w", false)?)
            .map(|(w0, w1)| [w0, w1])
            .collect();
        let dws = per_weight("dw", false)?;
        let per_bias = |name: &str, upload: bool| {
            host.biases
                .iter()
                .enumerate()
                .map(|(l, bias)| {
                    let label = format!("{name}{} ({} f32)", l + 1, bias.cols);
                    vector(
                        &ctx,
                        &label,
                        bias.cols,
                        upload.then_some(&bias.data[..]),
                        0.0,
                    )
                })
                .collect::<Result<Vec<_>>>()
        };
        let biases = per_bias("b", true)?;
        let dbs = per_bias("db", false)?;
        // The optimizer's state: per weight, then per bias, as many zeroed buffers as the step
        // keeps (momentum: 1, Adam: 2), in the padded layout of what they follow.
        let opt = Opt::of(&job.optimizer);
        let opt_state = host
            .weights
            .iter()
            .chain(&host.biases)
            .enumerate()
            .map(|(i, m)| {
                let len = pad4(m.rows) * pad4(m.cols);
                (0..opt.state_buffers())
                    .map(|s| {
                        let label = format!("optimizer state {} of tensor {}", s + 1, i + 1);
                        storage(&ctx, &label, len, None)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let o = &job.optimizer;
        let advance = (opt == Opt::Adam).then_some((o.beta1, o.beta2));
        // acts[l]: ReLU output of hidden layer l; grads[l]: gradient w.r.t. layer l's output.
        let acts = (0..depth - 1)
            .map(|l| {
                matrix(
                    &ctx,
                    &format!("a{} ({b}x{} f32)", l + 1, d[l + 1]),
                    b,
                    d[l + 1],
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let grads = (0..depth)
            .map(|l| {
                matrix(
                    &ctx,
                    &format!("g{} ({b}x{} f32)", l + 1, d[l + 1]),
                    b,
                    d[l + 1],
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let sq = storage(&ctx, "squared errors", pad4(b) * pad4(d[depth]), None)?;

        let flops = job.flops_per_epoch().max(1.0);
        // Bound one submission's work (about 20 GFLOP) so no driver watchdog fires on big jobs.
        let max_chunk = ((2e10 / flops) as usize).clamp(1, 100_000);
        let history = storage(&ctx, "loss history", max_chunk, None)?;
        // [epoch in chunk, optimizer step t, bits of beta1^t, bits of beta2^t]
        let state = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("epoch index and optimizer counters"),
                contents: bytemuck::cast_slice(&INITIAL_COUNTERS),
                usage: STORAGE,
            });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history readback"),
            size: (max_chunk * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // One matmul dispatch of `op(a)[m,k]·op(b)[k,n]`, its block size chosen for the shape.
        let mm = |(trans_a, trans_b, mode): (bool, bool, Mode), dims, scalar, bind: MatmulBind| {
            let block = Block::for_shape(ctx.info.device_type, dims);
            let key = MatmulKey {
                trans_a,
                trans_b,
                mode,
                block,
                bias: bind.bias.is_some(),
                opt: if mode == Mode::Update { opt } else { Opt::Sgd },
            };
            matmul_dispatch(&ctx, key, dims, scalar, bind)
        };
        let bias = |l: usize| biases.get(l);
        let relu = job.activation == Activation::Relu;
        let (hidden_mode, input_grad_mode) = if relu {
            (Mode::Relu, Mode::Mask)
        } else {
            (Mode::Store, Mode::Store)
        };
        let n_out = b * d[depth];
        let loss_mode = Mode::for_loss(job.loss);
        let bind = |a, b, c, aux, aux_out| MatmulBind {
            a,
            b,
            c,
            aux,
            aux_out,
            bias: None,
            opt: None,
        };
        // The optimizer's bindings for tensor `i` (weights, then biases).
        let opt_of = |i: usize| OptBind {
            state: [opt_state[i].first(), opt_state[i].get(1)],
            counters: &state,
            hyper: match opt {
                Opt::Adam => [o.beta1, o.beta2, o.eps],
                _ => [o.momentum, 0.0, 0.0],
            },
        };
        // One epoch that reads the weights from texture `p` of each pair and, when `update`,
        // writes the stepped weights to texture `1 - p`.
        let plan = |update: bool, p: usize| -> Result<Vec<Dispatch>> {
            let w = |l: usize| &weights[l][p];
            let mut plan = Vec::new();
            for l in 0..depth {
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (b, d[l + 1], d[l]);
                plan.push(if l + 1 < depth {
                    // a_l = act(a_{l-1} · w_l)
                    mm(
                        (false, false, hidden_mode),
                        dims,
                        0.0,
                        MatmulBind {
                            bias: bias(l),
                            ..bind(input, w(l), &acts[l], None, None)
                        },
                    )?
                } else {
                    // g_L = dLoss/d(pred) of pred = a_{L-1} · w_L, per-element losses into sq
                    mm(
                        (false, false, loss_mode),
                        dims,
                        job.loss.grad_coef(n_out),
                        MatmulBind {
                            bias: bias(l),
                            ..bind(input, w(l), &grads[l], Some(&y), Some(&sq))
                        },
                    )?
                });
            }
            plan.push(loss_reduce_dispatch(
                &ctx,
                (b, d[depth]),
                job.loss.scale(n_out),
                if update { advance } else { None },
                &sq,
                &history,
                &state,
            ));
            for l in (0..depth).rev() {
                if l > 0 {
                    // g_{l-1} = (g_l · w_lᵀ) ⊙ [a_{l-1} > 0] (no mask without ReLU), from the
                    // weights before the step
                    let dims = (b, d[l], d[l + 1]);
                    let aux = relu.then_some(&acts[l - 1]);
                    let bd = bind(&grads[l], w(l), &grads[l - 1], aux, None);
                    plan.push(mm((false, true, input_grad_mode), dims, 0.0, bd)?);
                }
                // w_l' = step(w_l, a_{l-1}ᵀ · g_l) (or dw_l = a_{l-1}ᵀ · g_l)
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (d[l], d[l + 1], b);
                plan.push(if update {
                    mm(
                        (true, false, Mode::Update),
                        dims,
                        job.lr,
                        MatmulBind {
                            opt: Some(opt_of(l)),
                            ..bind(input, &grads[l], &weights[l][1 - p], Some(w(l)), None)
                        },
                    )?
                } else {
                    mm(
                        (true, false, Mode::Store),
                        dims,
                        0.0,
                        bind(input, &grads[l], &dws[l], None, None),
                    )?
                });
                // b_l' = step(b_l, Σ_rows g_l) (or db_l = Σ_rows g_l)
                if let Some(b_l) = bias(l) {
                    let rc = (b, d[l + 1]);
                    let step = BiasStep {
                        lr: job.lr,
                        store: !update,
                        kind: opt,
                        opt: Some(opt_of(depth + l)),
                    };
                    let target = if update { b_l } else { &dbs[l] };
                    plan.push(bias_update_dispatch(&ctx, rc, step, &grads[l], target));
                }
            }
            Ok(plan)
        };
        let train_plans = [plan(true, 0)?, plan(true, 1)?];
        let grad_plans = [plan(false, 0)?, plan(false, 1)?];

        // Warm-up: one epoch of the parity-0 plan, so that implementations which compile a
        // pipeline at its first dispatch (lavapipe: about 1 s for each 16x16 variant) do it here
        // and not in the timed training. It changes nothing training can see: it reads the
        // weights from texture 0 and writes only scratch (activations, gradients, texture 1 of
        // each pair, history slot 0 and the epoch index, which every chunk resets), the biases,
        // updated in place, are saved before and restored after, and the optimizer's state and
        // counters are reset to their start after.
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        let saved = biases
            .iter()
            .map(|b| {
                let copy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("bias during warm-up"),
                    size: b.size(),
                    usage: wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.copy_buffer_to_buffer(b, 0, &copy, 0, b.size());
                copy
            })
            .collect::<Vec<_>>();
        record(&mut enc, [&train_plans[0], &train_plans[0]], 0, 1);
        for (b, copy) in biases.iter().zip(&saved) {
            enc.copy_buffer_to_buffer(copy, 0, b, 0, b.size());
        }
        for buf in opt_state.iter().flatten() {
            enc.clear_buffer(buf, 0, None);
        }
        ctx.queue.submit([enc.finish()]);
        ctx.queue
            .write_buffer(&state, 0, bytemuck::cast_slice(&INITIAL_COUNTERS));
        ctx.wait()?;

        Ok(GpuBackend {
            ctx,
            weights,
            parity: 0,
            history,
            state,
            staging,
            train_plans,
            grad_plans,
            dws,
            biases,
            dbs,
            _opt_state: opt_state,
            layers: job.layers.clone(),
            max_chunk,
            submits: 0,
        })
    }

    /// Record `epochs` epochs in one encoder, submit once, read the losses back once.
    fn submit_chunk(&mut self, grad_only: bool, epochs: usize) -> Result<Vec<f32>> {
        assert!(epochs >= 1 && epochs <= self.max_chunk);
        let ctx = &self.ctx;
        ctx.queue
            .write_buffer(&self.state, 0, bytemuck::bytes_of(&0u32));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("chunk"),
            });
        let plans = if grad_only {
            &self.grad_plans
        } else {
            &self.train_plans
        };
        record(&mut enc, [&plans[0], &plans[1]], self.parity, epochs);
        let bytes = (epochs * 4) as u64;
        enc.copy_buffer_to_buffer(&self.history, 0, &self.staging, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        self.submits += 1;
        let losses = ctx.map_f32(&self.staging, bytes)?;
        if !grad_only {
            self.parity = (self.parity + epochs) % 2;
        }
        Ok(losses)
    }

    /// The loss and the gradients at the current parameters (no update): for parity tests.
    pub fn gradients(&mut self) -> Result<(f32, Params)> {
        let loss = self.submit_chunk(true, 1)?[0];
        let weights = self
            .dws
            .iter()
            .map(|m| m.read(&self.ctx))
            .collect::<Result<_>>()?;
        Ok((
            loss,
            Params {
                weights,
                biases: self.read_biases(&self.dbs)?,
            },
        ))
    }

    /// Read back one `[1, d_{l+1}]` bias (or bias gradient) per layer.
    fn read_biases(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Matrix>> {
        bufs.iter()
            .enumerate()
            .map(|(l, buf)| {
                let n = self.layers[l + 1];
                let v = self.ctx.read_f32(buf, (pad4(n) * 4) as u64)?;
                Ok(Matrix::from_vec(1, n, v[..n].to_vec()))
            })
            .collect()
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

impl Backend for GpuBackend {
    fn describe(&self) -> DeviceSummary {
        let i = &self.ctx.info;
        DeviceSummary {
            kind: "gpu".into(),
            name: i.name.clone(),
            device_type: format!("{:?}", i.device_type),
            backend: i.backend.to_string(),
            driver: format!("{} {}", i.driver, i.driver_info).trim().to_string(),
        }
    }

    fn run(&mut self, epochs: usize) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(epochs);
        let mut left = epochs;
        while left > 0 {
            let n = left.min(self.max_chunk);
            out.extend(self.submit_chunk(false, n)?);
            left -= n;
        }
        Ok(out)
    }

    fn read_params(&mut self) -> Result<Params> {
        Ok(Params {
            weights: self
                .weights
                .iter()
                .map(|pair| pair[self.parity].read(&self.ctx))
                .collect::<Result<_>>()?,
            biases: self.read_biases(&self.biases)?,
        })
    }

    fn gradients(&mut self) -> Result<(f32, Params)> {
        GpuBackend::gradients(self)
    }

    fn max_chunk(&self) -> usize {
        self.max_chunk
    }

    fn dispatches_per_epoch(&self) -> usize {
        self.train_plans[0].len()
    }

    fn submits(&self) -> usize {
        self.submits
    }
}

/// What [`run_matmul`] produced.
pub struct MatmulOutput {
    /// C, `[m, n]` row-major.
    pub c: Vec<f32>,
    /// AUX_OUT for the error modes (`[m, n]`, NaN where unwritten), empty otherwise.
    pub aux_out: Vec<f32>,
    /// Whether the padding of C (and of AUX_OUT) holds exact zeros afterwards, as the next kernel
    /// relies on. It was poisoned with NaN before.
    pub padding_zero: bool,
}

/// Run one matmul variant on its own, for kernel tests: `a`, `b` row-major as stored (see the
/// shader), `scalar` the lr (`Mode::Update`) or the loss gradient's factor (error modes), `c_init`
/// C's content before the kernel (poison it to catch unwritten elements; for
/// `Mode::Update`, the weights before the step, which go to AUX as in training while C, the other
/// texture of the pair, is poisoned with NaN), `aux` the AUX input where the mode needs it.
#[allow(clippy::too_many_arguments)]
pub fn run_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    scalar: f32,
    c_init: &[f32],
    aux: Option<&[f32]>,
    bias: Option<&[f32]>,
) -> Result<MatmulOutput> {
    let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
    let (c_init, aux) = if key.mode == Mode::Update {
        (vec![f32::NAN; m * n], Some(c_init))
    } else {
        (c_init.to_vec(), aux)
    };
    scoped(ctx, "running matmul", || {
        let ab = matrix(ctx, "a", a_rows, a_cols, Some(a))?;
        let bb = matrix(ctx, "b", b_rows, b_cols, Some(b))?;
        let cb = padded_matrix(ctx, "c", m, n, Some(&to_padded(m, n, &c_init, f32::NAN)))?;
        let auxb = aux.map(|v| matrix(ctx, "aux", m, n, Some(v))).transpose()?;
        let nan = vec![f32::NAN; pad4(m) * pad4(n)];
        let outb = storage(ctx, "aux_out", nan.len(), Some(&nan))?;
        let biasb = bias
            .map(|v| vector(ctx, "bias", n, Some(v), 0.0))
            .transpose()?;
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            scalar,
            MatmulBind {
                a: &ab,
                b: &bb,
                c: &cb,
                aux: auxb.as_ref(),
                aux_out: key.mode.is_loss().then_some(&outb),
                bias: biasb.as_ref(),
                opt: None,
            },
        )?;
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, [&[d], &[]], 0, 1);
        ctx.queue.submit([enc.finish()]);
        let c = cb.read_padded(ctx)?;
        let mut padding_zero = padding_is_zero(m, n, &c);
        let aux_out = if key.mode.is_loss() {
            let o = ctx.read_f32(&outb, (nan.len() * 4) as u64)?;
            padding_zero &= padding_is_zero(m, n, &o);
            from_padded(m, n, &o)
        } else {
            Vec::new()
        };
        Ok(MatmulOutput {
            c: from_padded(m, n, &c),
            aux_out,
            padding_zero,
        })
    })
}

fn padding_is_zero(rows: usize, cols: usize, padded: &[f32]) -> bool {
    let pc = pad4(cols);
    padded
        .iter()
        .enumerate()
        .all(|(i, &v)| (i / pc < rows && i % pc < cols) || v == 0.0)
}

/// Run `loss_reduce` once on a `[rows, cols]` matrix (row-major, unpadded; it is padded with NaN,
/// which the kernel must skip). Returns what it wrote to the history and the epoch index it left.
pub fn run_loss_reduce(
    ctx: &GpuContext,
    values: &[f32],
    (rows, cols): (usize, usize),
) -> Result<(f32, u32)> {
    scoped(ctx, "running loss_reduce", || {
        let vb = storage(
            ctx,
            "values",
            pad4(rows) * pad4(cols),
            Some(&to_padded(rows, cols, values, f32::NAN)),
        )?;
        let hb = storage(ctx, "history", 4, Some(&[f32::NAN; 4]))?;
        let sb = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("state"),
                contents: bytemuck::cast_slice(&[2u32, 0, 0, 0]),
                usage: STORAGE,
            });
        let d = loss_reduce_dispatch(ctx, (rows, cols), 1.0, None, &vb, &hb, &sb);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, [&[d], &[]], 0, 1);
        ctx.queue.submit([enc.finish()]);
        let h = ctx.read_f32(&hb, 16)?;
        let s = ctx.read_f32(&sb, 4)?;
        Ok((h[2], s[0].to_bits()))
    })
}

/// Run `bias_update` once on a `[rows, cols]` output gradient `g` (row-major, unpadded; padded
/// with NaN, which the kernel must not read) and a bias `b` (`[cols]`): the SGD step with `lr`, or
/// (`store`) the gradient alone into a NaN-poisoned buffer. Returns the new `[cols]` values.
pub fn run_bias_update(
    ctx: &GpuContext,
    g: &[f32],
    (rows, cols): (usize, usize),
    b: &[f32],
    lr: f32,
    store: bool,
) -> Result<Vec<f32>> {
    scoped(ctx, "running bias_update", || {
        let gm = padded_matrix(
            ctx,
            "g",
            rows,
            cols,
            Some(&to_padded(rows, cols, g, f32::NAN)),
        )?;
        let bb = if store {
            vector(ctx, "b", cols, None, f32::NAN)?
        } else {
            vector(ctx, "b", cols, Some(b), 0.0)?
        };
        let step = BiasStep {
            lr,
            store,
            kind: Opt::Sgd,
            opt: None,
        };
        let d = bias_update_dispatch(ctx, (rows, cols), step, &gm, &bb);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, [&[d], &[]], 0, 1);
        ctx.queue.submit([enc.finish()]);
        let out = ctx.read_f32(&bb, (pad4(cols) * 4) as u64)?;
        Ok(out[..cols].to_vec())
    })
}

/// Time `reps` back-to-back dispatches of one matmul variant on resident matrices (zeros: the
/// kernel's speed does not depend on the values). Returns seconds per dispatch, from submit to
/// completion of all `reps`, after one warm-up dispatch.
pub fn time_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    reps: usize,
) -> Result<f64> {
    scoped(ctx, "timing matmul", || {
        let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
        let ab = matrix(ctx, "a", a_rows, a_cols, None)?;
        let bb = matrix(ctx, "b", b_rows, b_cols, None)?;
        let cb = matrix(ctx, "c", m, n, None)?;
        let auxb = matrix(ctx, "aux", m, n, None)?;
        let outb = storage(ctx, "aux_out", pad4(m) * pad4(n), None)?;
        let biasb = storage(ctx, "bias", pad4(n), None)?;
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            0.0,
            MatmulBind {
                a: &ab,
                b: &bb,
                c: &cb,
                aux: (key.mode.is_loss() || matches!(key.mode, Mode::Mask | Mode::Update))
                    .then_some(&auxb),
                aux_out: key.mode.is_loss().then_some(&outb),
                bias: key.bias.then_some(&biasb),
                opt: None,
            },
        )?;
        let plan = [d];
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, [&plan, &plan], 0, 1);
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        let start = std::time::Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, [&plan, &plan], 0, reps.max(1));
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64() / reps.max(1) as f64)
    })
}
