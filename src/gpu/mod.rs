//! The GPU backend: every tensor resident on the device, whole chunks of epochs recorded into one
//! compute pass of one command encoder, the loss of each epoch written to a history buffer on the
//! GPU (the epoch index kept there too), and one readback per chunk.
//!
//! Every matrix lives on the GPU with both dimensions padded to a multiple of 4 and the padding
//! zero (see `shaders/matmul.wgsl`); uploads pad and readbacks strip it.
//!
//! One epoch of an L-layer net is 3L dispatches (L forward + 1 reduce + (L-1) + L backward):
//! - forward: `matmul[relu]` for each hidden layer, `matmul[sse]` for the output layer (fused with
//!   the loss and its gradient), `loss_reduce` (deterministic sum into the history);
//! - backward, from the last layer down: `matmul[mask]` (input gradient g·wᵀ through the ReLU,
//!   while w is still the old weight), then `matmul[sgd]` (weight gradient aᵀ·g fused with the SGD
//!   step, in place).

pub mod context;
pub mod kernels;

pub use context::{list_adapters, AdapterEntry, DeviceChoice, GpuContext};
pub use kernels::{Block, MatmulKey, Mode};

use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::init::{HostState, Matrix};
use crate::io::summary::DeviceSummary;
use crate::job::Job;
use kernels::MATMUL_TILE;
use std::sync::Arc;
use wgpu::util::DeviceExt;

/// Uniform block of `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct MatmulParams {
    m: u32,
    n: u32,
    k: u32,
    lr: f32,
}

/// Uniform block of `shaders/loss_reduce.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    len: u32,
    cols: u32,
    cols_padded: u32,
    _pad: u32,
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

/// A `[rows, cols]` matrix in the padded GPU layout, zero-filled, or holding `data` (row-major,
/// unpadded) if given.
fn matrix(
    ctx: &GpuContext,
    label: &str,
    rows: usize,
    cols: usize,
    data: Option<&[f32]>,
) -> Result<wgpu::Buffer> {
    let len = pad4(rows) * pad4(cols);
    match data {
        Some(d) => storage(ctx, label, len, Some(&to_padded(rows, cols, d, 0.0))),
        None => storage(ctx, label, len, None),
    }
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

/// The buffers one matmul dispatch binds.
struct MatmulBind<'a> {
    a: &'a wgpu::Buffer,
    b: &'a wgpu::Buffer,
    c: &'a wgpu::Buffer,
    aux: Option<&'a wgpu::Buffer>,
    aux_out: Option<&'a wgpu::Buffer>,
}

fn matmul_dispatch(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    lr: f32,
    bind: MatmulBind<'_>,
) -> Result<Dispatch> {
    let (m, n, k) = (pad4(m), pad4(n), pad4(k));
    let groups = [
        n.div_ceil(MATMUL_TILE as usize),
        m.div_ceil(MATMUL_TILE as usize),
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
            lr,
        },
    );
    let kn = &ctx.kernels;
    let entries = [
        params.as_entire_binding(),
        bind.a.as_entire_binding(),
        bind.b.as_entire_binding(),
        bind.c.as_entire_binding(),
        bind.aux.unwrap_or(&kn.dummy_read).as_entire_binding(),
        bind.aux_out.unwrap_or(&kn.dummy_rw).as_entire_binding(),
    ];
    let entries: Vec<wgpu::BindGroupEntry> = entries
        .into_iter()
        .enumerate()
        .map(|(i, resource)| wgpu::BindGroupEntry {
            binding: i as u32,
            resource,
        })
        .collect();
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("matmul"),
        layout: &kn.matmul_layout,
        entries: &entries,
    });
    Ok(Dispatch {
        pipeline: kn.matmul(&ctx.device, key),
        bind_group,
        groups: [groups[0] as u32, groups[1] as u32, 1],
    })
}

fn loss_reduce_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
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
            _pad: 0,
        },
    );
    let kn = &ctx.kernels;
    let bind_group = ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("loss_reduce"),
        layout: &kn.loss_reduce_layout,
        entries: &[
            wgpu::BindGroupEntry {
                binding: 0,
                resource: params.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 1,
                resource: values.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 2,
                resource: history.as_entire_binding(),
            },
            wgpu::BindGroupEntry {
                binding: 3,
                resource: state.as_entire_binding(),
            },
        ],
    });
    Dispatch {
        pipeline: kn.loss_reduce.clone(),
        bind_group,
        groups: [1, 1, 1],
    }
}

