//! A sweep's models on one adapter ([`GpuModels`]): each variant a [`GpuBackend`] of its own
//! (its weights, optimizer state, data and recorded plans, what the rest of the program reads),
//! and every chunk of all of them submitted once and read back once. The models train in the same
//! dispatches ([`stack::Stack`]: model z of every dispatch's grid, each model copied into its slot
//! of the stack before and out after), in both layouts; a dynamic-depth net's models, and a batch
//! split in bands, record their own dispatches into the one encoder instead. Either way each model
//! runs exactly the operations of its lone run, so its losses and parameters are those of that
//! run, bit for bit.

mod stack;

use super::backend::GpuBackend;
use super::layout::Layout;
use super::net::SUBMISSION_FLOPS;
use super::record::{record, scoped, Dispatch};
use super::GpuContext;
use crate::backend::{Backend, DeviceInfo, Stats};
use crate::error::Result;
use crate::init::HostState;
use crate::job::Job;
use crate::sweep::Models;
use crate::wait::Wait;
use stack::Stack;
use std::sync::Arc;

/// The models of a sweep on one adapter.
pub struct GpuModels {
    ctx: Arc<GpuContext>,
    models: Vec<GpuBackend>,
    /// The models in the same dispatches: stacks of as many as one storage binding (and in the
    /// texels layout one texture's side) holds; empty where each model dispatches its own.
    stacks: Vec<Stack>,
    /// Why the models do not share dispatches (None: they do, in `stacks`).
    per_model: Option<&'static str>,
    /// Models whose own backend may be newer than their slot in a stack (set up, handed out by
    /// [`Models::model`]): copied in before the next chunk.
    fresh: Vec<bool>,
    /// Models whose slot in a stack is newer than their own backend (trained since): copied out
    /// before one is handed out.
    stale: Vec<bool>,
    /// Resident datasets uploaded (models of the same data share one).
    datasets: usize,
    /// Every model's losses of a chunk, side by side (`max_steps` words each).
    staging: wgpu::Buffer,
    max_steps: usize,
    submits: usize,
    encode_s: f64,
}

impl GpuModels {
    /// Set up every variant (`jobs[k]` from `states[k]`) in `layout`: each uploads its data and
    /// records its plans as a lone run would.
    pub async fn create(
        ctx: Arc<GpuContext>,
        jobs: &[Job],
        states: &[HostState],
        layout: Layout,
    ) -> Result<Self> {
        Self::create_in_stacks(ctx, jobs, states, (layout, None)).await
    }

    /// [`GpuModels::create`] with at most `per_stack` models in the same dispatches (where they
    /// share them; None: as many as the adapter's bindings hold), for the checks of several
    /// stacks.
    pub async fn create_in_stacks(
        ctx: Arc<GpuContext>,
        jobs: &[Job],
        states: &[HostState],
        (layout, per_stack): (Layout, Option<usize>),
    ) -> Result<Self> {
        let mut models: Vec<GpuBackend> = Vec::with_capacity(jobs.len());
        // A resident dataset (mini-batches) is uploaded once for the models whose data are the
        // same (one dataset from files, or one seed), and bound by each of them.
        let mut datasets = 0;
        // A submission holds every model's steps: its work bounded as a lone run's is (see
        // `Net::allocate`), so that no driver watchdog fires on a big sweep.
        // Their batch rows and losses too (16 Mi words in all).
        let max_steps = match jobs.first() {
            Some(job) => {
                let flops = job.flops_with_uses(job.max_uses()).max(1.0) * jobs.len() as f64;
                let words = (job.batch + 1) * jobs.len();
                ((SUBMISSION_FLOPS / flops) as usize)
                    .min((16 << 20) / words)
                    .max(1)
            }
            None => 1,
        };
        for (k, (job, state)) in jobs.iter().zip(states).enumerate() {
            let same = match job.minibatched() {
                true => (0..k).find(|&j| same_data(&states[j], state)),
                false => None,
            };
            let shared = same.and_then(|j| models[j].dataset());
            let data = (shared.as_ref(), max_steps);
            let model = GpuBackend::create_sharing(ctx.clone(), job, state, layout, data).await?;
            datasets += usize::from(model.dataset().is_some() && shared.is_none());
            models.push(model);
        }
        let max_steps = models.iter().map(|m| m.max_steps).min().unwrap_or(1);
        let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("sweep history readback"),
            size: (models.len().max(1) * max_steps * 4) as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        // The models in the same dispatches, in stacks that fit the adapter's bindings.
        let mut stacks = Vec::new();
        let per_model = match models.first() {
            Some(first) if models.len() > 1 => stack::unstackable(&jobs[0], first),
            _ => Some("one model"),
        };
        if let (None, Some(first)) = (per_model, models.first()) {
            let fit = stack::models_per_stack(&ctx, &jobs[0], first);
            let size = per_stack.map_or(fit, |p| p.clamp(1, fit));
            let all: Vec<usize> = (0..models.len()).collect();
            for members in all.chunks(size) {
                let stack = scoped(&ctx, "setting up the sweep", async {
                    Stack::create(&ctx, &models, states, (members.to_vec(), max_steps))
                })
                .await?;
                stacks.push(stack);
            }
            log::info!(
                "{} models in {} stacks of at most {size}: one set of dispatches per step",
                models.len(),
                stacks.len()
            );
        }
        let n = models.len();
        Ok(GpuModels {
            ctx,
            models,
            stacks,
            per_model,
            fresh: vec![true; n],
            stale: vec![false; n],
            datasets,
            staging,
            max_steps,
            submits: 0,
            encode_s: 0.0,
        })
    }

