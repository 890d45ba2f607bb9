//! The GPU backend: every tensor resident on the device, whole chunks of epochs recorded into one
//! compute pass of one command encoder, the loss of each epoch written to a history buffer on the
//! GPU (the epoch index kept there too), and one readback per chunk.
//!
//! One epoch of an L-layer net is 2L+1 dispatches (L-1 + 1 + 1 + (L-1) + L):
//! - forward: `matmul[relu]` for each hidden layer, `matmul[sse]` for the output layer (fused with
//!   the loss and its gradient), `loss_reduce` (deterministic sum into the history);
//! - backward, from the last layer down: `matmul[mask]` (input gradient g·wᵀ through the ReLU,
//!   while w is still the old weight), then `matmul[sgd]` (weight gradient aᵀ·g fused with the SGD
//!   step, in place).

pub mod context;
pub mod kernels;

pub use context::{list_adapters, AdapterEntry, DeviceChoice, GpuContext};
pub use kernels::{MatmulKey, Mode};

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

/// Uniform block of `shaders/loss_reduce.wgsl` (padded to 16 bytes).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct ReduceParams {
    len: u32,
    _pad: [u32; 3],
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
    len: usize,
    values: &wgpu::Buffer,
    history: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Dispatch {
    let params = uniform(
        ctx,
        "loss_reduce params",
        &ReduceParams {
            len: len as u32,
            _pad: [0; 3],
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
        let x = storage(
            &ctx,
            &format!("x ({b}x{} f32)", d[0]),
            host.x.data.len(),
            Some(&host.x.data),
        )?;
        let y = storage(
            &ctx,
            &format!("y ({b}x{} f32)", d[depth]),
            host.y.data.len(),
            Some(&host.y.data),
        )?;
        let weights = host
            .weights
            .iter()
            .enumerate()
            .map(|(l, w)| {
                storage(
                    &ctx,
                    &format!("w{} ({}x{} f32)", l + 1, w.rows, w.cols),
                    w.data.len(),
                    Some(&w.data),
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let dws = host
            .weights
            .iter()
            .enumerate()
            .map(|(l, w)| {
                storage(
                    &ctx,
                    &format!("dw{} ({}x{} f32)", l + 1, w.rows, w.cols),
                    w.data.len(),
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        // acts[l]: ReLU output of hidden layer l; grads[l]: gradient w.r.t. layer l's output.
        let acts = (0..depth - 1)
            .map(|l| {
                storage(
                    &ctx,
                    &format!("a{} ({b}x{} f32)", l + 1, d[l + 1]),
                    b * d[l + 1],
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let grads = (0..depth)
            .map(|l| {
                storage(
                    &ctx,
                    &format!("g{} ({b}x{} f32)", l + 1, d[l + 1]),
                    b * d[l + 1],
                    None,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let sq = storage(&ctx, "squared errors", b * d[depth], None)?;

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

        let plan = |update: bool| -> Result<Vec<Dispatch>> {
            let mut plan = Vec::new();
            for l in 0..depth {
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (b, d[l + 1], d[l]);
                let key = |mode| MatmulKey {
                    trans_a: false,
                    trans_b: false,
                    mode,
                };
                plan.push(if l + 1 < depth {
                    matmul_dispatch(
                        &ctx,
                        key(Mode::Relu),
                        dims,
                        0.0,
                        MatmulBind {
                            a: input,
                            b: &weights[l],
                            c: &acts[l],
                            aux: None,
                            aux_out: None,
                        },
                    )?
                } else {
                    matmul_dispatch(
                        &ctx,
                        key(Mode::Sse),
                        dims,
                        0.0,
                        MatmulBind {
                            a: input,
                            b: &weights[l],
                            c: &grads[l],
                            aux: Some(&y),
                            aux_out: Some(&sq),
                        },
                    )?
                });
            }
            plan.push(loss_reduce_dispatch(
                &ctx,
                b * d[depth],
                &sq,
                &history,
                &state,
            ));
            for l in (0..depth).rev() {
                if l > 0 {
                    // g_{l-1} = (g_l · w_lᵀ) ⊙ [a_{l-1} > 0], before w_l is updated
                    let key = MatmulKey {
                        trans_a: false,
                        trans_b: true,
                        mode: Mode::Mask,
                    };
                    plan.push(matmul_dispatch(
                        &ctx,
                        key,
                        (b, d[l], d[l + 1]),
                        0.0,
                        MatmulBind {
                            a: &grads[l],
                            b: &weights[l],
                            c: &grads[l - 1],
                            aux: Some(&acts[l - 1]),
                            aux_out: None,
                        },
                    )?);
                }
                let input = if l == 0 { &x } else { &acts[l - 1] };
                let dims = (d[l], d[l + 1], b);
                plan.push(if update {
                    let key = MatmulKey {
                        trans_a: true,
                        trans_b: false,
                        mode: Mode::Sgd,
                    };
                    matmul_dispatch(
                        &ctx,
                        key,
                        dims,
                        job.lr,
                        MatmulBind {
                            a: input,
                            b: &grads[l],
                            c: &weights[l],
                            aux: None,
                            aux_out: None,
                        },
                    )?
                } else {
                    let key = MatmulKey {
                        trans_a: true,
                        trans_b: false,
                        mode: Mode::Store,
                    };
                    matmul_dispatch(
                        &ctx,
                        key,
                        dims,
                        0.0,
                        MatmulBind {
                            a: input,
                            b: &grads[l],
                            c: &dws[l],
                            aux: None,
                            aux_out: None,
                        },
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
        let grads = (0..self.dws.len())
            .map(|l| {
                let (r, c) = (self.layers[l], self.layers[l + 1]);
                let data = self.ctx.read_f32(&self.dws[l], (r * c * 4) as u64)?;
                Ok(Matrix::from_vec(r, c, data))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((loss, grads))
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
        (0..self.weights.len())
            .map(|l| {
                let (r, c) = (self.layers[l], self.layers[l + 1]);
                let data = self.ctx.read_f32(&self.weights[l], (r * c * 4) as u64)?;
                Ok(Matrix::from_vec(r, c, data))
            })
            .collect()
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

/// Run one matmul variant on its own, for kernel tests and benches: `c_init` is C's content before
/// the kernel (poison it to catch unwritten elements), `aux` the AUX input where the mode needs it.
/// Returns C and, for `Mode::Sse`, AUX_OUT (initialised to NaN).
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
) -> Result<(Vec<f32>, Vec<f32>)> {
    scoped(ctx, "running matmul", || {
        let ab = storage(ctx, "a", a.len(), Some(a))?;
        let bb = storage(ctx, "b", b.len(), Some(b))?;
        let cb = storage(ctx, "c", c_init.len(), Some(c_init))?;
        let auxb = aux
            .map(|v| storage(ctx, "aux", v.len(), Some(v)))
            .transpose()?;
        let out_init = vec![f32::NAN; m * n];
        let outb = storage(ctx, "aux_out", m * n, Some(&out_init))?;
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
        let c = ctx.read_f32(&cb, (m * n * 4) as u64)?;
        let o = ctx.read_f32(&outb, (m * n * 4) as u64)?;
        Ok((c, o))
    })
}

/// Run `loss_reduce` once on `values`; returns what it wrote to the history and the epoch index
/// it left behind.
pub fn run_loss_reduce(ctx: &GpuContext, values: &[f32]) -> Result<(f32, u32)> {
    scoped(ctx, "running loss_reduce", || {
        let vb = storage(ctx, "values", values.len(), Some(values))?;
        let hb = storage(ctx, "history", 4, Some(&[f32::NAN; 4]))?;
        let sb = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("state"),
                contents: bytemuck::cast_slice(&[2u32, 0, 0, 0]),
                usage: STORAGE,
            });
        let d = loss_reduce_dispatch(ctx, values.len(), &vb, &hb, &sb);
        let mut enc = ctx.device.create_command_encoder(&Default::default());
        record(&mut enc, &[d], 1);
        ctx.queue.submit([enc.finish()]);
        let h = ctx.read_f32(&hb, 16)?;
        let s = ctx.read_f32(&sb, 4)?;
        Ok((h[2], s[0].to_bits()))
    })
}
