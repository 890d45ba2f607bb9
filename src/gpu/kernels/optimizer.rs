//! The optimizer step fused into the kernels that update parameters (`shaders/optimizer.wgsl`,
//! put in front of `matmul.wgsl` and `bias_update.wgsl`): its variants and its bindings.

use crate::codes;
use crate::gpu::layout::pad4;
use crate::gpu::memory::Banded;
use crate::gpu::GpuContext;

/// The optimizer step of `shaders/optimizer.wgsl` (its `OPT` override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u32)]
pub enum Opt {
    #[default]
    Sgd = codes::OPT_SGD,
    Momentum = codes::OPT_MOMENTUM,
    Nesterov = codes::OPT_NESTEROV,
    Adam = codes::OPT_ADAM,
    AdamW = codes::OPT_ADAMW,
}

impl Opt {
    pub fn of(o: &crate::job::Optimizer) -> Self {
        use crate::job::OptimizerKind;
        match o.kind {
            OptimizerKind::Sgd => Opt::Sgd,
            OptimizerKind::Momentum if o.nesterov => Opt::Nesterov,
            OptimizerKind::Momentum => Opt::Momentum,
            OptimizerKind::Adam => Opt::Adam,
            OptimizerKind::AdamW => Opt::AdamW,
        }
    }

    /// Whether the step keeps a first (momentum) buffer, and a second (Adam) one.
    pub fn state_buffers(self) -> usize {
        match self {
            Opt::Sgd => 0,
            Opt::Momentum | Opt::Nesterov => 1,
            Opt::Adam | Opt::AdamW => 2,
        }
    }
}

/// What else an update's step does: the weight decay, as f32 bits (0: none), and whether the
/// learning rate follows a schedule. The kernels read both from the step counters (words 19 and
/// 5 of [`COUNTER_SLOT_BYTES`]); the checks write them there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Update {
    pub decay_bits: u32,
    pub scheduled: bool,
}

impl Update {
    pub fn of(job: &crate::job::Job) -> Self {
        Update {
            decay_bits: job.optimizer.weight_decay.to_bits(),
            scheduled: !job.lr_schedule.is_constant(),
        }
    }
}

/// Bytes of one slot of step counters an update binds (32 words): `[epoch in chunk, t, bits of
/// beta1^t, bits of beta2^t, the run's step, bits of the step's rate, bits of beta1 and beta2
/// (what the powers advance by), the schedule's 6 words, _, _, bits of mu or beta1, beta2, eps
/// and the weight decay (what the step reads), _...]`.
pub(crate) const COUNTER_SLOT_BYTES: u64 = 128;

/// Words from one model's step counters to the next's where a sweep's models are stacked: the
/// slot and the shared layer's slot after it (`SHARED_COUNTERS_OFFSET`).
pub(crate) const COUNTER_MODEL_WORDS: u32 =
    ((super::loss_reduce::SHARED_COUNTERS_OFFSET + COUNTER_SLOT_BYTES) / 4) as u32;

/// Words 16..20 of a counters slot: what an update step reads besides its rate.
pub(crate) fn step_words(hyper: [f32; 3], decay: f32) -> [u32; 4] {
    [
        hyper[0].to_bits(),
        hyper[1].to_bits(),
        hyper[2].to_bits(),
        decay.to_bits(),
    ]
}

/// The hyperparameters an optimizer's step reads: mu, or beta1, beta2, eps.
pub(crate) fn hyper_of(o: &crate::job::Optimizer) -> [f32; 3] {
    match Opt::of(o) {
        Opt::Adam | Opt::AdamW => [o.beta1, o.beta2, o.eps],
        _ => [o.momentum, 0.0, 0.0],
    }
}

/// What an optimizer step binds besides the parameters and their gradient.
#[derive(Clone, Copy)]
pub(crate) struct OptBind<'a> {
    /// The optimizer's state of the parameters (None: plain SGD keeps none): m, and v after it.
    pub(crate) state: Option<&'a Banded>,
    /// The step counters (`loss_reduce`'s state) and their byte offset in it: 0, or
    /// `SHARED_COUNTERS_OFFSET` for a dynamic-depth net's shared layer.
    pub(crate) counters: (&'a wgpu::Buffer, u64),
    /// Whether the counters are a sweep's stacked models' ([`COUNTER_MODEL_WORDS`] each), bound
    /// whole.
    pub(crate) stacked: bool,
}

/// The optimizer's state (band `band` of it) and the step counters, at `OPT_BINDING` on in the
/// kernels that update parameters (dummies where the step keeps no state: plain SGD reads none).
pub(crate) fn optimizer_bindings<'a>(
    ctx: &'a GpuContext,
    opt: Option<OptBind<'a>>,
    band: usize,
) -> [wgpu::BindingResource<'a>; 2] {
    let kn = &ctx.kernels;
    let state = opt.and_then(|o| o.state);
    [
        state
            .map_or(&kn.dummy_opt, |b| &b.bufs[band])
            .as_entire_binding(),
        match opt {
            Some(OptBind {
                counters: (buffer, offset),
                stacked,
                ..
            }) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: match stacked {
                    true => None,
                    false => wgpu::BufferSize::new(COUNTER_SLOT_BYTES),
                },
            }),
            None => kn.dummy_bias.as_entire_binding(),
        },
    ]
}

