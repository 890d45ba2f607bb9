//! A sweep's models in the same dispatches ([`Stack`]): one [`Net`] whose every per-model buffer
//! holds the models one after the other (in the texels layout every per-model texture holds them
//! one below the other), its plans recorded once for all of them (model z of each dispatch's
//! grid), and the copies that move each model between its own backend (what the rest of the
//! program reads and restores) and its place in the stack.
//!
//! In the texels layout each weight is a pair of textures, the current one flipping every step.
//! The stack keeps its own parity (its models step together, one sitting out too), and a model's
//! own backend keeps its own: the copies go between the current texture of each.
//!
//! Each model runs the kernels of its lone run on its own slice, in the same order, with its own
//! rate, hyperparameters and step counters (read from its slot of the counters): its losses and
//! parameters are those of its lone run, bit for bit.

use crate::error::Result;
use crate::gpu::backend::GpuBackend;
use crate::gpu::layout::{pad4, Layout};
use crate::gpu::memory::{data_array, DataArray, GpuMatrix, Storage};
use crate::gpu::net::{Net, Stacking};
use crate::gpu::plan::PlanKey;
use crate::gpu::record::Dispatch;
use crate::gpu::GpuContext;
use crate::init::HostState;
use crate::job::Job;
use std::collections::HashMap;

/// Models trained in the same dispatches.
pub(crate) struct Stack {
    pub(crate) net: Net,
    /// The sweep's model of each slot.
    pub(crate) members: Vec<usize>,
    /// Recorded steps, by key, built on first use.
    plans: HashMap<PlanKey, Vec<Dispatch>>,
    /// Which texture of each weight pair holds the current weights (texels layout; 0 else).
    parity: usize,
}

/// Why a sweep's models cannot share dispatches (None: they can).
pub(crate) fn unstackable(job: &Job, first: &GpuBackend) -> Option<&'static str> {
    if job.shared_layer().is_some() {
        Some("a dynamic-depth net's steps differ by step (per-model dispatches)")
    } else if first.net.row_band != usize::MAX {
        Some("its batch is split in bands of rows (per-model dispatches)")
    } else {
        None
    }
}

/// Models per stack: as many as keep every stacked buffer within one storage binding (and the
/// grid within the adapter's workgroups per dimension, for split-K's ranges of every model).
pub(crate) fn models_per_stack(ctx: &GpuContext, job: &Job, first: &GpuBackend) -> usize {
    let d = &job.layers;
    let widest = d.iter().map(|&w| pad4(w)).max().unwrap_or(4);
    let copies = first.net.opt_state.iter().flatten().map(|s| s.copies).max();
    let weight = (d.windows(2))
        .map(|w| pad4(w[0]) * pad4(w[1]) * copies.unwrap_or(1).max(1))
        .max()
        .unwrap_or(0);
    let dataset = match job.minibatched() {
        true => job.dataset_rows() * widest,
        false => 0,
    };
    let index = first.net.data.as_ref().map_or(0, |data| data.index_len);
    let words = [
        pad4(job.batch) * widest,
        weight,
        dataset,
        index,
        first.net.history_len,
    ];
    let per_model = 4 * words.into_iter().max().unwrap_or(1).max(1) as u64;
    let l = &ctx.limits;
    let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size);
    let grid = (l.max_compute_workgroups_per_dimension / 64).max(1) as u64;
    // In the texels layout the models go down each texture: as many as its side holds of the
    // tallest (a weight's rows, or the batch's).
    let side = match first.net.layout {
        Layout::Texels => {
            let tallest = d[..d.len() - 1]
                .iter()
                .map(|&w| pad4(w))
                .chain([pad4(job.batch)]);
            l.max_texture_dimension_2d as u64 / tallest.max().unwrap_or(4) as u64
        }
        Layout::Buffer => u64::MAX,
    };
    (limit / per_model).min(grid).min(side).max(1) as usize
}