/// Record `epochs` repetitions of `plan` into one compute pass.
fn record(enc: &mut wgpu::CommandEncoder, plan: &[Dispatch], epochs: usize) {
    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
        label: Some("epochs"),
        timestamp_writes: None,
    });
    for _ in 0..epochs {
        for d in plan {
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
    layers: Vec<usize>,
    weights: Vec<wgpu::Buffer>,
    /// Loss of each epoch of the current chunk.
    history: wgpu::Buffer,
    /// `[epoch index within the chunk]`
    state: wgpu::Buffer,
    staging: wgpu::Buffer,
    train_plan: Vec<Dispatch>,
    /// Same forward and backward, but the weight gradients stored into `dws`, weights untouched.
    grad_plan: Vec<Dispatch>,
    dws: Vec<wgpu::Buffer>,
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
        // w1, w2, ... as uploaded, and dw1, dw2, ... (the gradients, for `gradients()`).
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
        let weights = per_weight("w", true)?;
        let dws = per_weight("dw", false)?;
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
        let sq = matrix(&ctx, "squared errors", b, d[depth], None)?;

        let flops = job.flops_per_epoch().max(1.0);
        // Bound one submission's work (about 20 GFLOP) so no driver watchdog fires on big jobs.
        let max_chunk = ((2e10 / flops) as usize).clamp(1, 100_000);
        let history = storage(&ctx, "loss history", max_chunk, None)?;
        let state = storage(&ctx, "epoch index", 4, None)?;
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history readback"),
            size: (max_chunk * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });

        // One matmul dispatch of `op(a)[m,k]·op(b)[k,n]`, its block size chosen for the shape.
        let mm = |(trans_a, trans_b, mode): (bool, bool, Mode), dims, lr, bind| {
            let block = Block::for_shape(ctx.info.device_type, dims);
            let key = MatmulKey {
                trans_a,
                trans_b,
                mode,
                block,
            };
            matmul_dispatch(&ctx, key, dims, lr, bind)
        };
        let bind = |a, b, c, aux, aux_out| MatmulBind {
            a,
            b,
            c,
            aux,
            aux_out,
        };
        let plan = |update: bool| -> Result<Vec<Dispatch>> {
            let mut plan = Vec::new();
            for l in 0..depth {
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (b, d[l + 1], d[l]);
                plan.push(if l + 1 < depth {
                    // a_l = relu(a_{l-1} · w_l)
                    mm(
                        (false, false, Mode::Relu),
                        dims,
                        0.0,
                        bind(input, &weights[l], &acts[l], None, None),
                    )?
                } else {
                    // g_L = 2(a_{L-1} · w_L - y), squared errors into sq
                    mm(
                        (false, false, Mode::Sse),
                        dims,
                        0.0,
                        bind(input, &weights[l], &grads[l], Some(&y), Some(&sq)),
                    )?
                });
            }
            plan.push(loss_reduce_dispatch(
                &ctx,
                (b, d[depth]),
                &sq,
                &history,
                &state,
            ));
            for l in (0..depth).rev() {
                if l > 0 {
                    // g_{l-1} = (g_l · w_lᵀ) ⊙ [a_{l-1} > 0], before w_l is updated
                    let dims = (b, d[l], d[l + 1]);
                    let bd = bind(
                        &grads[l],
                        &weights[l],
                        &grads[l - 1],
                        Some(&acts[l - 1]),
                        None,
                    );
                    plan.push(mm((false, true, Mode::Mask), dims, 0.0, bd)?);
                }
                // w_l -= lr · a_{l-1}ᵀ · g_l (or dw_l = a_{l-1}ᵀ · g_l)
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (d[l], d[l + 1], b);
                plan.push(if update {
                    mm(
                        (true, false, Mode::Sgd),
                        dims,
                        job.lr,
                        bind(input, &grads[l], &weights[l], None, None),
                    )?
                } else {
                    mm(
                        (true, false, Mode::Store),
                        dims,
                        0.0,
                        bind(input, &grads[l], &dws[l], None, None),
                    )?
                });
            }
            Ok(plan)
        };
        let train_plan = plan(true)?;
        let grad_plan = plan(false)?;

        Ok(GpuBackend {
            ctx,
            layers: job.layers.clone(),
            weights,
            history,
            state,
            staging,
            train_plan,
            grad_plan,
            dws,
            max_chunk,
            submits: 0,
        })
    }

    /// Record `epochs` epochs of `plan` in one encoder, submit once, read the losses back once.
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
        let plan = if grad_only {
            &self.grad_plan
        } else {
            &self.train_plan
        };
        record(&mut enc, plan, epochs);
        let bytes = (epochs * 4) as u64;
        enc.copy_buffer_to_buffer(&self.history, 0, &self.staging, 0, bytes);
        ctx.queue.submit([enc.finish()]);
        self.submits += 1;
        ctx.map_f32(&self.staging, bytes)
    }

    /// The loss and the weight gradients at the current weights (no update): for parity tests.
    pub fn gradients(&mut self) -> Result<(f32, Vec<Matrix>)> {
        let loss = self.submit_chunk(true, 1)?[0];
        Ok((loss, self.read_per_weight(&self.dws)?))
    }

    /// Read back one `[d_l, d_{l+1}]` matrix per weight (the weights or their gradients).
    fn read_per_weight(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Matrix>> {
        bufs.iter()
            .enumerate()
            .map(|(l, buf)| read_matrix(&self.ctx, buf, self.layers[l], self.layers[l + 1]))
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

    fn read_params(&mut self) -> Result<Vec<Matrix>> {
        self.read_per_weight(&self.weights)
    }

    fn gradients(&mut self) -> Result<(f32, Vec<Matrix>)> {
        GpuBackend::gradients(self)
    }

    fn max_chunk(&self) -> usize {
        self.max_chunk
    }

    fn dispatches_per_epoch(&self) -> usize {
        self.train_plan.len()
    }

    fn submits(&self) -> usize {
        self.submits
    }
}

/// Read a `[rows, cols]` matrix back from its padded GPU layout.
fn read_matrix(ctx: &GpuContext, buf: &wgpu::Buffer, rows: usize, cols: usize) -> Result<Matrix> {
    let padded = ctx.read_f32(buf, (pad4(rows) * pad4(cols) * 4) as u64)?;
    Ok(Matrix::from_vec(
        rows,
        cols,
        from_padded(rows, cols, &padded),
    ))
}

/// What [`run_matmul`] produced.
pub struct MatmulOutput {
    /// C, `[m, n]` row-major.
    pub c: Vec<f32>,
    /// AUX_OUT for `Mode::Sse` (`[m, n]`, NaN where unwritten), empty otherwise.
    pub aux_out: Vec<f32>,
    /// Whether the padding of C (and of AUX_OUT) holds exact zeros afterwards, as the next kernel
    /// relies on. It was poisoned with NaN before (zero for `Mode::Sgd`, whose C is an input).
    pub padding_zero: bool,
}

/// Run one matmul variant on its own, for kernel tests: `a`, `b` row-major as stored (see the
/// shader), `c_init` C's content before the kernel (poison it to catch unwritten elements), `aux`
/// the AUX input where the mode needs it.
#[allow(clippy::too_many_arguments)]
pub fn run_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    lr: f32,
    c_init: &[f32],
    aux: Option<&[f32]>,
) -> Result<MatmulOutput> {
    let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
    let pad_fill = if key.mode == Mode::Sgd { 0.0 } else { f32::NAN };
    scoped(ctx, "running matmul", || {
        let ab = matrix(ctx, "a", a_rows, a_cols, Some(a))?;
        let bb = matrix(ctx, "b", b_rows, b_cols, Some(b))?;
        let cb = storage(
            ctx,
            "c",
            pad4(m) * pad4(n),
            Some(&to_padded(m, n, c_init, pad_fill)),
        )?;
        let auxb = aux.map(|v| matrix(ctx, "aux", m, n, Some(v))).transpose()?;
        let nan = vec![f32::NAN; pad4(m) * pad4(n)];
        let outb = storage(ctx, "aux_out", nan.len(), Some(&nan))?;
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            lr,
            MatmulBind {
                a: &ab,
                b: &bb,
                c: &cb,
                aux: auxb.as_ref(),
                aux_out: (key.mode == Mode::Sse).then_some(&outb),
            },
        )?;
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, &[d], 1);
        ctx.queue.submit([enc.finish()]);
        let bytes = (nan.len() * 4) as u64;
        let c = ctx.read_f32(&cb, bytes)?;
        let mut padding_zero = padding_is_zero(m, n, &c);
        let aux_out = if key.mode == Mode::Sse {
            let o = ctx.read_f32(&outb, bytes)?;
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
        let d = loss_reduce_dispatch(ctx, (rows, cols), &vb, &hb, &sb);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, &[d], 1);
        ctx.queue.submit([enc.finish()]);
        let h = ctx.read_f32(&hb, 16)?;
        let s = ctx.read_f32(&sb, 4)?;
        Ok((h[2], s[0].to_bits()))
    })
}

/// Time `reps` back-to-back dispatches of one matmul variant on resident buffers (zeros: the
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
        let outb = matrix(ctx, "aux_out", m, n, None)?;
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            0.0,
            MatmulBind {
                a: &ab,
                b: &bb,
                c: &cb,
                aux: matches!(key.mode, Mode::Mask | Mode::Sse).then_some(&auxb),
                aux_out: (key.mode == Mode::Sse).then_some(&outb),
            },
        )?;
        let plan = [d];
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, &plan, 1);
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        let start = std::time::Instant::now();
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, &plan, reps.max(1));
        ctx.queue.submit([enc.finish()]);
        ctx.wait()?;
        Ok(start.elapsed().as_secs_f64() / reps.max(1) as f64)
    })
}