    /// Why the models do not train in the same dispatches (None: they do).
    pub fn per_model_dispatches(&self) -> Option<&'static str> {
        self.per_model
    }

    /// Copy every model whose slot is newer out to its own backend (one submission).
    fn sync_out(&mut self) {
        if !self.stale.iter().any(|&s| s) {
            return;
        }
        let mut enc = self.ctx.device.create_command_encoder(&Default::default());
        for stack in &self.stacks {
            for (j, &k) in stack.members.iter().enumerate() {
                if self.stale[k] {
                    let own = &self.models[k];
                    stack.copy_state(&mut enc, (&own.net, own.parity), j, false);
                }
            }
        }
        self.ctx.queue.submit([enc.finish()]);
        self.stale.fill(false);
    }

    /// [`GpuModels::create`], waited for.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(
        ctx: Arc<GpuContext>,
        jobs: &[Job],
        states: &[HostState],
        layout: Layout,
    ) -> Result<Self> {
        crate::wait::block_on(Self::create(ctx, jobs, states, layout))
    }

    /// Resident datasets on the device: one per distinct dataset of the models (0 where each
    /// model's data is one batch).
    pub fn datasets(&self) -> usize {
        self.datasets
    }

    /// `steps` steps of every active model in one submission; the loss of every step of each.
    async fn submit(&mut self, steps: usize, active: &[bool]) -> Result<Vec<Vec<f32>>> {
        let mut pending = Vec::with_capacity(self.models.len());
        for (m, &on) in self.models.iter_mut().zip(active) {
            pending.push(match on {
                true => Some(m.begin_chunk(false, steps).await?),
                false => None,
            });
        }
        let ctx = self.ctx.clone();
        let start = web_time::Instant::now();
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sweep chunk"),
            });
        let bytes = (steps * 4) as u64;
        let slot = (self.max_steps * 4) as u64;
        if self.stacks.is_empty() {
            // Step by step across the models: step s of every model, then step s + 1.
            let plans: Vec<Vec<&[Dispatch]>> = (self.models.iter().zip(&pending))
                .filter_map(|(m, p)| p.as_ref().map(|p| p.plans(&m.plans)))
                .collect();
            let interleaved: Vec<&[Dispatch]> = (0..steps)
                .flat_map(|s| plans.iter().map(move |p| p[s]))
                .collect();
            record(&mut enc, &interleaved);
            for (k, m) in self.models.iter().enumerate() {
                if pending[k].is_some() {
                    let at = (&self.staging, k as u64 * slot);
                    enc.copy_buffer_to_buffer(&m.net.history, 0, at.0, at.1, bytes);
                }
            }
        } else {
            // Every model's slot up to date, its batches' rows in place, the chunk's step reset
            // (in every slot: a model not training still runs, on its own slot only).
            for stack in &self.stacks {
                stack.reset_steps(&ctx);
                for (j, &k) in stack.members.iter().enumerate() {
                    // The model's own weights are in the texture of its own parity (texels),
                    // before this chunk's steps.
                    let own = (&self.models[k].net, self.models[k].parity);
                    if self.fresh[k] {
                        stack.copy_state(&mut enc, own, j, true);
                        self.fresh[k] = false;
                    }
                    // A model that stops training keeps what its last chunk left, though its
                    // slot runs on.
                    if self.stale[k] && pending[k].is_none() {
                        stack.copy_state(&mut enc, own, j, false);
                        self.stale[k] = false;
                    }
                    if pending[k].is_some() {
                        stack.copy_rows(&mut enc, own.0, j, steps);
                    }
                }
            }
            // The steps' keys are the same for every training model (one job's shapes, one
            // step), but for the weights' parity, which each stack keeps for its models.
            let keys = (pending.iter().flatten().next()).map_or(Vec::new(), |p| p.keys.clone());
            let mut per_stack = Vec::with_capacity(self.stacks.len());
            for stack in &mut self.stacks {
                let own = stack.keys(&keys);
                for key in &own {
                    stack.plan(&ctx, *key)?;
                }
                per_stack.push(own);
            }
            let stacks = &self.stacks;
            let plans: Vec<&[Dispatch]> = (0..keys.len())
                .flat_map(|s| {
                    (stacks.iter().zip(&per_stack)).map(move |(stack, k)| stack.recorded(k[s]))
                })
                .collect();
            record(&mut enc, &plans);
            for stack in &mut self.stacks {
                stack.advance(keys.len());
            }
            for stack in &self.stacks {
                for (j, &k) in stack.members.iter().enumerate() {
                    if pending[k].is_some() {
                        stack.copy_losses(&mut enc, j, steps, (&self.staging, k as u64 * slot));
                        self.stale[k] = true;
                    }
                }
            }
        }
        ctx.queue.submit([enc.finish()]);
        self.encode_s += start.elapsed().as_secs_f64();
        self.submits += 1;
        let n = self.models.len();
        let words = ctx.map_f32(&self.staging, n as u64 * slot).await?;
        let mut out = Vec::with_capacity(n);
        for (k, (m, p)) in self.models.iter_mut().zip(pending).enumerate() {
            out.push(match p {
                Some(p) => {
                    m.commit(p);
                    words[k * self.max_steps..][..steps].to_vec()
                }
                None => Vec::new(),
            });
        }
        Ok(out)
    }

    async fn run_now(&mut self, epochs: usize, active: &[bool]) -> Result<Vec<Vec<f32>>> {
        let Some(first) = self.models.first() else {
            return Ok(Vec::new());
        };
        let job = first.net.job.clone();
        let per_epoch = job.steps_per_epoch();
        let mut steps: Vec<Vec<f32>> = vec![Vec::new(); self.models.len()];
        let mut left = epochs * per_epoch;
        let ctx = self.ctx.clone();
        while left > 0 {
            let n = left.min(self.max_steps);
            let chunk = scoped(&ctx, "training the sweep", self.submit(n, active)).await?;
            for (all, c) in steps.iter_mut().zip(chunk) {
                all.extend(c);
            }
            left -= n;
        }
        Ok((steps.iter())
            .map(|s| s.chunks(per_epoch).map(|s| job.epoch_loss(s)).collect())
            .collect())
    }
}