impl Stack {
    /// The stack of the models `members` (`models[k]`, set up from `states[k]`), filled with
    /// their data: x and y, or the resident dataset (one, where they share one).
    pub(crate) fn create(
        ctx: &GpuContext,
        models: &[GpuBackend],
        states: &[HostState],
        (members, max_steps): (Vec<usize>, usize),
    ) -> Result<Stack> {
        let first = &models[members[0]];
        let job = &first.net.job;
        let n = members.len();
        let resident = first.net.data.as_ref();
        let dataset = match resident {
            None => None,
            // One dataset bound by all (the models share it): read once per step by all.
            Some(data)
                if (members.iter()).all(|&k| {
                    let other = models[k].net.data.as_ref();
                    other.is_some_and(|o| same_array(&o.x, &data.x) && same_array(&o.y, &data.y))
                }) =>
            {
                Some(((data.x.clone(), data.y.clone()), 0))
            }
            // Each model's own, one after the other.
            Some(_) => {
                let rows = job.dataset_rows();
                let stacked = |what: &str, cols: usize, m: fn(&HostState) -> &[f32]| {
                    let all: Vec<f32> = (members.iter())
                        .flat_map(|&k| m(&states[k]).iter().copied())
                        .collect();
                    let label = format!("{n} models' dataset {what} ({rows}x{cols} f32 each)");
                    data_array(ctx, first.net.layout, &label, n * rows, cols, &all)
                };
                let x = stacked("x", job.layers[0], |s| &s.x.data)?;
                let y = stacked("y", job.layers[job.depth()], |s| &s.y.data)?;
                Some(((x, y), rows))
            }
        };
        // One batch of the same data for all: one x and one y, bound once.
        let shared_batch = resident.is_none()
            && (members.iter()).all(|&k| super::same_data(&states[members[0]], &states[k]));
        let stacking = Stacking {
            models: n,
            model_rows: dataset.as_ref().map_or(0, |d| d.1),
            max_steps,
            shared_batch,
        };
        let shared = dataset.as_ref().map(|d| &d.0);
        let (net, _) = Net::allocate(
            ctx,
            job,
            &states[members[0]],
            first.net.layout,
            shared,
            stacking,
        )?;
        // One batch: each model's x and y into its slot (model 0's alone where they share
        // them), once.
        if resident.is_none() {
            let mut enc = ctx.device.create_command_encoder(&Default::default());
            let slots = if shared_batch { 1 } else { n };
            for (j, &k) in members.iter().enumerate().take(slots) {
                let own = &models[k].net;
                copy_matrix(&mut enc, &own.x, &net.x, j, true);
                copy_matrix(&mut enc, &own.y, &net.y, j, true);
            }
            ctx.queue.submit([enc.finish()]);
        }
        Ok(Stack {
            net,
            members,
            plans: HashMap::new(),
            parity: 0,
        })
    }

    /// Whether the models bind one x and y (one batch of the same data), and one resident
    /// dataset.
    pub(crate) fn shared_data(&self) -> (bool, bool) {
        let one_batch = self.net.data.is_none() && self.net.x.models == 1 && self.net.models > 1;
        let one_dataset = (self.net.data.as_ref()).is_some_and(|d| d.model_rows == 0);
        (one_batch, one_dataset)
    }

    /// The stack's keys of the chunk whose steps a model's own run keys as `keys`: the same
    /// steps, with the stack's parity (flipping every step where the weights go in pairs).
    pub(crate) fn keys(&self, keys: &[PlanKey]) -> Vec<PlanKey> {
        let pairs = self.net.layout.pairs();
        (keys.iter().enumerate())
            .map(|(s, &key)| PlanKey {
                parity: match pairs {
                    true => (self.parity + s) % 2,
                    false => 0,
                },
                ..key
            })
            .collect()
    }

    /// The chunk of `steps` steps was recorded: the weights' parity moves past it.
    pub(crate) fn advance(&mut self, steps: usize) {
        if self.net.layout.pairs() {
            self.parity = (self.parity + steps) % 2;
        }
    }

    /// Record the step of `key` for all the models, where it is not yet.
    pub(crate) fn plan(&mut self, ctx: &GpuContext, key: PlanKey) -> Result<()> {
        if !self.plans.contains_key(&key) {
            let plan = self.net.plan(ctx, key)?;
            self.plans.insert(key, plan);
        }
        Ok(())
    }

    /// The step of `key`, recorded by [`Stack::plan`].
    pub(crate) fn recorded(&self, key: PlanKey) -> &[Dispatch] {
        &self.plans[&key]
    }

    /// Record the copies of a model's trained state (weights, biases, the optimizer's state
    /// and the step counters) from its backend `own` (its weights' current texture
    /// `own_parity`) into slot `j` (`into`), or back.
    pub(crate) fn copy_state(
        &self,
        enc: &mut wgpu::CommandEncoder,
        (own, own_parity): (&Net, usize),
        j: usize,
        into: bool,
    ) {
        let stack = &self.net;
        for (o, s) in own.weights.iter().zip(&stack.weights) {
            let (o, s) = (
                &o[own_parity.min(o.len() - 1)],
                &s[self.parity.min(s.len() - 1)],
            );
            copy_matrix(enc, o, s, j, into);
        }
        for (o, s) in own.biases.iter().zip(&stack.biases) {
            copy_slot(enc, o, s, j, into);
        }
        for (o, s) in own.opt_state.iter().zip(&stack.opt_state) {
            if let (Some(o), Some(s)) = (o, s) {
                // [m | v] of the model; [every model's m | every model's v] in the stack.
                let copy = o.bufs[0].size() / o.copies as u64;
                for c in 0..o.copies as u64 {
                    let at = (c * self.members.len() as u64 + j as u64) * copy;
                    copy_range(enc, (&o.bufs[0], c * copy), (&s.bufs[0], at), copy, into);
                }
            }
        }
        copy_slot(enc, &own.state, &stack.state, j, into);
    }

