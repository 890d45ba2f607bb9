//! `shaders/loss_reduce.wgsl`: the deterministic sum of the per-element losses into the history,
//! and the step counters it keeps on the GPU; its uniform block, dispatch and standalone run.

use crate::error::Result;
use crate::gpu::kernels::optimizer::{hyper_of, step_words, COUNTER_MODEL_WORDS};
use crate::gpu::layout::{pad4, to_padded};
use crate::gpu::memory::{storage, uniform, STORAGE};
use crate::gpu::record::{bind_group, scoped, submit, Dispatch};
use crate::gpu::GpuContext;
use crate::job::LrSchedule;
use wgpu::util::DeviceExt;

/// The bindings of `shaders/loss_reduce.wgsl` by number (see `matmul::BINDINGS`).
pub const BINDINGS: &[&str] = &["params", "values", "history", "state"];

/// WGSL member names of [`ReduceParams`] and their byte offsets here (checked by reflection).
pub const UNIFORM_FIELDS: &[(&str, usize)] = &[
    ("len", std::mem::offset_of!(ReduceParams, len)),
    ("cols", std::mem::offset_of!(ReduceParams, cols)),
    (
        "cols_padded",
        std::mem::offset_of!(ReduceParams, cols_padded),
    ),
    ("scale", std::mem::offset_of!(ReduceParams, scale)),
    ("coef", std::mem::offset_of!(ReduceParams, coef)),
    ("svalues", std::mem::offset_of!(ReduceParams, svalues)),
    ("shistory", std::mem::offset_of!(ReduceParams, shistory)),
    ("sstate", std::mem::offset_of!(ReduceParams, sstate)),
    ("sy", std::mem::offset_of!(ReduceParams, sy)),
    ("_pad0", std::mem::offset_of!(ReduceParams, _pad)),
    ("_pad1", std::mem::offset_of!(ReduceParams, _pad) + 4),
    ("_pad2", std::mem::offset_of!(ReduceParams, _pad) + 8),
];

/// Uniform block of `shaders/loss_reduce.wgsl`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct ReduceParams {
    pub(crate) len: u32,
    pub(crate) cols: u32,
    pub(crate) cols_padded: u32,
    pub(crate) scale: f32,
    /// The gradient's factor (`shaders/cross_entropy.wgsl`).
    pub(crate) coef: f32,
    /// A sweep's stacked models ([`Stack`]).
    pub(crate) svalues: u32,
    pub(crate) shistory: u32,
    pub(crate) sstate: u32,
    pub(crate) sy: u32,
    pub(crate) _pad: [u32; 3],
}

/// A sweep's models stacked in one reduction (workgroup z: model z): how many, and the elements
/// from one model's values (its logits, and cross-entropy's gradient) to the next's, its history
/// and its state, and from its y to the next's (vec4, or texel rows in the texels layout; 0: one
/// y for all). `Stack::ONE` for a lone run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stack {
    pub(crate) models: usize,
    pub(crate) values: u32,
    pub(crate) history: u32,
    pub(crate) state: u32,
    pub(crate) y: u32,
}

impl Stack {
    pub(crate) const ONE: Stack = Stack {
        models: 1,
        values: 0,
        history: 0,
        state: 0,
        y: 0,
    };
}

impl ReduceParams {
    /// The block of a reduction over `[rows, cols]` values times `scale`, the gradient's factor
    /// `coef` (`cross_entropy` only), for the models of `stack`.
    pub(crate) fn new((rows, cols): (usize, usize), scale: f32, coef: f32, stack: Stack) -> Self {
        ReduceParams {
            len: (rows * cols) as u32,
            cols: cols as u32,
            cols_padded: pad4(cols) as u32,
            scale,
            coef,
            svalues: stack.values,
            shistory: stack.history,
            sstate: stack.state,
            sy: stack.y,
            _pad: [0; 3],
        }
    }
}

/// The GPU's `state` at the start: epoch index 0, optimizer step 0, beta1^0 = beta2^0 = 1.
pub(crate) const INITIAL_COUNTERS: [u32; 4] = [0, 0, 0x3f80_0000, 0x3f80_0000];