/// An optimizer step's inputs for a kernel run on its own (the checks of `verify` and the tests:
/// `run_matmul` in `Mode::Update`, `run_bias_sum`): its hyperparameters, its state before the
/// step and the step counters the update reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StepState {
    /// mu, or beta1, beta2, eps.
    pub hyper: [f32; 3],
    /// m, then v for Adam, each `[rows, cols]` row-major in the parameters' shape: as many as
    /// the step's [`Opt::state_buffers`].
    pub moments: Vec<Vec<f32>>,
    /// beta1^t and beta2^t at this step (counters words 2 and 3).
    pub beta_t: [f32; 2],
    /// The step's scheduled learning rate (counters word 5, read with `Update::scheduled`).
    pub scheduled_lr: f32,
}

impl Default for StepState {
    /// Plain SGD's: no hyperparameters, no moments, the powers at 1.
    fn default() -> Self {
        StepState {
            hyper: [0.0; 3],
            moments: Vec::new(),
            beta_t: [1.0; 2],
            scheduled_lr: 0.0,
        }
    }
}

impl StepState {
    /// The counters slot an update with the rate `lr` binds (what `loss_reduce` and the host
    /// leave there in training): `[_, t, bits of beta1^t, bits of beta2^t, _, bits of the step's
    /// rate (the scheduled one where `update` is scheduled), ..., the hyperparameters and the
    /// weight decay from word 16]`.
    pub(crate) fn counter_words(&self, lr: f32, update: Update) -> [u32; 32] {
        let mut w = [0u32; 32];
        w[1] = 1;
        w[2] = self.beta_t[0].to_bits();
        w[3] = self.beta_t[1].to_bits();
        w[5] = match update.scheduled {
            true => self.scheduled_lr,
            false => lr,
        }
        .to_bits();
        w[16..20].copy_from_slice(&step_words(self.hyper, f32::from_bits(update.decay_bits)));
        w
    }

    /// The state and the counters on the GPU of the models `steps` (each with its rate), for a
    /// `[rows, cols]` parameter (the state padded with zeros as in training), stacked as a
    /// sweep's are where they are many (every model's m, then every model's v; each model's
    /// counters [`COUNTER_MODEL_WORDS`] after the previous one's), and the counters' buffer.
    pub(crate) fn upload_models(
        ctx: &GpuContext,
        (rows, cols): (usize, usize),
        steps: &[(&StepState, f32)],
        update: Update,
    ) -> crate::error::Result<(Option<Banded>, wgpu::Buffer)> {
        use wgpu::util::DeviceExt;
        let count = steps.len();
        let copies = steps.first().map_or(0, |s| s.0.moments.len());
        let state = if copies == 0 {
            None
        } else {
            let b = Banded::stacked(ctx, "optimizer state", (rows, cols), copies, count)?;
            let len = pad4(rows) * pad4(cols);
            for (j, (step, _)) in steps.iter().enumerate() {
                for (c, m) in step.moments.iter().enumerate() {
                    let at = ((c * count + j) * len * 4) as u64;
                    let padded = crate::gpu::layout::to_padded(rows, cols, m, 0.0);
                    ctx.queue
                        .write_buffer(&b.bufs[0], at, bytemuck::cast_slice(&padded));
                }
            }
            Some(b)
        };
        let mut words = vec![0u32; count.max(1) * COUNTER_MODEL_WORDS as usize];
        for (slot, (step, lr)) in (words.chunks_mut(COUNTER_MODEL_WORDS as usize)).zip(steps) {
            slot[..32].copy_from_slice(&step.counter_words(*lr, update));
        }
        let counters = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("counters"),
                contents: bytemuck::cast_slice(&words),
                usage: wgpu::BufferUsages::STORAGE,
            });
        Ok((state, counters))
    }
}

/// The moments of a `[rows, cols]` parameter after a step (unpadded), from the state on the GPU,
/// of each of its `models` (stacked as [`StepState::upload_models`] stacks them).
pub(crate) async fn read_moments(
    ctx: &GpuContext,
    state: Option<&Banded>,
    (rows, cols): (usize, usize),
    models: usize,
) -> crate::error::Result<Vec<Vec<Vec<f32>>>> {
    let Some(state) = state else {
        return Ok(vec![Vec::new(); models]);
    };
    let copies = state.read_copies(ctx).await?;
    let len = pad4(rows) * pad4(cols);
    Ok((0..models)
        .map(|j| {
            (copies.iter())
                .map(|c| crate::gpu::layout::from_padded(rows, cols, &c[j * len..][..len]))
                .collect()
        })
        .collect())
}
