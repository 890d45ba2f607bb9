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
//!
//! With dynamic depth (`Job::dynamic`), an epoch runs the products `Job::applications(k)`, the
//! shared layer k times; each k has its own recorded plan. The shared layer's gradient is summed
//! over its uses, from the last down, in a storage buffer (`matmul[store, ACC_OUT]` for the first
//! ones, then `matmul[update, ACC_IN]`, which adds the sum and steps), and its bias's likewise in
//! `bias_update`. Its texture pair flips only in epochs that use it, and with Adam it has its own
//! step counters (PyTorch skips a parameter without a gradient), so a plan is keyed by (k, the
//! parity of the other weights, the parity of the shared one).

pub mod context;
pub mod kernels;
pub mod tune;

pub use context::{list_adapters, AdapterEntry, DeviceChoice, GpuContext, Timestamps};
pub use kernels::{Acc, Block, MatmulKey, Mode, Opt};

use crate::backend::{Backend, TrainState};
use crate::error::{Error, Result};
use crate::init::{HostState, Matrix, Params};
use crate::io::summary::DeviceSummary;
use crate::job::{Activation, Job};
use kernels::{MATRIX_FORMAT, OPT_BINDING};
use std::collections::HashMap;
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
    /// The band of rows of C this dispatch computes (see [`Banded`]).
    row0: u32,
    row_end: u32,
    _pad: [u32; 2],
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
    /// What `--profile` reports the dispatch's time under: the kernel, its variant and shape.
    label: String,
    pipeline: wgpu::ComputePipeline,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
}

/// The GPU's `state` at the start: epoch index 0, optimizer step 0, beta1^0 = beta2^0 = 1.
const INITIAL_COUNTERS: [u32; 4] = [0, 0, 0x3f80_0000, 0x3f80_0000];

/// Byte offset of the shared layer's own step counters in the `state` buffer (`SHARED` in
/// `shaders/loss_reduce.wgsl`): a multiple of every adapter's
/// `min_storage_buffer_offset_alignment`, which WebGPU caps at 256.
const SHARED_COUNTERS_OFFSET: u64 = 256;

/// The whole `state` buffer at the start: [`INITIAL_COUNTERS`], and the shared layer's at
/// [`SHARED_COUNTERS_OFFSET`].
fn initial_state() -> Vec<u32> {
    let mut v = vec![0u32; SHARED_COUNTERS_OFFSET as usize / 4 + 4];
    v[..4].copy_from_slice(&INITIAL_COUNTERS);
    v[SHARED_COUNTERS_OFFSET as usize / 4..].copy_from_slice(&INITIAL_COUNTERS);
    v
}

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

    /// Overwrite with the `[rows, cols]` row-major `data` (padding zero).
    pub fn write(&self, ctx: &GpuContext, data: &[f32]) {
        let padded = to_padded(self.rows, self.cols, data, 0.0);
        write_texels(
            ctx,
            &self.texture,
            &padded,
            Self::extent(self.rows, self.cols),
        );
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

/// Upload `padded` (rgba32float texels, row after row, layer after layer) into the whole of
/// `texture`, of `size`.
fn write_texels(ctx: &GpuContext, texture: &wgpu::Texture, padded: &[f32], size: wgpu::Extent3d) {
    ctx.queue.write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(padded),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(size.width * 16),
            rows_per_image: Some(size.height),
        },
        size,
    );
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
        write_texels(ctx, &texture, p, size);
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

/// A per-element buffer in the padded layout of a `[rows, cols]` matrix (`pad4(rows)·pad4(cols)`
/// f32: a weight's optimizer state, a shared weight's gradient sum), split into bands of
/// `band_rows` rows, one buffer each, so that no buffer exceeds the adapter's
/// `max_storage_buffer_binding_size` or `max_buffer_size`. A product writing such a buffer runs
/// as one dispatch per band (`row0..row_end` in `shaders/matmul.wgsl`). Most jobs have one band.
pub struct Banded {
    band_rows: usize,
    bufs: Vec<wgpu::Buffer>,
    cols: usize,
}

impl Banded {
    /// Zeros.
    fn new(ctx: &GpuContext, label: &str, rows: usize, cols: usize) -> Result<Self> {
        let l = &ctx.limits;
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
        let row_bytes = (pad4(cols) * 4) as u64;
        let fit = ((limit / row_bytes) as usize / 4) * 4;
        if fit == 0 {
            let which = if l.max_storage_buffer_binding_size <= l.max_buffer_size {
                "max_storage_buffer_binding_size"
            } else {
                "max_buffer_size"
            };
            return Err(Error::TooLarge {
                buffer: label.into(),
                needed: format!("{} bytes for its smallest band (4 rows)", 4 * row_bytes),
                limit: which,
                allowed: format!("{limit} bytes"),
            });
        }
        let total = pad4(rows);
        let band_rows = fit.min(total).max(4);
        let bufs = (0..total.div_ceil(band_rows))
            .map(|j| {
                let r0 = j * band_rows;
                let n = (total - r0).min(band_rows) * pad4(cols);
                let name = format!("{label} (band {})", j + 1);
                storage(ctx, &name, n, None)
            })
            .collect::<Result<Vec<_>>>()?;
        if bufs.len() > 1 {
            log::info!("{label}: {} bands of {band_rows} rows", bufs.len());
        }
        Ok(Banded {
            band_rows,
            bufs,
            cols,
        })
    }

    /// One buffer holding the whole matrix (already checked against the limits).
    fn whole(buf: wgpu::Buffer, rows: usize, cols: usize) -> Self {
        Banded {
            band_rows: pad4(rows).max(4),
            bufs: vec![buf],
            cols,
        }
    }

    /// `(row0, row_end)` of each band, in padded rows.
    fn bands(&self) -> Vec<(usize, usize)> {
        (self.bufs.iter())
            .enumerate()
            .map(|(j, b)| {
                let r0 = j * self.band_rows;
                (r0, r0 + b.size() as usize / 4 / pad4(self.cols))
            })
            .collect()
    }

    /// The whole padded matrix.
    fn read(&self, ctx: &GpuContext) -> Result<Vec<f32>> {
        let mut out = Vec::new();
        for b in &self.bufs {
            out.extend(ctx.read_f32(b, b.size())?);
        }
        Ok(out)
    }

