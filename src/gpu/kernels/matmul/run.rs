//! One matmul variant run on its own, outside training: on given inputs with its output poisoned
//! (the kernel checks of `verify` and the tests) and timed on resident matrices (`tune`, `bench`).

use super::{matmul_dispatch, MatmulBind, MatmulKey, Mode, Windows};
use crate::error::Result;
use crate::gpu::kernels::optimizer::{read_moments, OptBind, StepState};
use crate::gpu::layout::{from_padded, pad4, padding_is_zero, to_padded};
use crate::gpu::memory::{matrix, padded_matrix, storage, vector, Banded};
use crate::gpu::record::{scoped, submit, time_plan};
use crate::gpu::GpuContext;

/// What [`run_matmul`] produced.
pub struct MatmulOutput {
    /// C, `[m, n]` row-major.
    pub c: Vec<f32>,
    /// AUX_OUT for the error modes, the logits, GELU's kept input and for summing a gradient
    /// (`[m, n]`, NaN where unwritten), empty otherwise.
    pub aux_out: Vec<f32>,
    /// The optimizer's moments after an update (`[m, n]` each; empty without a step state).
    pub moments: Vec<Vec<f32>>,
    /// Whether the padding of C (and of AUX_OUT) holds exact zeros afterwards, as the next kernel
    /// relies on. It was poisoned with NaN before.
    pub padding_zero: bool,
}

/// The inputs of [`run_matmul`] besides A and B.
#[derive(Clone, Copy)]
pub struct MatmulInputs<'a> {
    /// The lr (`Mode::Update`) or the loss gradient's factor (error modes).
    pub scalar: f32,
    /// C's content before the kernel (poison it to catch unwritten elements; for
    /// `Mode::Update`, the weights before the step: with pairs (texels) they go to AUX as in
    /// training while C, the other texture of the pair, is poisoned with NaN; in the buffer layout
    /// C holds them and is stepped in place, its padding zero as in training).
    pub c_init: &'a [f32],
    /// The AUX input where the mode needs it (y, the activation's output).
    pub aux: Option<&'a [f32]>,
    pub bias: Option<&'a [f32]>,
    /// AUX_OUT before the kernel: the gradient summed so far for `key.acc.input`, GELU's kept
    /// input for its backward pass (`[m, n]`; NaN-poisoned without it).
    pub aux_out: Option<&'a [f32]>,
    /// The optimizer's state and counters for `Mode::Update` with `key.opt` other than plain SGD,
    /// or a scheduled rate.
    pub step: Option<&'a StepState>,
}

impl<'a> MatmulInputs<'a> {
    /// Nothing but C's content before the kernel.
    pub fn new(c_init: &'a [f32]) -> Self {
        MatmulInputs {
            scalar: 0.0,
            c_init,
            aux: None,
            bias: None,
            aux_out: None,
            step: None,
        }
    }
}

/// Run one matmul variant on its own, for kernel checks: `a`, `b` row-major as stored (see the
/// shader), the rest in `inputs`.
pub async fn run_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
    inputs: MatmulInputs<'_>,
) -> Result<MatmulOutput> {
    let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
    let update = key.mode == Mode::Update;
    let (c_init, aux) = if update && key.layout.pairs() {
        (vec![f32::NAN; m * n], Some(inputs.c_init))
    } else {
        (inputs.c_init.to_vec(), inputs.aux)
    };
    let c_padding = if update && !key.layout.pairs() {
        0.0
    } else {
        f32::NAN
    };
    let layout = key.layout;
    scoped(ctx, "running matmul", async {
        let ab = matrix(ctx, layout, "a", a_rows, a_cols, Some(a))?;
        let bb = matrix(ctx, layout, "b", b_rows, b_cols, Some(b))?;
        let c_padded = to_padded(m, n, &c_init, c_padding);
        let cb = padded_matrix(ctx, layout, "c", m, n, Some(&c_padded))?;
        let auxb = (aux.map(|v| matrix(ctx, layout, "aux", m, n, Some(v)))).transpose()?;
        let nan = vec![f32::NAN; pad4(m) * pad4(n)];
        let out_init = inputs
            .aux_out
            .map_or(nan.clone(), |s| to_padded(m, n, s, 0.0));
        let outb = storage(ctx, "aux_out", nan.len(), Some(&out_init))?;
        let outb = Banded::whole(outb, m, n);
        let reads_out = key.binds_aux_out();
        let biasb = (inputs.bias)
            .map(|v| vector(ctx, "bias", n, Some(v), 0.0))
            .transpose()?;
        let uploaded = (inputs.step)
            .filter(|_| update)
            .map(|s| s.upload(ctx, (m, n)))
            .transpose()?;
        let opt = uploaded.as_ref().map(|(state, counters)| OptBind {
            state: state.as_ref(),
            counters: (counters, 0),
            hyper: inputs.step.map_or([0.0; 3], |s| s.hyper),
        });
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            inputs.scalar,
            MatmulBind {
                windows: Windows::default(),
                a: &ab,
                b: &bb,
                c: &cb,
                aux: auxb.as_ref(),
                aux_out: reads_out.then_some(&outb),
                bias: biasb.as_ref(),
                opt,
            },
        )?;
        submit(ctx, &[&d]);
        let c = cb.read_padded(ctx).await?;
        // C is not written while summing, nor for the logits: its NaN poison stays, padding
        // included.
        let untouched = key.acc.output || key.mode == Mode::Logits;
        let mut padding_zero = untouched || padding_is_zero(m, n, &c);
        let aux_out = if reads_out {
            let o = outb.read(ctx).await?;
            padding_zero &= padding_is_zero(m, n, &o);
            from_padded(m, n, &o)
        } else {
            Vec::new()
        };
        let moments = match &uploaded {
            Some((state, _)) => read_moments(ctx, state.as_ref(), (m, n)).await?,
            None => Vec::new(),
        };
        Ok(MatmulOutput {
            c: from_padded(m, n, &c),
            aux_out,
            moments,
            padding_zero,
        })
    })
    .await
}

/// Time `reps` back-to-back dispatches of one matmul variant on resident matrices (zeros: the
/// kernel's speed does not depend on the values). Returns seconds per dispatch, from submit to
/// completion of all `reps`, after one warm-up dispatch.
pub async fn time_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    reps: usize,
) -> Result<f64> {
    scoped(ctx, "timing matmul", async {
        let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
        let layout = key.layout;
        let ab = matrix(ctx, layout, "a", a_rows, a_cols, None)?;
        let bb = matrix(ctx, layout, "b", b_rows, b_cols, None)?;
        let cb = matrix(ctx, layout, "c", m, n, None)?;
        let auxb = matrix(ctx, layout, "aux", m, n, None)?;
        let outb = storage(ctx, "aux_out", pad4(m) * pad4(n), None)?;
        let outb = Banded::whole(outb, m, n);
        let biasb = storage(ctx, "bias", pad4(n), None)?;
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            0.0,
            MatmulBind {
                windows: Windows::default(),
                a: &ab,
                b: &bb,
                c: &cb,
                aux: key.reads_aux().then_some(&auxb),
                aux_out: key.binds_aux_out().then_some(&outb),
                bias: key.bias.then_some(&biasb),
                opt: None,
            },
        )?;
        time_plan(ctx, &d, reps).await
    })
    .await
}
