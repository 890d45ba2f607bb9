//! The GPU backend: the [`Backend`] trait over a [`Net`] and its recorded plans, chunks of steps
//! submitted at once, the ping-pong bookkeeping of the weight textures, state and restore.

use super::kernels::loss_reduce::{
    counters_of, initial_state, state_words, SHARED_COUNTERS_OFFSET,
};
use super::layout::Layout;
use super::layout::{from_padded, pad4, to_padded};
use super::memory::{DataArray, Storage};
use super::net::{Net, Stacking};
use super::plan::PlanKey;
use super::record::{record, record_timed, scoped, Dispatch, Profiler, MAX_QUERIES};
use super::{GpuContext, Timestamps};
use crate::backend::DeviceInfo;
use crate::backend::{Backend, Stats, TrainState};
use crate::error::Result;
use crate::init::{HostState, Matrix, Params};
use crate::job::Job;
use crate::wait::Wait;
use std::collections::HashMap;
use std::sync::Arc;

/// The GPU backend. Build it with [`GpuBackend::new`] from an open [`GpuContext`].
pub struct GpuBackend {
    pub(crate) ctx: Arc<GpuContext>,
    pub(crate) net: Net,
    /// Recorded epochs, built on first use (those of training at setup).
    pub(crate) plans: HashMap<PlanKey, Vec<Dispatch>>,
    /// Which texture of each weight pair holds the current weights, for every weight but a
    /// dynamic-depth net's shared one, and for that one.
    pub(crate) parity: usize,
    pub(crate) shared_parity: usize,
    /// Optimizer steps taken so far (the dynamic depth of the next one is `job.uses(step)`).
    pub(crate) step: usize,
    pub(crate) staging: wgpu::Buffer,
    /// Most steps in one submission.
    pub(crate) max_steps: usize,
    pub(crate) submits: usize,
    /// Seconds spent recording and submitting.
    pub(crate) encode_s: f64,
    pub(crate) profiler: Option<Profiler>,
}