    /// Overwrite with the whole padded matrix.
    fn write(&self, ctx: &GpuContext, padded: &[f32]) {
        let mut at = 0;
        for b in &self.bufs {
            let n = b.size() as usize / 4;
            ctx.queue
                .write_buffer(b, 0, bytemuck::cast_slice(&padded[at..at + n]));
            at += n;
        }
    }
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
    aux_out: Option<&'a Banded>,
    bias: Option<&'a wgpu::Buffer>,
    /// The optimizer of `Mode::Update` (None: plain SGD, or another mode).
    opt: Option<OptBind<'a>>,
}

/// What an optimizer step binds besides the parameters and their gradient.
#[derive(Clone, Copy)]
struct OptBind<'a> {
    /// The optimizer's state of the parameters, as many buffers as the step keeps.
    state: [Option<&'a Banded>; 2],
    /// The step counters (`loss_reduce`'s state) and their byte offset in it: 0, or
    /// `SHARED_COUNTERS_OFFSET` for a dynamic-depth net's shared layer.
    counters: (&'a wgpu::Buffer, u64),
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

/// The optimizer's two state buffers (of band `band`) and the step counters, at `OPT_BINDING` on
/// in the kernels that update parameters (dummies where the step keeps no state: plain SGD reads
/// none).
fn optimizer_bindings<'a>(
    ctx: &'a GpuContext,
    opt: Option<OptBind<'a>>,
    band: usize,
) -> [wgpu::BindingResource<'a>; 3] {
    let kn = &ctx.kernels;
    let state = opt.map_or([None, None], |o| o.state);
    let buf = |s: usize| state[s].map_or(&kn.dummy_opt[s], |b| &b.bufs[band]);
    [
        buf(0).as_entire_binding(),
        buf(1).as_entire_binding(),
        match opt {
            Some(OptBind {
                counters: (buffer, offset),
                ..
            }) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: wgpu::BufferSize::new(16),
            }),
            None => kn.dummy_bias.as_entire_binding(),
        },
    ]
}

/// The optimizer's hyperparameters as the kernels' uniforms take them (zeros for plain SGD).
fn hyper(opt: Option<OptBind<'_>>) -> [f32; 3] {
    opt.map_or([0.0; 3], |o| o.hyper)
}

/// The dispatches of one product: one, or one per band of the per-element buffers it writes
/// (see [`Banded`]).
fn matmul_dispatch(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    scalar: f32,
    bind: MatmulBind<'_>,
) -> Result<Vec<Dispatch>> {
    debug_assert_eq!(key.bias, bind.bias.is_some());
    // An optimizer that keeps state must be given it: the unchecked shader indexes it.
    let given = bind.opt.map_or(0, |o| o.state.iter().flatten().count());
    debug_assert_eq!(key.opt.state_buffers(), given);
    // Summing a gradient needs the sum's buffer, in AUX_OUT.
    debug_assert!(
        key.acc == Acc::default()
            || (matches!(key.mode, Mode::Store | Mode::Update) && bind.aux_out.is_some())
    );
    let rows = m;
    let shape = format!("{m}x{n}x{k}");
    let (m, n, k) = (pad4(m), pad4(n), pad4(k));
    // Every per-element buffer of the product is banded alike (same rows, columns and limits).
    let banded = (bind.aux_out.into_iter())
        .chain(
            bind.opt
                .into_iter()
                .flat_map(|o| o.state.into_iter().flatten()),
        )
        .next();
    let bands = banded.map_or(vec![(0, m)], |b| b.bands());
    let (tile_rows, tile_cols) = key.block.tile();
    let pipeline = ctx.kernels.matmul(&ctx.device, key);
    bands
        .iter()
        .enumerate()
        .map(|(band, &(row0, row_end))| {
            let groups = [
                n.div_ceil(tile_cols as usize),
                (row_end - row0).div_ceil(tile_rows as usize),
            ];
            check_groups(ctx, format!("the {m}x{k}·{k}x{n} product"), groups)?;
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
                    row0: row0 as u32,
                    row_end: row_end as u32,
                    _pad: [0; 2],
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
                bind.aux_out
                    .map_or(&kn.dummy_rw, |b| &b.bufs[band])
                    .as_entire_binding(),
                bind.bias.unwrap_or(&kn.dummy_bias).as_entire_binding(),
            ];
            let optimizer = Some(optimizer_bindings(ctx, bind.opt, band));
            let bind_group = bind_group(ctx, "matmul", &kn.matmul_layout, resources, optimizer);
            let t = |b: bool| if b { "ᵀ" } else { "" };
            let label = format!(
                "matmul {} {:?}{} A{}·B{} {shape}{}",
                key.block.name(),
                key.mode,
                if key.bias { "+bias" } else { "" },
                t(key.trans_a),
                t(key.trans_b),
                if bands.len() > 1 { " (banded)" } else { "" },
            );
            Ok(Dispatch {
                label,
                pipeline: pipeline.clone(),
                bind_group,
                groups: [groups[0] as u32, groups[1] as u32, 1],
            })
        })
        .collect()
}

/// `loss_reduce` of `[rows, cols]` values times `scale`; with `advance = Some((beta1, beta2))` it
/// also advances the optimizer's step counters, and with `advance_shared` the shared layer's.
fn loss_reduce_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    scale: f32,
    (advance, advance_shared): (Option<(f32, f32)>, bool),
    values: &wgpu::Buffer,
    history: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Dispatch {
    debug_assert!(advance.is_some() || !advance_shared);
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
        label: format!("loss_reduce {rows}x{cols}"),
        pipeline: kn.loss_reduce(advance.is_some(), advance_shared),
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
    /// Summing a shared layer's gradient, in `sum`.
    acc: Acc,
    sum: Option<&'a wgpu::Buffer>,
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
    debug_assert!(step.acc == Acc::default() || step.sum.is_some());
    let resources = vec![
        params.as_entire_binding(),
        wgpu::BindingResource::TextureView(&g.view),
        b.as_entire_binding(),
        step.sum.unwrap_or(&kn.dummy_rw).as_entire_binding(),
    ];
    let given = step.opt.map_or(0, |o| o.state.iter().flatten().count());
    debug_assert_eq!(step.kind.state_buffers(), given);
    let optimizer = Some(optimizer_bindings(ctx, step.opt, 0));
    let layout = &kn.bias_update_layout;
    let bind_group = bind_group(ctx, "bias_update", layout, resources, optimizer);
    Dispatch {
        label: format!("bias_update {rows}x{cols}"),
        pipeline: kn.bias_update(&ctx.device, step.store, step.kind, step.acc),
        bind_group,
        groups: [cols4.div_ceil(64) as u32, 1, 1],
    }
}