impl Models for GpuModels {
    fn describe(&self) -> DeviceInfo {
        match self.models.first() {
            Some(m) => m.describe(),
            None => self.ctx.describe(Layout::Buffer),
        }
    }

    fn len(&self) -> usize {
        self.models.len()
    }

    /// Model k's own backend, up to date (its slot in a stack copied out first; copied back in
    /// before the next chunk, in case the caller changes it).
    fn model(&mut self, k: usize) -> &mut dyn Backend {
        self.sync_out();
        self.fresh[k] = true;
        &mut self.models[k]
    }

    fn run_async<'a>(&'a mut self, epochs: usize, active: &'a [bool]) -> Wait<'a, Vec<Vec<f32>>> {
        Box::pin(self.run_now(epochs, active))
    }

    fn max_chunk(&self) -> usize {
        self.models.first().map_or(1, |m| m.max_chunk())
    }

    fn batching(&self) -> String {
        let shared = match self.stacks.first().map(|s| s.shared_data()) {
            Some((true, _)) => ", one batch read by all",
            Some((_, true)) => ", one resident dataset read by all",
            _ => "",
        };
        match (self.per_model, self.stacks.len()) {
            (Some(why), _) => format!("each model its own dispatches, one submission: {why}"),
            (None, 1) => format!("every model in the same dispatches{shared}"),
            (None, n) => format!(
                "the models in {n} sets of dispatches (as many as {} holds in each){shared}",
                match self.stacks[0].net.layout {
                    Layout::Texels => "one texture's side",
                    Layout::Buffer => "one storage binding",
                }
            ),
        }
    }

    /// Dispatches of every model's epoch (of every stack's, where they share them); submissions
    /// of the sweep (one per chunk for all).
    fn stats(&self) -> Stats {
        let per_model = self.models.iter().map(|m| m.stats().dispatches_per_epoch);
        let per_epoch = match self.models.first() {
            Some(first) if !self.stacks.is_empty() => {
                self.stacks.len() * first.stats().dispatches_per_epoch
            }
            _ => per_model.sum(),
        };
        Stats {
            dispatches_per_epoch: per_epoch,
            submits: self.submits,
            encode_s: self.encode_s,
            ..Stats::default()
        }
    }
}

/// Whether two models train on the same data, bit for bit (their resident datasets may be one).
pub(crate) fn same_data(a: &HostState, b: &HostState) -> bool {
    let same = |p: &crate::init::Matrix, q: &crate::init::Matrix| {
        (p.rows, p.cols) == (q.rows, q.cols)
            && (p.data.iter().zip(&q.data)).all(|(u, v)| u.to_bits() == v.to_bits())
    };
    same(&a.x, &b.x) && same(&a.y, &b.y)
}
