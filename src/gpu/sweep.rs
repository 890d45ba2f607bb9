//! A sweep's models on one adapter ([`GpuModels`]): each variant a [`GpuBackend`] of its own
//! (its weights, optimizer state, data and recorded plans), every chunk of all of them recorded
//! into one encoder, submitted once and read back once. Each model runs exactly the dispatches of
//! its lone run, so its losses and parameters are those of that run, bit for bit.

use super::backend::GpuBackend;
use super::layout::Layout;
use super::record::{record, scoped, Dispatch};
use super::GpuContext;
use crate::backend::{Backend, DeviceInfo, Stats};
use crate::error::Result;
use crate::init::HostState;
use crate::job::Job;
use crate::sweep::Models;
use crate::wait::Wait;
use std::sync::Arc;

/// The models of a sweep on one adapter.
pub struct GpuModels {
    ctx: Arc<GpuContext>,
    models: Vec<GpuBackend>,
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
        let mut models: Vec<GpuBackend> = Vec::with_capacity(jobs.len());
        // A resident dataset (mini-batches) is uploaded once for the models whose data are the
        // same (one dataset from files, or one seed), and bound by each of them.
        let mut datasets = 0;
        for (k, (job, state)) in jobs.iter().zip(states).enumerate() {
            let same = match job.minibatched() {
                true => (0..k).find(|&j| same_data(&states[j], state)),
                false => None,
            };
            let shared = same.and_then(|j| models[j].dataset());
            let model =
                GpuBackend::create_sharing(ctx.clone(), job, state, layout, shared.as_ref())
                    .await?;
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
        Ok(GpuModels {
            ctx,
            models,
            datasets,
            staging,
            max_steps,
            submits: 0,
            encode_s: 0.0,
        })
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
        let ctx = &self.ctx;
        let start = web_time::Instant::now();
        let mut enc = ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("sweep chunk"),
            });
        // Step by step across the models: step s of every model, then step s + 1.
        let plans: Vec<Vec<&[Dispatch]>> = (self.models.iter().zip(&pending))
            .filter_map(|(m, p)| p.as_ref().map(|p| p.plans(&m.plans)))
            .collect();
        let interleaved: Vec<&[Dispatch]> = (0..steps)
            .flat_map(|s| plans.iter().map(move |p| p[s]))
            .collect();
        record(&mut enc, &interleaved);
        let bytes = (steps * 4) as u64;
        let slot = (self.max_steps * 4) as u64;
        for (k, m) in self.models.iter().enumerate() {
            if pending[k].is_some() {
                enc.copy_buffer_to_buffer(&m.net.history, 0, &self.staging, k as u64 * slot, bytes);
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

    fn model(&mut self, k: usize) -> &mut dyn Backend {
        &mut self.models[k]
    }

    fn run_async<'a>(&'a mut self, epochs: usize, active: &'a [bool]) -> Wait<'a, Vec<Vec<f32>>> {
        Box::pin(self.run_now(epochs, active))
    }

    fn max_chunk(&self) -> usize {
        self.models.first().map_or(1, |m| m.max_chunk())
    }

    /// Dispatches of every model's epoch; submissions of the sweep (one per chunk for all).
    fn stats(&self) -> Stats {
        let per_epoch = self.models.iter().map(|m| m.stats().dispatches_per_epoch);
        Stats {
            dispatches_per_epoch: per_epoch.sum(),
            submits: self.submits,
            encode_s: self.encode_s,
            ..Stats::default()
        }
    }
}

/// Whether two models train on the same data, bit for bit (their resident datasets may be one).
fn same_data(a: &HostState, b: &HostState) -> bool {
    let same = |p: &crate::init::Matrix, q: &crate::init::Matrix| {
        (p.rows, p.cols) == (q.rows, q.cols)
            && (p.data.iter().zip(&q.data)).all(|(u, v)| u.to_bits() == v.to_bits())
    };
    same(&a.x, &b.x) && same(&a.y, &b.y)
}