impl GpuBackend {
    /// Upload x, y and the weights once and build every dispatch of an epoch, in the layout
    /// `--layout auto` takes on this adapter ([`GpuContext::auto_layout`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(ctx: Arc<GpuContext>, job: &Job, state: &HostState) -> Result<Self> {
        let layout = ctx.auto_layout();
        Self::with_layout(ctx, job, state, layout)
    }

    /// [`GpuBackend::new`] in the given memory layout (an error naming what the adapter lacks if
    /// it cannot run it).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_layout(
        ctx: Arc<GpuContext>,
        job: &Job,
        state: &HostState,
        layout: Layout,
    ) -> Result<Self> {
        crate::wait::block_on(Self::create(ctx, job, state, layout))
    }

    /// [`GpuBackend::with_layout`] as a future (what the browser awaits).
    pub async fn create(
        ctx: Arc<GpuContext>,
        job: &Job,
        state: &HostState,
        layout: Layout,
    ) -> Result<Self> {
        Self::create_sharing(ctx, job, state, layout, (None, usize::MAX)).await
    }

    /// [`GpuBackend::create`] binding the resident dataset `shared` (another backend's, of the
    /// same data) instead of uploading its own.
    /// At most `max_steps` steps per submission (a sweep's model: its submissions hold every
    /// model's steps).
    pub(crate) async fn create_sharing(
        ctx: Arc<GpuContext>,
        job: &Job,
        state: &HostState,
        layout: Layout,
        (shared, max_steps): (Option<&(DataArray, DataArray)>, usize),
    ) -> Result<Self> {
        ctx.kernels.layout(layout)?;
        let c = ctx.clone();
        let stacking = Stacking {
            max_steps,
            ..Stacking::ONE
        };
        scoped(
            &c,
            "setting up the job",
            Self::build(ctx, job, state, layout, shared, stacking),
        )
        .await
    }

    /// The resident dataset (x and y) of a job in mini-batches, to share with another backend of
    /// the same data.
    pub(crate) fn dataset(&self) -> Option<(DataArray, DataArray)> {
        self.net.data.as_ref().map(|d| (d.x.clone(), d.y.clone()))
    }

    /// The memory layout of the job's matrices.
    pub fn layout(&self) -> Layout {
        self.net.layout
    }

    async fn build(
        ctx: Arc<GpuContext>,
        job: &Job,
        host: &HostState,
        layout: Layout,
        shared: Option<&(DataArray, DataArray)>,
        stacking: Stacking,
    ) -> Result<Self> {
        let (net, max_steps) = Net::allocate(&ctx, job, host, layout, shared, stacking)?;
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("history readback"),
            size: (max_steps * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut plans = HashMap::new();
        let mut batch_rows = vec![job.batch];
        if job.last_batch_rows() != job.batch {
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
        for (key, plan) in &plans {
            for d in plan {
                let [x, y, z] = d.groups;
                log::debug!(
                    "plan {key:?}: {} ({x}x{y}x{z} = {} workgroups)",
                    d.label,
                    d.workgroups()
                );
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
        warm_up(&ctx, &net, &plans).await?;
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
    async fn chunk_keys(
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
                let plan = scoped(ctx, "recording a step", async { net.plan(ctx, key) }).await?;
                self.plans.insert(key, plan);
            }
            keys.push(key);
            if !grad_only && self.net.layout.pairs() {
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

    /// Get `steps` steps from the current one ready to record: their plans (built where
    /// missing), the rows of their batches uploaded, the chunk's step index reset. [`Self::commit`]
    /// after submitting them.
    pub(crate) async fn begin_chunk(&mut self, grad_only: bool, steps: usize) -> Result<Pending> {
        assert!(steps >= 1 && steps <= self.max_steps);
        let (keys, parity, shared_parity) = self.chunk_keys(grad_only, steps).await?;
        self.upload_rows(self.step, steps);
        self.ctx
            .queue
            .write_buffer(&self.net.state, 0, bytemuck::bytes_of(&0u32));
        Ok(Pending {
            keys,
            parity,
            shared_parity,
            grad_only,
        })
    }

    /// The chunk begun was submitted: the step and the weights' parities move past it.
    pub(crate) fn commit(&mut self, pending: Pending) {
        if !pending.grad_only {
            (self.parity, self.shared_parity) = (pending.parity, pending.shared_parity);
            self.step += pending.keys.len();
        }
    }

    /// Record `steps` steps in one encoder, submit once, read the losses back once.
    async fn submit_chunk(&mut self, grad_only: bool, steps: usize) -> Result<Vec<f32>> {
        let pending = self.begin_chunk(grad_only, steps).await?;
        let ctx = &self.ctx;
        let start = web_time::Instant::now();
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("chunk"),
            });
        let plans = pending.plans(&self.plans);
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
        let losses = ctx.map_f32(&self.staging, bytes).await?;
        if let (Some(p), Some((t, n))) = (&mut self.profiler, timed) {
            // The GPU is idle after the map above: these timestamps are written.
            let words = ctx.map_f32(&p.staging, 16 * n as u64).await?;
            let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&words);
            let dispatches = plans[..t].iter().flat_map(|p| p.iter());
            for (d, pair) in dispatches.zip(ticks.chunks(2)) {
                let s = pair[1].saturating_sub(pair[0]) as f64 * p.period * 1e-9;
                match p.totals.iter_mut().find(|k| k.name == d.label) {
                    Some(k) => {
                        k.calls += 1;
                        k.seconds += s;
                    }
                    None => p.totals.push(crate::backend::KernelTime {
                        name: d.label.clone(),
                        calls: 1,
                        seconds: s,
                        workgroups: d.workgroups(),
                    }),
                }
            }
            p.steps += t;
        }
        self.commit(pending);
        Ok(losses)
    }

    /// The loss and the gradients at the current parameters on the next step's batch, with its
    /// dynamic depth (a shared layer it does not use gets zeros), without updating anything: for
    /// parity tests.
    async fn gradients_now(&mut self) -> Result<(f32, Params)> {
        let loss = self.submit_chunk(true, 1).await?[0];
        let mut weights = Vec::with_capacity(self.net.dws.len());
        for m in &self.net.dws {
            weights.push(m.read(&self.ctx).await?);
        }
        let mut biases = self.read_biases(&self.net.dbs).await?;
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
    async fn read_biases(&self, bufs: &[wgpu::Buffer]) -> Result<Vec<Matrix>> {
        let mut out = Vec::with_capacity(bufs.len());
        for (l, buf) in bufs.iter().enumerate() {
            let n = self.net.job.layers[l + 1];
            let v = self.ctx.read_f32(buf, (pad4(n) * 4) as u64).await?;
            out.push(Matrix::from_vec(1, n, v[..n].to_vec()));
        }
        Ok(out)
    }

    pub fn context(&self) -> &Arc<GpuContext> {
        &self.ctx
    }
}

/// A chunk begun ([`GpuBackend::begin_chunk`]) and not yet committed.
pub(crate) struct Pending {
    pub(crate) keys: Vec<PlanKey>,
    parity: usize,
    shared_parity: usize,
    grad_only: bool,
}

impl Pending {
    /// Its dispatches, in order, from the backend's recorded `plans` (a field borrow, so that
    /// the backend's profiler can be updated while they are held).
    pub(crate) fn plans<'a>(
        &self,
        plans: &'a HashMap<PlanKey, Vec<Dispatch>>,
    ) -> Vec<&'a [Dispatch]> {
        self.keys.iter().map(|k| &plans[k][..]).collect()
    }
}

/// Run one epoch of each recorded plan at setup, so that implementations which compile a pipeline
/// at its first dispatch (lavapipe: about 1 s for each 16x16 variant) do it here and not in the
/// timed training. It changes nothing training can see: every plan reads the weights from
/// texture 0 and writes only scratch (activations, gradients, sums, texture 1 of each pair,
/// history slots and the epoch index, which every chunk resets); what is updated in place (the
/// biases, and the weights in the buffer layout) is saved before and restored after, and the
/// optimizer's state and counters are reset to their start.
pub(crate) async fn warm_up(
    ctx: &GpuContext,
    net: &Net,
    plans: &HashMap<PlanKey, Vec<Dispatch>>,
) -> Result<()> {
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    let in_place_weights = (net.weights.iter()).filter_map(|pair| match &pair[0].storage {
        Storage::Buffer(b) if !net.layout.pairs() => Some(b),
        _ => None,
    });
    let in_place: Vec<&wgpu::Buffer> = net.biases.iter().chain(in_place_weights).collect();
    let saved = (in_place.iter())
        .map(|b| {
            let copy = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("saved during warm-up"),
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
    for (b, copy) in in_place.iter().zip(&saved) {
        enc.copy_buffer_to_buffer(copy, 0, b, 0, b.size());
    }
    for buf in net.opt_state.iter().flatten().flat_map(|b| &b.bufs) {
        enc.clear_buffer(buf, 0, None);
    }
    ctx.queue.submit([enc.finish()]);
    ctx.queue.write_buffer(
        &net.state,
        0,
        bytemuck::cast_slice(&initial_state(&net.job)),
    );
    ctx.wait().await
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

impl GpuBackend {
    async fn state_now(&mut self) -> Result<TrainState> {
        let params = self.read_params_now().await?;
        let ctx = &self.ctx;
        let mut opt_state = Vec::with_capacity(self.net.opt_state.len());
        for (banded, [r, c]) in self.net.opt_state.iter().zip(self.shapes()) {
            let copies = match banded {
                Some(b) => b.read_copies(ctx).await?,
                None => Vec::new(),
            };
            opt_state.push(
                (copies.into_iter())
                    .map(|padded| Matrix::from_vec(r, c, from_padded(r, c, &padded)))
                    .collect(),
            );
        }
        let len = initial_state(&self.net.job).len();
        let words = ctx.read_f32(&self.net.state, (len * 4) as u64).await?;
        let shared = SHARED_COUNTERS_OFFSET as usize / 4;
        Ok(TrainState {
            params,
            opt_state,
            step: self.step,
            counters: counters_of(&words[..4]),
            shared_counters: counters_of(&words[shared..shared + 4]),
        })
    }

    async fn restore_now(&mut self, s: &TrainState) -> Result<()> {
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
            if let Some(b) = bufs {
                let padded: Vec<Vec<f32>> = (saved.iter())
                    .map(|m| to_padded(r, c, &m.data, 0.0))
                    .collect();
                b.write_copies(ctx, &padded);
            }
        }
        let job = &self.net.job;
        let schedule = (&job.lr_schedule, job.lr);
        let words = state_words(&s.counters, &s.shared_counters, schedule, &job.optimizer);
        q.write_buffer(&self.net.state, 0, bytemuck::cast_slice(&words));
        (self.parity, self.shared_parity, self.step) = (0, 0, s.step);
        ctx.wait().await
    }

    async fn run_now(&mut self, epochs: usize) -> Result<Vec<f32>> {
        let per_epoch = self.net.job.steps_per_epoch();
        let mut steps = Vec::with_capacity(epochs * per_epoch);
        let mut left = epochs * per_epoch;
        while left > 0 {
            let n = left.min(self.max_steps);
            steps.extend(self.submit_chunk(false, n).await?);
            left -= n;
        }
        let job = &self.net.job;
        Ok(steps.chunks(per_epoch).map(|s| job.epoch_loss(s)).collect())
    }

    async fn read_params_now(&mut self) -> Result<Params> {
        let mut weights = Vec::with_capacity(self.net.weights.len());
        for (l, pair) in self.net.weights.iter().enumerate() {
            weights.push(pair[self.current(l)].read(&self.ctx).await?);
        }
        let biases = self.read_biases(&self.net.biases).await?;
        Ok(Params { weights, biases })
    }
}

impl Backend for GpuBackend {
    fn state_async(&mut self) -> Wait<'_, TrainState> {
        Box::pin(self.state_now())
    }

    fn restore_async<'a>(&'a mut self, s: &'a TrainState) -> Wait<'a, ()> {
        Box::pin(self.restore_now(s))
    }

    fn run_async(&mut self, epochs: usize) -> Wait<'_, Vec<f32>> {
        Box::pin(self.run_now(epochs))
    }

    fn read_params_async(&mut self) -> Wait<'_, Params> {
        Box::pin(self.read_params_now())
    }

    fn gradients_async(&mut self) -> Wait<'_, (f32, Params)> {
        Box::pin(self.gradients_now())
    }

    fn steps(&self) -> usize {
        self.step
    }

    fn describe(&self) -> DeviceInfo {
        self.ctx.describe(self.net.layout)
    }

    fn max_chunk(&self) -> usize {
        (self.max_steps / self.net.job.steps_per_epoch()).max(1)
    }

    /// Dispatches: every step of an epoch; with dynamic depth, each as deep as it can be.
    fn stats(&self) -> Stats {
        let per_step = self.plans.values().map(Vec::len).max().unwrap_or(0);
        let (steps_timed, kernels) = self
            .profiler
            .as_ref()
            .map_or((0, Vec::new()), |p| (p.steps, p.totals.clone()));
        Stats {
            dispatches_per_epoch: per_step * self.net.job.steps_per_epoch(),
            submits: self.submits,
            encode_s: self.encode_s,
            steps_timed,
            kernels,
        }
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
}
