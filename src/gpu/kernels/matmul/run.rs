//! One matmul variant run on its own, outside training: on given inputs with its output poisoned
//! (the kernel checks of `verify` and the tests) and timed on resident matrices (`tune`, `bench`).

use super::{matmul_dispatch, MatmulBind, MatmulKey, Mode, Windows};
use crate::error::Result;
use crate::gpu::kernels::optimizer::{read_moments, OptBind, StepState};
use crate::gpu::layout::{from_padded, pad4, padding_is_zero, to_padded};
use crate::gpu::memory::{
    matrix, padded_matrix, stacked_matrix, storage, write_texels, Banded, Storage,
};
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
    /// The lr (`Mode::Update`: written to the step counters it reads) or the loss gradient's
    /// factor (error modes).
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
    dims: (usize, usize, usize),
    inputs: MatmulInputs<'_>,
) -> Result<MatmulOutput> {
    let mut out = run_matmul_models(ctx, key, dims, &[(a, b, inputs)]).await?;
    Ok(out.remove(0))
}

/// One model's A, B (row-major as stored) and the rest, for [`run_matmul_models`].
pub type ModelInputs<'a> = (&'a [f32], &'a [f32], MatmulInputs<'a>);

/// Run one matmul variant once for every model of `models`, stacked as a sweep's models are in
/// `key`'s layout (one dispatch, model z of its grid; one model: [`run_matmul`]): each model's
/// output, as [`run_matmul`] describes it.
pub async fn run_matmul_models(
    ctx: &GpuContext,
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    models: &[ModelInputs<'_>],
) -> Result<Vec<MatmulOutput>> {
    let ((a_rows, a_cols), (b_rows, b_cols)) = key.stored_shapes((m, n, k));
    let update = key.mode == Mode::Update;
    let layout = key.layout;
    let count = models.len();
    let stacked = count > 1;
    // With weight pairs (texels) the weights go to AUX as in training while C, the other texture
    // of the pair, is poisoned with NaN; in the buffer layout C holds them, stepped in place, its
    // padding zero as in training.
    let pairs = update && layout.pairs();
    let c_padding = if update && !pairs { 0.0 } else { f32::NAN };
    let padded = |rows, cols, v: &[f32], fill| to_padded(rows, cols, v, fill);
    scoped(ctx, "running matmul", async {
        // Each model's padded matrix, one after the other where stacked.
        let upload = |label: &str, (rows, cols), per_model: Vec<Vec<f32>>| match stacked {
            false => padded_matrix(ctx, layout, label, rows, cols, Some(&per_model[0])),
            true => {
                let mm = stacked_matrix(ctx, layout, label, (rows, cols), count)?;
                write_models(ctx, &mm.storage, &per_model);
                Ok(mm)
            }
        };
        let each = |f: &dyn Fn(&ModelInputs<'_>) -> Vec<f32>| models.iter().map(f).collect();
        let ab = upload(
            "a",
            (a_rows, a_cols),
            each(&|i| padded(a_rows, a_cols, i.0, 0.0)),
        )?;
        let bb = upload(
            "b",
            (b_rows, b_cols),
            each(&|i| padded(b_rows, b_cols, i.1, 0.0)),
        )?;
        let cb = upload(
            "c",
            (m, n),
            each(&|i| match pairs {
                true => vec![f32::NAN; pad4(m) * pad4(n)],
                false => padded(m, n, i.2.c_init, c_padding),
            }),
        )?;
        let aux: Vec<Option<&[f32]>> = (models.iter())
            .map(|i| if pairs { Some(i.2.c_init) } else { i.2.aux })
            .collect();
        let auxb = match aux.iter().all(|a| a.is_some()) && !aux.is_empty() {
            true => Some(upload(
                "aux",
                (m, n),
                aux.iter()
                    .map(|a| padded(m, n, a.unwrap_or(&[]), 0.0))
                    .collect(),
            )?),
            false => None,
        };
        let out_init: Vec<Vec<f32>> = each(&|i| match i.2.aux_out {
            Some(s) => padded(m, n, s, 0.0),
            None => vec![f32::NAN; pad4(m) * pad4(n)],
        });
        let outb = Banded::stacked(ctx, "aux_out", (m, n), 1, count)?;
        write_models(ctx, &Storage::Buffer(outb.bufs[0].clone()), &out_init);
        let reads_out = key.binds_aux_out();
        let biasb = match models.iter().all(|i| i.2.bias.is_some()) {
            true => {
                let all: Vec<f32> = (models.iter())
                    .flat_map(|i| padded(1, n, i.2.bias.unwrap_or(&[]), 0.0)[..pad4(n)].to_vec())
                    .collect();
                Some(storage(ctx, "bias", all.len(), Some(&all))?)
            }
            false => None,
        };
        // Every update reads its rate and hyperparameters from the counters.
        let plain = StepState::default();
        let steps: Vec<(&StepState, f32)> = (models.iter())
            .map(|i| (i.2.step.unwrap_or(&plain), i.2.scalar))
            .collect();
        let uploaded = update
            .then(|| StepState::upload_models(ctx, (m, n), &steps, key.update))
            .transpose()?;
        let opt = uploaded.as_ref().map(|(state, counters)| OptBind {
            state: state.as_ref(),
            counters: (counters, 0),
            stacked,
        });
        let d = matmul_dispatch(
            ctx,
            key,
            (m, n, k),
            models.first().map_or(0.0, |i| i.2.scalar),
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
        let len = pad4(m) * pad4(n);
        let c_all = cb.read_padded(ctx).await?;
        let out_all = match reads_out {
            true => outb.read(ctx).await?,
            false => Vec::new(),
        };
        let moments = match &uploaded {
            Some((state, _)) => read_moments(ctx, state.as_ref(), (m, n), count).await?,
            None => vec![Vec::new(); count],
        };
        // C is not written while summing, nor for the logits: its NaN poison stays, padding
        // included.
        let untouched = key.acc.output || key.mode == Mode::Logits;
        let mut outputs = Vec::with_capacity(count);
        for (j, moments) in moments.into_iter().enumerate() {
            let c = &c_all[j * len..][..len];
            let mut padding_zero = untouched || padding_is_zero(m, n, c);
            let aux_out = if reads_out {
                let o = &out_all[j * len..][..len];
                padding_zero &= padding_is_zero(m, n, o);
                from_padded(m, n, o)
            } else {
                Vec::new()
            };
            outputs.push(MatmulOutput {
                c: from_padded(m, n, c),
                aux_out,
                moments,
                padding_zero,
            });
        }
        Ok(outputs)
    })
    .await
}

/// Write each model's padded matrix into its place in a stacked buffer.
fn write_models(ctx: &GpuContext, storage: &Storage, per_model: &[Vec<f32>]) {
    match storage {
        Storage::Buffer(buf) => {
            for (j, p) in per_model.iter().enumerate() {
                let at = (j * p.len() * 4) as u64;
                ctx.queue.write_buffer(buf, at, bytemuck::cast_slice(p));
            }
        }
        // The models one below the other: their padded matrices one after the other.
        Storage::Texture { texture, .. } => {
            let all: Vec<f32> = per_model.concat();
            write_texels(ctx, texture, &all, texture.size());
        }
    }
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
