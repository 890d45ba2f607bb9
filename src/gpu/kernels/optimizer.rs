//! The optimizer step fused into the kernels that update parameters (`shaders/optimizer.wgsl`,
//! put in front of `matmul.wgsl` and `bias_update.wgsl`): its variants and its bindings.

use crate::codes;
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

/// What else an update's step does (the `WD` and `SCHED` overrides of
/// `shaders/optimizer.wgsl`): the weight decay, as f32 bits (0: none), and whether the learning
/// rate follows the schedule kept in the step counters.
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

    /// The `WD` and `SCHED` override constants.
    pub fn constants(self) -> [(&'static str, f64); 2] {
        [
            ("WD", f32::from_bits(self.decay_bits) as f64),
            ("SCHED", self.scheduled as u8 as f64),
        ]
    }
}

/// Bytes of one slot of step counters an update binds: `[epoch in chunk, t, bits of beta1^t,
/// bits of beta2^t, the run's step, _, _, _, the schedule's 5 words, _, _, _]`.
pub(crate) const COUNTER_SLOT_BYTES: u64 = 64;

/// What an optimizer step binds besides the parameters and their gradient.
#[derive(Clone, Copy)]
pub(crate) struct OptBind<'a> {
    /// The optimizer's state of the parameters (None: plain SGD keeps none): m, and v after it.
    pub(crate) state: Option<&'a Banded>,
    /// The step counters (`loss_reduce`'s state) and their byte offset in it: 0, or
    /// `SHARED_COUNTERS_OFFSET` for a dynamic-depth net's shared layer.
    pub(crate) counters: (&'a wgpu::Buffer, u64),
    /// mu, or beta1, beta2, eps.
    pub(crate) hyper: [f32; 3],
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
                ..
            }) => wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer,
                offset,
                size: wgpu::BufferSize::new(COUNTER_SLOT_BYTES),
            }),
            None => kn.dummy_bias.as_entire_binding(),
        },
    ]
}

/// The optimizer's hyperparameters as the kernels' uniforms take them (zeros for plain SGD).
pub(crate) fn hyper(opt: Option<OptBind<'_>>) -> [f32; 3] {
    opt.map_or([0.0; 3], |o| o.hyper)
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

impl StepState {
    /// The counters slot the update binds: `[_, t, bits of beta1^t, bits of beta2^t, _, bits of
    /// the scheduled rate, ...]` (what `loss_reduce` leaves there in training).
    pub(crate) fn counter_words(&self) -> [u32; 16] {
        let mut w = [0u32; 16];
        w[1] = 1;
        w[2] = self.beta_t[0].to_bits();
        w[3] = self.beta_t[1].to_bits();
        w[5] = self.scheduled_lr.to_bits();
        w
    }

    /// The state and the counters on the GPU, for a `[rows, cols]` parameter (the state padded
    /// with zeros as in training), and the counters' buffer.
    pub(crate) fn upload(
        &self,
        ctx: &GpuContext,
        (rows, cols): (usize, usize),
    ) -> crate::error::Result<(Option<Banded>, wgpu::Buffer)> {
        use wgpu::util::DeviceExt;
        let state = if self.moments.is_empty() {
            None
        } else {
            let b = Banded::with_copies(ctx, "optimizer state", rows, cols, self.moments.len())?;
            let padded: Vec<Vec<f32>> = (self.moments.iter())
                .map(|m| crate::gpu::layout::to_padded(rows, cols, m, 0.0))
                .collect();
            b.write_copies(ctx, &padded);
            Some(b)
        };
        let counters = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("counters"),
                contents: bytemuck::cast_slice(&self.counter_words()),
                usage: wgpu::BufferUsages::STORAGE,
            });
        Ok((state, counters))
    }
}

/// The moments of a `[rows, cols]` parameter after a step (unpadded), from the state on the GPU.
pub(crate) async fn read_moments(
    ctx: &GpuContext,
    state: Option<&Banded>,
    (rows, cols): (usize, usize),
) -> crate::error::Result<Vec<Vec<f32>>> {
    let Some(state) = state else {
        return Ok(Vec::new());
    };
    let copies = state.read_copies(ctx).await?;
    Ok((copies.iter())
        .map(|c| crate::gpu::layout::from_padded(rows, cols, c))
        .collect())
}