/// Record epochs into one compute pass, each running its plan in order.
fn record(enc: &mut wgpu::CommandEncoder, epochs: &[&[Dispatch]]) {
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
fn record_timed(
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
struct Profiler {
    queries: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: wgpu::Buffer,
    /// Nanoseconds per timestamp tick.
    period: f64,
    /// Per label: calls and seconds, in the order first seen.
    totals: Vec<crate::backend::KernelTime>,
    steps: usize,
}

/// Timestamps one query set holds (wgpu's `QUERY_SET_MAX_QUERIES`).
const MAX_QUERIES: usize = 4096;

/// Record `plans` in one encoder and submit it.
fn submit(ctx: &GpuContext, plans: &[&[Dispatch]]) {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    record(&mut enc, plans);
    ctx.queue.submit([enc.finish()]);
}

/// Seconds per run of `plan`: `reps` runs back to back in one submission, timed from submit to
/// idle, after one untimed run.
fn time_plan(ctx: &GpuContext, plan: &[Dispatch], reps: usize) -> Result<f64> {
    submit(ctx, &[plan]);
    ctx.wait()?;
    let start = std::time::Instant::now();
    submit(ctx, &vec![plan; reps.max(1)]);
    ctx.wait()?;
    Ok(start.elapsed().as_secs_f64() / reps.max(1) as f64)
}

/// Fail with the sizes if a dispatch of `groups` workgroups exceeds the adapter's limit.
fn check_groups(ctx: &GpuContext, what: String, groups: [usize; 2]) -> Result<()> {
    let max = ctx.limits.max_compute_workgroups_per_dimension;
    if groups.iter().any(|&g| g > max as usize) {
        return Err(Error::TooLarge {
            buffer: what,
            needed: format!("{}x{} workgroups", groups[0], groups[1]),
            limit: "max_compute_workgroups_per_dimension",
            allowed: max.to_string(),
        });
    }
    Ok(())
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

/// Which recorded epoch: training or gradients only, how many times the shared layer of a
/// dynamic-depth net runs, and which texture of each weight pair holds the current weights
/// (`parity` for every weight but the shared one, which flips only in epochs that use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct PlanKey {
    update: bool,
    /// Rows of the step's batch (fewer than `job.batch` for a short last batch).
    rows: usize,
    uses: usize,
    parity: usize,
    shared_parity: usize,
}

/// A dataset resident on the GPU, its batches gathered by `shaders/gather.wgsl`.
struct Dataset {
    x: DataArray,
    y: DataArray,
    /// The rows of each step of the current chunk, `job.batch` entries per step (uploaded once
    /// per chunk).
    index: wgpu::Buffer,
}

/// A `[rows, cols]` matrix as an rgba32float 2D-array texture: `layer_rows` rows per layer (the
/// matrix layout of `shaders/matmul.wgsl` in each).
struct DataArray {
    _texture: wgpu::Texture,
    view: wgpu::TextureView,
    layer_rows: usize,
}

/// Upload a `[rows, cols]` row-major matrix as a [`DataArray`], in layers of at most
/// `max_texture_dimension_2d` rows.
fn data_array(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    data: &[f32],
) -> Result<DataArray> {
    let l = &ctx.limits;
    let max = l.max_texture_dimension_2d as usize;
    let width = pad4(cols) / 4;
    let layer_rows = rows.min(max);
    let layers = rows.div_ceil(layer_rows);
    if width > max || layers > l.max_texture_array_layers as usize {
        return Err(Error::TooLarge {
            buffer: label.into(),
            needed: format!("{layers} layers of {width}x{layer_rows} texels"),
            limit: "max_texture_array_layers and max_texture_dimension_2d",
            allowed: format!("{} layers of {max}x{max}", l.max_texture_array_layers),
        });
    }
    let size = wgpu::Extent3d {
        width: width as u32,
        height: layer_rows as u32,
        depth_or_array_layers: layers as u32,
    };
    let texture = ctx.device.create_texture(&wgpu::TextureDescriptor {
        label: Some(label),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: MATRIX_FORMAT,
        usage: wgpu::TextureUsages::STORAGE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    // The matrix layout, with zero rows up to the end of the last layer.
    let mut padded = to_padded(rows, cols, data, 0.0);
    padded.resize(layers * layer_rows * pad4(cols), 0.0);
    write_texels(ctx, &texture, &padded, size);
    let view = texture.create_view(&wgpu::TextureViewDescriptor {
        dimension: Some(wgpu::TextureViewDimension::D2Array),
        ..Default::default()
    });
    Ok(DataArray {
        _texture: texture,
        view,
        layer_rows,
    })
}

/// Uniform block of `shaders/gather.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct GatherParams {
    rows: u32,
    batch: u32,
    padded_rows: u32,
    layer_rows: u32,
    x_cols4: u32,
    y_cols4: u32,
    _pad: [u32; 2],
}

/// Every resource the recorded epochs bind, uploaded or allocated once.
struct Net {
    job: Job,
    x: GpuMatrix,
    y: GpuMatrix,
    /// `weights[l][p]`: the two textures of weight matrix l; an epoch reading `[p]` writes its
    /// step to `[1 - p]`.
    weights: Vec<[GpuMatrix; 2]>,
    /// The weight gradients, for `gradients()`.
    dws: Vec<GpuMatrix>,
    /// `biases[l]`: `pad4(d_{l+1})` f32, updated in place; empty without biases.
    biases: Vec<wgpu::Buffer>,
    dbs: Vec<wgpu::Buffer>,
    /// The optimizer's state: per weight, then per bias, as many buffers as the step keeps.
    opt_state: Vec<Vec<Banded>>,
    /// `acts[j]`: activation output of the j-th product of an epoch, for every product but the
    /// last (as many as the most uses of a shared layer need).
    acts: Vec<GpuMatrix>,
    /// `grads[j]`: gradient w.r.t. the j-th product's output, as `acts`; the last entry is the
    /// output layer's.
    grads: Vec<GpuMatrix>,
    /// Per-element losses of the output layer.
    sq: Banded,
    /// A dynamic-depth net's shared weight and bias gradients, summed over its uses.
    sum_w: Option<Banded>,
    sum_b: Option<wgpu::Buffer>,
    /// The dataset resident on the GPU, for mini-batches (None: the dataset is one batch, in x
    /// and y).
    data: Option<Dataset>,
    /// Loss of each step of the current chunk.
    history: wgpu::Buffer,
    /// `[step index within the chunk, optimizer step t, bits of beta1^t, bits of beta2^t]`, and
    /// the shared layer's `[_, t, beta1^t, beta2^t]` at `SHARED_COUNTERS_OFFSET`.
    state: wgpu::Buffer,
}

impl Net {
    /// One epoch's dispatches: forward, `loss_reduce`, backward (see the module's description),
    /// over the products `job.applications(key.uses)`.
    fn plan(&self, ctx: &GpuContext, key: PlanKey) -> Result<Vec<Dispatch>> {
        let job = &self.job;
        // A short last batch runs over its own rows only: the products, the loss and the bias
        // sums cover `pad4(rows)` rows, which the gather filled (zeros below `rows`).
        let (b, d) = (key.rows, &job.layers);
        let depth = job.depth();
        let apps = job.applications(key.uses);
        let n = apps.len();
        let shared = job.shared_layer();
        let opt = Opt::of(&job.optimizer);
        let o = &job.optimizer;
        let parity = |l: usize| {
            if shared == Some(l) {
                key.shared_parity
            } else {
                key.parity
            }
        };
        let w = |l: usize| &self.weights[l][parity(l)];
        let bias = |l: usize| self.biases.get(l);
        let relu = job.activation == Activation::Relu;
        let (hidden_mode, input_grad_mode) = if relu {
            (Mode::Relu, Mode::Mask)
        } else {
            (Mode::Store, Mode::Store)
        };
        let grad = |j: usize| {
            if j + 1 == n {
                self.grads.last().expect("the output gradient")
            } else {
                &self.grads[j]
            }
        };
        // One matmul dispatch of `op(a)[m,k]·op(b)[k,n]`, its block size chosen for the shape.
        let mm =
            |(trans_a, trans_b, mode): (bool, bool, Mode), acc, dims, scalar, bind: MatmulBind| {
                let key = MatmulKey {
                    trans_a,
                    trans_b,
                    mode,
                    block: ctx.block_for((trans_a, trans_b), dims),
                    bias: bind.bias.is_some(),
                    opt: if mode == Mode::Update { opt } else { Opt::Sgd },
                    acc,
                };
                matmul_dispatch(ctx, key, dims, scalar, bind)
            };
        let bind = |a, b, c, aux, aux_out| MatmulBind {
            a,
            b,
            c,
            aux,
            aux_out,
            bias: None,
            opt: None,
        };
        // The optimizer's bindings for tensor `i` (weights, then biases) of layer `l`.
        let opt_of = |i: usize, l: usize| OptBind {
            state: [self.opt_state[i].first(), self.opt_state[i].get(1)],
            counters: (
                &self.state,
                if shared == Some(l) {
                    SHARED_COUNTERS_OFFSET
                } else {
                    0
                },
            ),
            hyper: match opt {
                Opt::Adam => [o.beta1, o.beta2, o.eps],
                _ => [o.momentum, 0.0, 0.0],
            },
        };
        let n_out = b * d[depth];
        let mut plan = Vec::new();
        if let Some(data) = &self.data {
            plan.push(self.gather_dispatch(ctx, data, b));
        }
        for (j, &l) in apps.iter().enumerate() {
            let input = if j == 0 { &self.x } else { &self.acts[j - 1] };
            let dims = (b, d[l + 1], d[l]);
            let none = Acc::default();
            plan.extend(if j + 1 < n {
                // a_j = act(a_{j-1} · w_l + b_l)
                let bd = bind(input, w(l), &self.acts[j], None, None);
                let bd = MatmulBind {
                    bias: bias(l),
                    ..bd
                };
                mm((false, false, hidden_mode), none, dims, 0.0, bd)?
            } else {
                // g_out = dLoss/d(pred) of pred = a_{j-1} · w_l + b_l, per-element losses into sq
                let bd = bind(input, w(l), grad(j), Some(&self.y), Some(&self.sq));
                let bd = MatmulBind {
                    bias: bias(l),
                    ..bd
                };
                let coef = job.loss.grad_coef(n_out);
                mm(
                    (false, false, Mode::for_loss(job.loss)),
                    none,
                    dims,
                    coef,
                    bd,
                )?
            });
        }
        let advance = (key.update && opt == Opt::Adam).then_some((o.beta1, o.beta2));
        let advance_shared = advance.is_some() && shared.is_some() && key.uses > 0;
        plan.push(loss_reduce_dispatch(
            ctx,
            (b, d[depth]),
            job.loss.scale(n_out),
            (advance, advance_shared),
            &self.sq.bufs[0],
            &self.history,
            &self.state,
        ));
        for j in (0..n).rev() {
            let l = apps[j];
            if j > 0 {
                // g_{j-1} = (g_j · w_lᵀ) ⊙ [a_{j-1} > 0] (no mask without ReLU), from the
                // weights before any step
                let dims = (b, d[l], d[l + 1]);
                let aux = relu.then_some(&self.acts[j - 1]);
                let bd = bind(grad(j), w(l), &self.grads[j - 1], aux, None);
                plan.extend(mm(
                    (false, true, input_grad_mode),
                    Acc::default(),
                    dims,
                    0.0,
                    bd,
                )?);
            }
            // A shared weight's gradient is summed over its uses, from the last down; its step
            // comes with the first use (the last one the backward pass reaches).
            let acc = Acc {
                input: j + 1 < n && apps[j + 1] == l,
                output: j > 0 && apps[j - 1] == l,
            };
            let summing = acc != Acc::default();
            // w_l' = step(w_l, a_{j-1}ᵀ · g_j [+ sum]) (or dw_l = ..., or sum = ...)
            let input = if j == 0 { &self.x } else { &self.acts[j - 1] };
            let dims = (d[l], d[l + 1], b);
            let sum_w = self.sum_w.as_ref().filter(|_| summing);
            plan.extend(if key.update && !acc.output {
                let old = w(l);
                let new = &self.weights[l][1 - parity(l)];
                let bd = MatmulBind {
                    opt: Some(opt_of(l, l)),
                    ..bind(input, grad(j), new, Some(old), sum_w)
                };
                mm((true, false, Mode::Update), acc, dims, job.lr, bd)?
            } else {
                // dws[l] is not written while summing (acc.output).
                let bd = bind(input, grad(j), &self.dws[l], None, sum_w);
                mm((true, false, Mode::Store), acc, dims, 0.0, bd)?
            });
            // b_l' = step(b_l, Σ_rows g_j [+ sum]) (or db_l = ..., or sum = ...)
            if let Some(b_l) = bias(l) {
                let step = BiasStep {
                    lr: job.lr,
                    store: !key.update,
                    kind: opt,
                    opt: Some(opt_of(depth + l, l)),
                    acc,
                    sum: self.sum_b.as_ref().filter(|_| summing),
                };
                let target = if key.update { b_l } else { &self.dbs[l] };
                plan.push(bias_update_dispatch(
                    ctx,
                    (b, d[l + 1]),
                    step,
                    grad(j),
                    target,
                ));
            }
        }
        Ok(plan)
    }
}

impl Net {
    /// The gather of a step's `rows` rows into x and y.
    fn gather_dispatch(&self, ctx: &GpuContext, data: &Dataset, rows: usize) -> Dispatch {
        let job = &self.job;
        let (x_cols4, y_cols4) = (pad4(job.layers[0]) / 4, pad4(job.layers[job.depth()]) / 4);
        let padded_rows = pad4(job.batch);
        let params = uniform(
            ctx,
            "gather params",
            &GatherParams {
                rows: rows as u32,
                batch: job.batch as u32,
                padded_rows: padded_rows as u32,
                layer_rows: data.x.layer_rows as u32,
                x_cols4: x_cols4 as u32,
                y_cols4: y_cols4 as u32,
                _pad: [0; 2],
            },
        );
        debug_assert_eq!(data.x.layer_rows, data.y.layer_rows);
        let view = wgpu::BindingResource::TextureView;
        let resources = vec![
            params.as_entire_binding(),
            view(&data.x.view),
            view(&data.y.view),
            view(&self.x.view),
            view(&self.y.view),
            data.index.as_entire_binding(),
            self.state.as_entire_binding(),
        ];
        let kn = &ctx.kernels;
        Dispatch {
            label: format!("gather {rows} rows"),
            pipeline: kn.gather.clone(),
            bind_group: bind_group(ctx, "gather", &kn.gather_layout, resources, None),
            groups: [
                x_cols4.max(y_cols4).div_ceil(64) as u32,
                padded_rows as u32,
                1,
            ],
        }
    }
}

/// The GPU backend. Build it with [`GpuBackend::new`] from an open [`GpuContext`].
pub struct GpuBackend {
    ctx: Arc<GpuContext>,
    net: Net,
    /// Recorded epochs, built on first use (those of training at setup).
    plans: HashMap<PlanKey, Vec<Dispatch>>,
    /// Which texture of each weight pair holds the current weights, for every weight but a
    /// dynamic-depth net's shared one, and for that one.
    parity: usize,
    shared_parity: usize,
    /// Optimizer steps taken so far (the dynamic depth of the next one is `job.uses(step)`).
    step: usize,
    staging: wgpu::Buffer,
    /// Most steps in one submission.
    max_steps: usize,
    submits: usize,
    /// Seconds spent recording and submitting.
    encode_s: f64,
    profiler: Option<Profiler>,
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
        // The dataset is x and y themselves when it is one batch; else it stays resident in
        // texture arrays and each step gathers its batch into x and y.
        let upload = !job.minibatched();
        let x = matrix(
            &ctx,
            &format!("x ({b}x{} f32)", d[0]),
            b,
            d[0],
            upload.then_some(&host.x.data[..]),
        )?;
        let y = matrix(
            &ctx,
            &format!("y ({b}x{} f32)", d[depth]),
            b,
            d[depth],
            upload.then_some(&host.y.data[..]),
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
                (0..opt.state_buffers())
                    .map(|s| {
                        let label = format!("optimizer state {} of tensor {}", s + 1, i + 1);
                        Banded::new(&ctx, &label, m.rows, m.cols)
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        // One activation and one gradient per product but the last, for the most uses of a
        // shared layer, then the output gradient.
        let apps = job.applications(job.max_uses());
        let hidden = |name: &str| {
            (apps[..apps.len() - 1].iter().enumerate())
                .map(|(j, &l)| {
                    let label = format!("{name}{} ({b}x{} f32)", j + 1, d[l + 1]);
                    matrix(&ctx, &label, b, d[l + 1], None)
                })
                .collect::<Result<Vec<_>>>()
        };
        let acts = hidden("a")?;
        let mut grads = hidden("g")?;
        let label = format!("output gradient ({b}x{} f32)", d[depth]);
        grads.push(matrix(&ctx, &label, b, d[depth], None)?);
        let sq = storage(&ctx, "squared errors", pad4(b) * pad4(d[depth]), None)?;
        let sq = Banded::whole(sq, b, d[depth]);
        let (sum_w, sum_b) = match job.shared_layer() {
            Some(s) => (
                Some(Banded::new(
                    &ctx,
                    "shared weight gradient sum",
                    d[s],
                    d[s + 1],
                )?),
                match job.bias {
                    true => Some(vector(
                        &ctx,
                        "shared bias gradient sum",
                        d[s + 1],
                        None,
                        0.0,
                    )?),
                    false => None,
                },
            ),
            None => (None, None),
        };

        let flops = job.flops_with_uses(job.max_uses()).max(1.0);
        // Bound one submission's work (about 20 GFLOP) so no driver watchdog fires on big jobs,
        // and its row indices to 16 MiB.
        // The loss history (4 bytes a step) and the batch rows (4 a row) are single buffers.
        let l = &ctx.limits;
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
        let max_steps = ((2e10 / flops) as usize)
            .clamp(1, 100_000)
            .min((1 << 22) / b)
            .min(limit / 4 / b)
            .max(1);
        let rows = job.dataset_rows();
        let data = if job.minibatched() {
            let index = storage(&ctx, "batch rows", max_steps * b, None)?;
            Some(Dataset {
                x: data_array(
                    &ctx,
                    &format!("dataset x ({rows}x{} f32)", d[0]),
                    rows,
                    d[0],
                    &host.x.data,
                )?,
                y: data_array(
                    &ctx,
                    &format!("dataset y ({rows}x{} f32)", d[depth]),
                    rows,
                    d[depth],
                    &host.y.data,
                )?,
                index,
            })
        } else {
            None
        };
        // The warm-up below runs one step of each plan.
        let history = storage(
            &ctx,
            "loss history",
            max_steps.max(2 * job.max_uses() + 2),
            None,
        )?;
        let state = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("epoch index and optimizer counters"),
                contents: bytemuck::cast_slice(&initial_state()),
                usage: STORAGE,
            });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history readback"),
            size: (max_steps * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let net = Net {
            job: job.clone(),
            x,
            y,
            weights,
            dws,
            biases,
            dbs,
            opt_state,
            acts,
            grads,
            sq,
            sum_w,
            sum_b,
            data,
            history,
            state,
        };
        let mut plans = HashMap::new();
        let mut batch_rows = vec![b];
        if job.last_batch_rows() != b {
            batch_rows.push(job.last_batch_rows());
        }
        for rows in batch_rows {
            for uses in 0..=job.max_uses() {
                let key = PlanKey {
                    update: true,
                    rows,
                    uses,
                    parity: 0,
                    shared_parity: 0,
                };
                plans.insert(key, net.plan(&ctx, key)?);
            }
        }
        log::info!(
            "recorded {} plans of {} dispatches per step, at most {max_steps} steps per \
             submission{}",
            plans.len(),
            plans.values().map(Vec::len).max().unwrap_or(0),
            if net.data.is_some() {
                " (dataset resident, batches gathered on the GPU)"
            } else {
                ""
            }
        );
        warm_up(&ctx, &net, &plans)?;
        Ok(GpuBackend {
            ctx,
            net,
            plans,
            parity: 0,
            shared_parity: 0,
            step: 0,
            staging,
            max_steps,
            submits: 0,
            encode_s: 0.0,
            profiler: None,
        })
    }

    /// The recorded steps of `steps` steps from the current one (training, or with `grad_only`
    /// the gradients of the next step), built where missing, and the parities after.
    fn chunk_keys(
        &mut self,
        grad_only: bool,
        steps: usize,
    ) -> Result<(Vec<PlanKey>, usize, usize)> {
        let (mut p, mut ps) = (self.parity, self.shared_parity);
        let job = &self.net.job;
        let per_epoch = job.steps_per_epoch();
        let mut keys = Vec::with_capacity(steps);
        for s in self.step..self.step + steps {
            let uses = job.uses(s);
            let key = PlanKey {
                update: !grad_only,
                rows: job.batch_rows(s % per_epoch),
                uses,
                parity: p,
                shared_parity: ps,
            };
            if !self.plans.contains_key(&key) {
                let (ctx, net) = (&self.ctx, &self.net);
                let plan = scoped(ctx, "recording a step", || net.plan(ctx, key))?;
                self.plans.insert(key, plan);
            }
            keys.push(key);
            if !grad_only {
                p = 1 - p;
                if uses > 0 {
                    ps = 1 - ps;
                }
            }
        }
        Ok((keys, p, ps))
    }

    /// Upload the rows of the steps `first..first + steps` for the gather (mini-batches only):
    /// `job.batch` entries per step, from its epoch's order.
    fn upload_rows(&self, first: usize, steps: usize) {
        let Some(data) = &self.net.data else { return };
        let job = &self.net.job;
        let (b, per_epoch) = (job.batch, job.steps_per_epoch());
        let mut index = vec![0u32; steps * b];
        let mut order: Option<(usize, Vec<u32>)> = None;
        for (i, s) in (first..first + steps).enumerate() {
            let (epoch, j) = (s / per_epoch, s % per_epoch);
            if order.as_ref().is_none_or(|(e, _)| *e != epoch) {
                order = Some((epoch, job.order(epoch)));
            }
            let rows = &order.as_ref().expect("set above").1[j * b..][..job.batch_rows(j)];
            index[i * b..i * b + rows.len()].copy_from_slice(rows);
        }
        self.ctx
            .queue
            .write_buffer(&data.index, 0, bytemuck::cast_slice(&index));
    }

    /// Record `steps` steps in one encoder, submit once, read the losses back once.
    fn submit_chunk(&mut self, grad_only: bool, steps: usize) -> Result<Vec<f32>> {
        assert!(steps >= 1 && steps <= self.max_steps);
        let (keys, parity, shared_parity) = self.chunk_keys(grad_only, steps)?;
        self.upload_rows(self.step, steps);
        let ctx = &self.ctx;
        let start = std::time::Instant::now();
        ctx.queue
            .write_buffer(&self.net.state, 0, bytemuck::bytes_of(&0u32));
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("chunk"),
            });
        let plans: Vec<&[Dispatch]> = keys.iter().map(|k| &self.plans[k][..]).collect();
        // With --profile, the first steps of the chunk that fit the query set are timed.
        let timed = match &self.profiler {
            Some(p) => {
                let per_step = plans.iter().map(|p| p.len()).max().unwrap_or(1).max(1);
                let t = (MAX_QUERIES / 2 / per_step).min(steps);
                let n = plans[..t].iter().map(|p| p.len()).sum::<usize>();
                let inside = ctx.timestamps() == Timestamps::InsidePasses;
                record_timed(&mut enc, &plans[..t], &p.queries, inside);
                enc.resolve_query_set(&p.queries, 0..2 * n as u32, &p.resolve, 0);
                enc.copy_buffer_to_buffer(&p.resolve, 0, &p.staging, 0, 16 * n as u64);
                record(&mut enc, &plans[t..]);
                Some((t, n))
            }
            None => {
                record(&mut enc, &plans);
                None
            }
        };
        let bytes = (steps * 4) as u64;
        enc.copy_buffer_to_buffer(&self.net.history, 0, &self.staging, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        self.encode_s += start.elapsed().as_secs_f64();
        self.submits += 1;
        log::debug!(
            "submission {}: {steps} steps from step {}, {} dispatches",
            self.submits,
            self.step,
            plans.iter().map(|p| p.len()).sum::<usize>()
        );
        let losses = ctx.map_f32(&self.staging, bytes)?;
        if let (Some(p), Some((t, n))) = (&mut self.profiler, timed) {
            // The GPU is idle after the map above: these timestamps are written.
            let words = ctx.map_f32(&p.staging, 16 * n as u64)?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&words);
            let labels = plans[..t].iter().flat_map(|p| p.iter()).map(|d| &d.label);
            for (label, pair) in labels.zip(ticks.chunks(2)) {
                let s = pair[1].saturating_sub(pair[0]) as f64 * p.period * 1e-9;
                match p.totals.iter_mut().find(|k| &k.name == label) {
                    Some(k) => {
                        k.calls += 1;
                        k.seconds += s;
                    }
                    None => p.totals.push(crate::backend::KernelTime {
                        name: label.clone(),
                        calls: 1,
                        seconds: s,
                    }),
                }
            }
            p.steps += t;
        }
        if !grad_only {
            (self.parity, self.shared_parity) = (parity, shared_parity);
            self.step += steps;
        }
        Ok(losses)
    }

    /// The loss and the gradients at the current parameters on the next step's batch, with its
    /// dynamic depth (a shared layer it does not use gets zeros), without updating anything: for
    /// parity tests.
    pub fn gradients(&mut self) -> Result<(f32, Params)> {
        let loss = self.submit_chunk(true, 1)?[0];
        let mut weights = (self.net.dws.iter())
            .map(|m| m.read(&self.ctx))
            .collect::<Result<Vec<_>>>()?;
        let mut biases = self.read_biases(&self.net.dbs)?;
        let job = &self.net.job;
        if let (Some(s), 0) = (job.shared_layer(), job.uses(self.step)) {
            weights[s].data.fill(0.0);
            if let Some(b) = biases.get_mut(s) {
                b.data.fill(0.0);
            }
        }
        Ok((loss, Params { weights, biases }))
    }

    /// Read back one `[1, d_{l+1}]` bias (or bias gradient) per layer.
    fn read_biases(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Matrix>> {
        bufs.iter()
            .enumerate()
            .map(|(l, buf)| {
                let n = self.net.job.layers[l + 1];
                let v = self.ctx.read_f32(buf, (pad4(n) * 4) as u64)?;
                Ok(Matrix::from_vec(1, n, v[..n].to_vec()))
            })
            .collect()
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

/// Run one epoch of each recorded plan at setup, so that implementations which compile a pipeline
/// at its first dispatch (lavapipe: about 1 s for each 16x16 variant) do it here and not in the
/// timed training. It changes nothing training can see: every plan reads the weights from
/// texture 0 and writes only scratch (activations, gradients, sums, texture 1 of each pair,
/// history slots and the epoch index, which every chunk resets); the biases, updated in place,
/// are saved before and restored after, and the optimizer's state and counters are reset to
/// their start.
fn warm_up(ctx: &GpuContext, net: &Net, plans: &HashMap<PlanKey, Vec<Dispatch>>) -> Result<()> {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let saved = (net.biases.iter())
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
    let all: Vec<&[Dispatch]> = plans.values().map(|p| &p[..]).collect();
    record(&mut enc, &all);
    for (b, copy) in net.biases.iter().zip(&saved) {
        enc.copy_buffer_to_buffer(copy, 0, b, 0, b.size());
    }
    for buf in net.opt_state.iter().flatten().flat_map(|b| &b.bufs) {
        enc.clear_buffer(buf, 0, None);
    }
    ctx.queue.submit([enc.finish()]);
    ctx.queue
        .write_buffer(&net.state, 0, bytemuck::cast_slice(&initial_state()));
    ctx.wait()
}

impl GpuBackend {
    /// The texture of weight `l`'s pair that holds its current values.
    fn current(&self, l: usize) -> usize {
        if self.net.job.shared_layer() == Some(l) {
            self.shared_parity
        } else {
            self.parity
        }
    }

    /// Every tensor's shape: weights, then biases.
    fn shapes(&self) -> Vec<[usize; 2]> {
        let d = &self.net.job.layers;
        let w = (0..self.net.weights.len()).map(|l| [d[l], d[l + 1]]);
        let b = (0..self.net.biases.len()).map(|l| [1, d[l + 1]]);
        w.chain(b).collect()
    }
}

/// Step counters from the words `[_, t, bits of beta1^t, bits of beta2^t]`.
fn counters_of(words: &[f32]) -> crate::cpu::OptCounters {
    crate::cpu::OptCounters {
        t: words[1].to_bits(),
        beta1_t: words[2],
        beta2_t: words[3],
    }
}

impl Backend for GpuBackend {
    fn state(&mut self) -> Result<TrainState> {
        let params = self.read_params()?;
        let ctx = &self.ctx;
        let opt_state = (self.net.opt_state.iter().zip(self.shapes()))
            .map(|(bufs, [r, c])| {
                bufs.iter()
                    .map(|buf| {
                        let padded = buf.read(ctx)?;
                        Ok(Matrix::from_vec(r, c, from_padded(r, c, &padded)))
                    })
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        let words = ctx.read_f32(&self.net.state, (initial_state().len() * 4) as u64)?;
        let shared = SHARED_COUNTERS_OFFSET as usize / 4;
        Ok(TrainState {
            params,
            opt_state,
            step: self.step,
            counters: counters_of(&words[..4]),
            shared_counters: counters_of(&words[shared..shared + 4]),
        })
    }

    fn restore(&mut self, s: &TrainState) -> Result<()> {
        let ctx = &self.ctx;
        for (pair, m) in self.net.weights.iter().zip(&s.params.weights) {
            pair[0].write(ctx, &m.data);
        }
        let q = &ctx.queue;
        for (buf, m) in self.net.biases.iter().zip(&s.params.biases) {
            let mut v = m.data.clone();
            v.resize(pad4(v.len()), 0.0);
            q.write_buffer(buf, 0, bytemuck::cast_slice(&v));
        }
        for ((bufs, saved), [r, c]) in self
            .net
            .opt_state
            .iter()
            .zip(&s.opt_state)
            .zip(self.shapes())
        {
            for (buf, m) in bufs.iter().zip(saved) {
                buf.write(ctx, &to_padded(r, c, &m.data, 0.0));
            }
        }
        let word = |c: &crate::cpu::OptCounters| [0, c.t, c.beta1_t.to_bits(), c.beta2_t.to_bits()];
        q.write_buffer(&self.net.state, 0, bytemuck::cast_slice(&word(&s.counters)));
        q.write_buffer(
            &self.net.state,
            SHARED_COUNTERS_OFFSET,
            bytemuck::cast_slice(&word(&s.shared_counters)),
        );
        (self.parity, self.shared_parity, self.step) = (0, 0, s.step);
        ctx.wait()
    }

    fn steps(&self) -> usize {
        self.step
    }

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
        let per_epoch = self.net.job.steps_per_epoch();
        let mut steps = Vec::with_capacity(epochs * per_epoch);
        let mut left = epochs * per_epoch;
        while left > 0 {
            let n = left.min(self.max_steps);
            steps.extend(self.submit_chunk(false, n)?);
            left -= n;
        }
        let job = &self.net.job;
        Ok(steps.chunks(per_epoch).map(|s| job.epoch_loss(s)).collect())
    }

    fn read_params(&mut self) -> Result<Params> {
        Ok(Params {
            weights: (self.net.weights.iter().enumerate())
                .map(|(l, pair)| pair[self.current(l)].read(&self.ctx))
                .collect::<Result<_>>()?,
            biases: self.read_biases(&self.net.biases)?,
        })
    }

    fn gradients(&mut self) -> Result<(f32, Params)> {
        GpuBackend::gradients(self)
    }

    fn max_chunk(&self) -> usize {
        (self.max_steps / self.net.job.steps_per_epoch()).max(1)
    }

    /// Every step of an epoch; with dynamic depth, each as deep as it can be.
    fn dispatches_per_epoch(&self) -> usize {
        let per_step = self.plans.values().map(Vec::len).max().unwrap_or(0);
        per_step * self.net.job.steps_per_epoch()
    }

    fn submits(&self) -> usize {
        self.submits
    }

    fn encode_seconds(&self) -> f64 {
        self.encode_s
    }

    fn enable_profiling(&mut self) -> std::result::Result<(), String> {
        let ctx = &self.ctx;
        if ctx.timestamps() == Timestamps::None {
            return Err(format!(
                "{} has no timestamp queries (wgpu feature TIMESTAMP_QUERY)",
                ctx.info.name
            ));
        }
        let queries = ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("profile"),
            ty: wgpu::QueryType::Timestamp,
            count: MAX_QUERIES as u32,
        });
        let bytes = (MAX_QUERIES * 8) as u64;
        let resolve = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("profile readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.profiler = Some(Profiler {
            queries,
            resolve,
            staging,
            period: ctx.queue.get_timestamp_period() as f64,
            totals: Vec::new(),
            steps: 0,
        });
        Ok(())
    }

    fn kernel_times(&self) -> (usize, Vec<crate::backend::KernelTime>) {
        self.profiler
            .as_ref()
            .map_or((0, Vec::new()), |p| (p.steps, p.totals.clone()))
    }
}

/// What [`run_matmul`] produced.
pub struct MatmulOutput {
    /// C, `[m, n]` row-major.
    pub c: Vec<f32>,
    /// AUX_OUT for the error modes and for summing a gradient (`[m, n]`, NaN where unwritten),
    /// empty otherwise.
    pub aux_out: Vec<f32>,
    /// Whether the padding of C (and of AUX_OUT) holds exact zeros afterwards, as the next kernel
    /// relies on. It was poisoned with NaN before.
    pub padding_zero: bool,
}

/// Run one matmul variant on its own, for kernel tests: `a`, `b` row-major as stored (see the
/// shader), `scalar` the lr (`Mode::Update`) or the loss gradient's factor (error modes), `c_init`
/// C's content before the kernel (poison it to catch unwritten elements; for
/// `Mode::Update`, the weights before the step, which go to AUX as in training while C, the other
/// texture of the pair, is poisoned with NaN), `aux` the AUX input where the mode needs it, `sum`
/// the gradient summed so far for `key.acc.input` (`[m, n]`; AUX_OUT is NaN-poisoned without it).
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
    sum: Option<&[f32]>,
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
        let out_init = sum.map_or(nan.clone(), |s| to_padded(m, n, s, 0.0));
        let outb = storage(ctx, "aux_out", nan.len(), Some(&out_init))?;
        let outb = Banded::whole(outb, m, n);
        let summing = key.acc != Acc::default();
        let reads_out = key.mode.is_loss() || summing;
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
                aux_out: reads_out.then_some(&outb),
                bias: biasb.as_ref(),
                opt: None,
            },
        )?;
        submit(ctx, &[&d]);
        let c = cb.read_padded(ctx)?;
        // C is not written while summing: its NaN poison stays, padding included.
        let mut padding_zero = key.acc.output || padding_is_zero(m, n, &c);
        let aux_out = if reads_out {
            let o = outb.read(ctx)?;
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
        let d = loss_reduce_dispatch(ctx, (rows, cols), 1.0, (None, false), &vb, &hb, &sb);
        submit(ctx, &[&[d]]);
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
    run_bias_sum(ctx, g, (rows, cols), b, (lr, store), Acc::default(), None).map(|(b, _)| b)
}

/// [`run_bias_update`] summing a shared layer's gradient by `acc`, with the sum so far `sum`
/// (`[cols]`; NaN-poisoned without it). Returns the bias and the sum after the kernel.
pub fn run_bias_sum(
    ctx: &GpuContext,
    g: &[f32],
    (rows, cols): (usize, usize),
    b: &[f32],
    (lr, store): (f32, bool),
    acc: Acc,
    sum: Option<&[f32]>,
) -> Result<(Vec<f32>, Vec<f32>)> {
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
        let sb = match sum {
            Some(s) => vector(ctx, "sum", cols, Some(s), 0.0)?,
            None => vector(ctx, "sum", cols, None, f32::NAN)?,
        };
        let step = BiasStep {
            lr,
            store,
            kind: Opt::Sgd,
            opt: None,
            acc,
            sum: Some(&sb),
        };
        let d = bias_update_dispatch(ctx, (rows, cols), step, &gm, &bb);
        submit(ctx, &[&[d]]);
        let out = ctx.read_f32(&bb, (pad4(cols) * 4) as u64)?;
        let summed = ctx.read_f32(&sb, (pad4(cols) * 4) as u64)?;
        Ok((out[..cols].to_vec(), summed[..cols].to_vec()))
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
        let outb = Banded::whole(outb, m, n);
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
        time_plan(ctx, &d, reps)
    })
}

/// `matmul_naive` (shaders/matmul_naive.wgsl) bound to `[m, k]` and `[k, n]` row-major inputs:
/// the dispatch, and the output buffer `[m, n]`.
fn naive_dispatch(
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
pub fn run_naive(
    ctx: &GpuContext,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
) -> Result<Vec<f32>> {
    scoped(ctx, "running matmul_naive", || {
        let ab = storage(ctx, "a", m * k, Some(a))?;
        let bb = storage(ctx, "b", k * n, Some(b))?;
        let (d, c) = naive_dispatch(ctx, &ab, &bb, (m, n, k))?;
        submit(ctx, &[&[d]]);
        ctx.read_f32(&c, (m * n * 4) as u64)
    })
}

/// [`time_matmul`] for the reference kernel.
pub fn time_naive(ctx: &GpuContext, (m, n, k): (usize, usize, usize), reps: usize) -> Result<f64> {
    scoped(ctx, "timing matmul_naive", || {
        let ab = storage(ctx, "a", m * k, None)?;
        let bb = storage(ctx, "b", k * n, None)?;
        let (d, _c) = naive_dispatch(ctx, &ab, &bb, (m, n, k))?;
        time_plan(ctx, &[d], reps)
    })
}