/// Byte offset of the shared layer's own step counters in the `state` buffer (`SHARED` in
/// `shaders/loss_reduce.wgsl`): a multiple of every adapter's
/// `min_storage_buffer_offset_alignment`, which WebGPU caps at 256.
pub(crate) const SHARED_COUNTERS_OFFSET: u64 = 256;

/// One slot of step counters as the updates bind it (`COUNTER_SLOT_BYTES`): the counters
/// `[_, t, bits of beta1^t, bits of beta2^t]`, the run's step (word 4) and the learning rate of
/// its last step (word 5, what the updates read), beta1 and beta2 (words 6 and 7, what the powers
/// advance by), the schedule's words from word 8 (see `shaders/loss_reduce.wgsl`), and what the
/// optimizer's step reads from word 16 (`optimizer::step_words`).
pub(crate) fn counter_slot(
    c: &crate::state::OptCounters,
    run_step: u32,
    (schedule, base_lr): (&LrSchedule, f32),
    o: &crate::job::Optimizer,
) -> [u32; 32] {
    let mut w = [0u32; 32];
    w[..4].copy_from_slice(&[0, c.t, c.beta1_t.to_bits(), c.beta2_t.to_bits()]);
    w[4] = run_step;
    w[5] = schedule.lr(base_lr, run_step.saturating_sub(1)).to_bits();
    w[6] = o.beta1.to_bits();
    w[7] = o.beta2.to_bits();
    w[8..14].copy_from_slice(&schedule.words(base_lr));
    w[16..20].copy_from_slice(&step_words(hyper_of(o), o.weight_decay));
    w
}

/// The whole `state` buffer for the counters `c` of every layer and `shared` of a dynamic-depth
/// net's shared layer (at [`SHARED_COUNTERS_OFFSET`]), at the run's step `c.t`, of `job`.
pub(crate) fn state_words(
    c: &crate::state::OptCounters,
    shared: &crate::state::OptCounters,
    schedule: (&LrSchedule, f32),
    o: &crate::job::Optimizer,
) -> Vec<u32> {
    let at = SHARED_COUNTERS_OFFSET as usize / 4;
    let mut v = vec![0u32; COUNTER_MODEL_WORDS as usize];
    v[..32].copy_from_slice(&counter_slot(c, c.t, schedule, o));
    v[at..].copy_from_slice(&counter_slot(shared, c.t, schedule, o));
    v
}

/// The whole `state` buffer at the start of a job: [`INITIAL_COUNTERS`] in both slots, step 0,
/// the job's schedule and base rate.
pub(crate) fn initial_state(job: &crate::job::Job) -> Vec<u32> {
    let start = crate::state::OptCounters::default();
    let words = state_words(&start, &start, (&job.lr_schedule, job.lr), &job.optimizer);
    debug_assert_eq!(words[..4], INITIAL_COUNTERS[..]);
    words
}