    /// Record the copy of a model's batch rows (`steps` steps' worth, uploaded to its backend's
    /// index) into slot `j`.
    pub(crate) fn copy_rows(
        &self,
        enc: &mut wgpu::CommandEncoder,
        own: &Net,
        j: usize,
        steps: usize,
    ) {
        if let (Some(o), Some(s)) = (&own.data, &self.net.data) {
            let bytes = (steps * own.job.batch * 4) as u64;
            let at = (j * s.index_len * 4) as u64;
            copy_range(enc, (&o.index, 0), (&s.index, at), bytes, true);
        }
    }

    /// Record the copy of slot `j`'s losses of `steps` steps to `to` at byte `at`.
    pub(crate) fn copy_losses(
        &self,
        enc: &mut wgpu::CommandEncoder,
        j: usize,
        steps: usize,
        (to, at): (&wgpu::Buffer, u64),
    ) {
        let from = (j * self.net.history_len * 4) as u64;
        enc.copy_buffer_to_buffer(&self.net.history, from, to, at, (steps * 4) as u64);
    }

    /// Reset every slot's step within the chunk (the models not training too: their history
    /// slot must stay their own).
    pub(crate) fn reset_steps(&self, ctx: &GpuContext) {
        let words = (self.net.state.size() / 4) as usize / self.members.len();
        for j in 0..self.members.len() {
            let at = (j * words * 4) as u64;
            ctx.queue
                .write_buffer(&self.net.state, at, bytemuck::bytes_of(&0u32));
        }
    }
}

/// Copy a model's matrix `own` into slot `j` of the stacked `stack` (`into`), or back: a range of
/// the buffer, or a band of texel rows (the same layout for both, the stack's own).
fn copy_matrix(
    enc: &mut wgpu::CommandEncoder,
    own: &GpuMatrix,
    stack: &GpuMatrix,
    j: usize,
    into: bool,
) {
    match (&own.storage, &stack.storage) {
        (Storage::Buffer(o), Storage::Buffer(s)) => copy_slot(enc, o, s, j, into),
        (Storage::Texture { texture: o, .. }, Storage::Texture { texture: s, .. }) => {
            let (rows, width) = (pad4(own.rows) as u32, (pad4(own.cols) / 4) as u32);
            let at = |texture, y| wgpu::TexelCopyTextureInfo {
                texture,
                mip_level: 0,
                origin: wgpu::Origin3d { x: 0, y, z: 0 },
                aspect: wgpu::TextureAspect::All,
            };
            let (own, stack) = (at(o, 0), at(s, j as u32 * rows));
            let (from, to) = match into {
                true => (own, stack),
                false => (stack, own),
            };
            let size = wgpu::Extent3d {
                width,
                height: rows,
                depth_or_array_layers: 1,
            };
            enc.copy_texture_to_texture(from, to, size);
        }
        _ => unreachable!("a model and its stack share their layout"),
    }
}

/// Copy a model's whole buffer `own` into slot `j` of `stack` (`into`), or back.
fn copy_slot(
    enc: &mut wgpu::CommandEncoder,
    own: &wgpu::Buffer,
    stack: &wgpu::Buffer,
    j: usize,
    into: bool,
) {
    let bytes = own.size();
    copy_range(enc, (own, 0), (stack, j as u64 * bytes), bytes, into);
}

/// Copy `bytes` from `own` to `stack` (`into`), or back.
fn copy_range(
    enc: &mut wgpu::CommandEncoder,
    own: (&wgpu::Buffer, u64),
    stack: (&wgpu::Buffer, u64),
    bytes: u64,
    into: bool,
) {
    let (from, to) = match into {
        true => (own, stack),
        false => (stack, own),
    };
    enc.copy_buffer_to_buffer(from.0, from.1, to.0, to.1, bytes);
}

/// Whether two resident datasets are one (the same buffer, or the same texture array).
fn same_array(a: &DataArray, b: &DataArray) -> bool {
    match (&a.storage, &b.storage) {
        (Storage::Buffer(p), Storage::Buffer(q)) => p == q,
        (Storage::Texture { texture: p, .. }, Storage::Texture { texture: q, .. }) => p == q,
        _ => false,
    }
}