/// `loss_reduce` of `[rows, cols]` values times `scale`; with `advance = Some((beta1, beta2))` it
/// also advances the optimizer's step counters, and with `advance_shared` the shared layer's.
/// `loss_reduce` of one band's `[rows, cols]` values into `sums[slot[0]]` (the slot buffer holds
/// the band's index), unscaled, advancing nothing: the partial sums of a batch whose losses span
/// several buffers, added up by a last [`loss_reduce_dispatch`] over `sums`.
pub(crate) fn loss_partial_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    values: &wgpu::Buffer,
    sums: &wgpu::Buffer,
    slot: &wgpu::Buffer,
) -> Dispatch {
    let no = (false, false);
    let mut d = loss_reduce_dispatch(ctx, (rows, cols), 1.0, no, Stack::ONE, values, sums, slot);
    d.label = format!("loss_reduce {rows}x{cols} (a band)");
    d.pipeline = ctx.kernels.loss_partial.clone();
    d
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn loss_reduce_dispatch(
    ctx: &GpuContext,
    (rows, cols): (usize, usize),
    scale: f32,
    (advance, advance_shared): (bool, bool),
    stack: Stack,
    values: &wgpu::Buffer,
    history: &wgpu::Buffer,
    state: &wgpu::Buffer,
) -> Dispatch {
    debug_assert!(advance || !advance_shared);
    let params = uniform(
        ctx,
        "loss_reduce params",
        &ReduceParams::new((rows, cols), scale, 0.0, stack),
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
        pipeline: kn.loss_reduce(advance, advance_shared),
        bind_group,
        groups: [1, 1, stack.models as u32],
    }
}

/// Step counters from the words `[_, t, bits of beta1^t, bits of beta2^t]`.
pub(crate) fn counters_of(words: &[f32]) -> crate::state::OptCounters {
    crate::state::OptCounters {
        t: words[1].to_bits(),
        beta1_t: words[2],
        beta2_t: words[3],
    }
}

/// Run `loss_reduce` once on a `[rows, cols]` matrix (row-major, unpadded; it is padded with NaN,
/// which the kernel must skip). Returns what it wrote to the history and the epoch index it left.
pub async fn run_loss_reduce(
    ctx: &GpuContext,
    values: &[f32],
    (rows, cols): (usize, usize),
) -> Result<(f32, u32)> {
    scoped(ctx, "running loss_reduce", async {
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
        let no = (false, false);
        let d = loss_reduce_dispatch(ctx, (rows, cols), 1.0, no, Stack::ONE, &vb, &hb, &sb);
        submit(ctx, &[&[d]]);
        let h = ctx.read_f32(&hb, 16).await?;
        let s = ctx.read_f32(&sb, 4).await?;
        Ok((h[2], s[0].to_bits()))
    })
    .await
}

/// The bindings `shaders/loss_reduce.wgsl` declares (and `cross_entropy.wgsl` after it).
pub(crate) fn entries() -> [wgpu::BindGroupLayoutEntry; 4] {
    [
        super::entry(0, super::UNIFORM),
        super::entry(1, super::READ),
        super::entry(2, super::RW),
        super::entry(3, super::RW),
    ]
}

/// The counting variants of a reduction's `entry` by [ADVANCE][ADVANCE_SHARED], and the partial
/// one (without COUNT).
pub(crate) fn pipelines(
    device: &wgpu::Device,
    family: &super::KernelModule,
    entry: &str,
) -> ([[wgpu::ComputePipeline; 2]; 2], wgpu::ComputePipeline) {
    let partial = family.pipeline(device, entry, &[("COUNT", 0.0)]);
    let counting = [false, true].map(|advance| {
        [false, true].map(|shared| {
            let constants = [
                ("ADVANCE", advance as u8 as f64),
                ("ADVANCE_SHARED", shared as u8 as f64),
            ];
            family.pipeline(device, entry, &constants)
        })
    });
    (counting, partial)
}

/// Run `loss_reduce` once with ADVANCE (a training step's reduction) from the counters `c`
/// under `schedule` at the base rate `lr`, with `betas`: the state words it leaves in the first
/// slot (`[epoch, t, bits of beta1^t, bits of beta2^t, the run's step, bits of the step's rate]`).
pub async fn run_advance(
    ctx: &GpuContext,
    c: crate::state::OptCounters,
    (beta1, beta2): (f32, f32),
    (schedule, lr): (&LrSchedule, f32),
) -> Result<[u32; 6]> {
    scoped(ctx, "running loss_reduce", async {
        let vb = storage(ctx, "values", 16, Some(&[0.0; 16]))?;
        let hb = storage(ctx, "history", 4, Some(&[f32::NAN; 4]))?;
        let o = crate::job::Optimizer {
            beta1,
            beta2,
            ..Default::default()
        };
        let words = state_words(&c, &c, (schedule, lr), &o);
        let sb = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("state"),
                contents: bytemuck::cast_slice(&words),
                usage: STORAGE,
            });
        let adv = (true, false);
        let d = loss_reduce_dispatch(ctx, (4, 4), 1.0, adv, Stack::ONE, &vb, &hb, &sb);
        submit(ctx, &[&[d]]);
        let s = ctx.read_f32(&sb, 24).await?;
        let mut out = [0u32; 6];
        for (o, v) in out.iter_mut().zip(s) {
            *o = v.to_bits();
        }
        Ok(out)
    })
    .await
}
