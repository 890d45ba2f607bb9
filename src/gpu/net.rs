//! The resources of a run on the GPU ([`Net`]): every buffer and texture the recorded steps
//! bind, uploaded or allocated once, and how the batch is split in bands where its matrices exceed
//! one storage binding.

use super::kernels::loss_reduce::initial_state;
use super::layout::{pad4, Layout};
use super::memory::{
    self, banded_matrix, data_array, matrix, stacked_matrix, storage, vector, Banded, DataArray,
    GpuMatrix, BAND_ALIGN_ROWS, STORAGE,
};
use super::{GpuContext, Opt};
use crate::error::{Error, Result};
use crate::init::HostState;
use crate::job::Job;
use wgpu::util::DeviceExt;

/// A dataset resident on the GPU, its batches gathered by `shaders/gather.wgsl`.
pub(crate) struct Dataset {
    pub(crate) x: DataArray,
    pub(crate) y: DataArray,
    /// The rows of each step of the current chunk, `job.batch` entries per step (uploaded once
    /// per chunk); each model's after the previous one's where a net holds many.
    pub(crate) index: wgpu::Buffer,
    /// Entries of `index` per model.
    pub(crate) index_len: usize,
    /// Rows from one model's dataset to the next's in `x` and `y` (0: one dataset for all).
    pub(crate) model_rows: usize,
}

/// How many models one [`Net`] holds: 1 for a lone run; a sweep's models trained in the same
/// dispatches, each per-model buffer holding every model's copy one after the other (each
/// texture one below the other), bound whole, model z of every dispatch's grid.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stacking {
    pub(crate) models: usize,
    /// Rows from one model's resident dataset to the next's (0: one dataset for all).
    pub(crate) model_rows: usize,
    /// The most steps one submission may hold, below what the job alone allows (a sweep's
    /// submissions hold every model's steps).
    pub(crate) max_steps: usize,
    /// One x and one y for all the models (one batch, the same data): bound once, read by all.
    pub(crate) shared_batch: bool,
}

impl Stacking {
    pub(crate) const ONE: Stacking = Stacking {
        models: 1,
        model_rows: 0,
        max_steps: usize::MAX,
        shared_batch: false,
    };
}

/// The work one submission may hold, in FLOPs (about 20 GFLOP: no driver watchdog fires).
pub(crate) const SUBMISSION_FLOPS: f64 = 2e10;

/// Every resource the recorded epochs bind, uploaded or allocated once.
pub(crate) struct Net {
    pub(crate) job: Job,
    pub(crate) layout: Layout,
    /// Models stacked in every per-model resource (1: a lone run's; see [`Stacking`]): all but
    /// `job`'s data and weights are then zeros, for the caller to fill.
    pub(crate) models: usize,
    /// Words of `history` per model.
    pub(crate) history_len: usize,
    pub(crate) x: GpuMatrix,
    pub(crate) y: GpuMatrix,
    /// `weights[l][p]`: in the texels layout the two textures of weight matrix l, an epoch
    /// reading `[p]` writing its step to `[1 - p]`; in the buffer layout the one buffer, `[0]`,
    /// stepped in place.
    pub(crate) weights: Vec<Vec<GpuMatrix>>,
    /// The weight gradients, for `gradients()`.
    pub(crate) dws: Vec<GpuMatrix>,
    /// `biases[l]`: `pad4(d_{l+1})` f32, updated in place; empty without biases.
    pub(crate) biases: Vec<wgpu::Buffer>,
    pub(crate) dbs: Vec<wgpu::Buffer>,
    /// The optimizer's state: per weight, then per bias, one banded buffer holding as many copies
    /// (m, then v) as the step keeps; None for plain SGD.
    pub(crate) opt_state: Vec<Option<Banded>>,
    /// `acts[j]`: activation output of the j-th product of an epoch, for every product but the
    /// last (as many as the most uses of a shared layer need).
    pub(crate) acts: Vec<GpuMatrix>,
    /// `grads[j]`: gradient w.r.t. the j-th product's output, as `acts`; the last entry is the
    /// output layer's.
    pub(crate) grads: Vec<GpuMatrix>,
    /// `pre[j][band]`: the j-th product's pre-activation, for an activation whose backward pass
    /// needs its input (GELU), one buffer per band of batch rows; empty else.
    pub(crate) pre: Vec<Vec<Banded>>,
    /// Per-element losses of the output layer (its logits, for cross-entropy): one buffer per
    /// band of batch rows.
    pub(crate) loss_terms: Vec<Banded>,
    /// Padded batch rows per band where the batch's matrices exceed one storage binding (buffer
    /// layout; a multiple of `BAND_ALIGN_ROWS`), else `usize::MAX`: each product over the batch
    /// then runs once per band on windows of the matrices, the weight and bias gradients summed
    /// over the bands in order (the `Acc` chain of a shared layer), the loss summed from per-band
    /// partial sums.
    pub(crate) row_band: usize,
    /// Per band, a slot index (`[j, 0, 0, 0]`) for its partial loss sum in `band_sums`.
    pub(crate) band_slots: Vec<wgpu::Buffer>,
    pub(crate) band_sums: Option<wgpu::Buffer>,
    /// Per layer, the weight and bias gradients summed over the bands (None unbanded, and for a
    /// shared layer, which sums in `sum_w` and `sum_b`).
    pub(crate) band_sum_w: Vec<Option<Banded>>,
    pub(crate) band_sum_b: Vec<Option<wgpu::Buffer>>,
    /// A dynamic-depth net's shared weight and bias gradients, summed over its uses.
    pub(crate) sum_w: Option<Banded>,
    pub(crate) sum_b: Option<wgpu::Buffer>,
    /// The dataset resident on the GPU, for mini-batches (None: the dataset is one batch, in x
    /// and y).
    pub(crate) data: Option<Dataset>,
    /// Loss of each step of the current chunk.
    pub(crate) history: wgpu::Buffer,
    /// `[step index within the chunk, optimizer step t, bits of beta1^t, bits of beta2^t]`, and
    /// the shared layer's `[_, t, beta1^t, beta2^t]` at `SHARED_COUNTERS_OFFSET`.
    pub(crate) state: wgpu::Buffer,
}

impl Net {
    /// The bands of `pad4(rows)` padded batch rows (one, unbanded).
    pub(crate) fn bands(&self, rows: usize) -> Vec<(usize, usize)> {
        let padded = pad4(rows);
        (0..padded)
            .step_by(self.row_band.min(padded).max(1))
            .map(|r0| (r0, (r0 + self.row_band).min(padded)))
            .collect()
    }

    /// Upload or allocate every resource of `job` in `layout`: x and y (or the resident dataset
    /// and the batch rows), the weights (a pair each in the texels layout) and biases, their
    /// gradients and the optimizer's state, the activations and gradients of every product, the
    /// per-element losses, the bands' partial sums, the loss history and the step counters.
    /// Returns the net and the most steps one submission may hold.
    /// A resident dataset given in `shared` (x and y, uploaded by another net of the same data:
    /// the models of a sweep) is bound as it is, not uploaded again.
    ///
    /// With `stack.models` > 1 (unbanded, no shared layer), every per-model
    /// resource holds that many models' copies, zeros: the caller copies each model's data,
    /// weights and counters in (`GpuModels`); `shared` is then the stacked resident dataset.
    pub(crate) fn allocate(
        ctx: &GpuContext,
        job: &Job,
        host: &HostState,
        layout: Layout,
        shared: Option<&(DataArray, DataArray)>,
        stack: Stacking,
    ) -> Result<(Net, usize)> {
        let b = job.batch;
        let depth = job.depth();
        let d = &job.layers;
        let models = stack.models.max(1);
        let stacked = models > 1;
        // The dataset is x and y themselves when it is one batch; else it stays resident in
        // texture arrays and each step gathers its batch into x and y.
        let upload = !job.minibatched() && !stacked;
        let row_band = row_band(ctx, job, layout)?;
        let banded = row_band < pad4(b);
        if stacked && (banded || job.shared_layer().is_some()) {
            return Err(Error::Gpu(
                "models are stacked unbanded, without a shared layer".into(),
            ));
        }
        // The batch's matrices, bound in bands of rows where they exceed one binding; one per
        // model where stacked.
        let matrix =
            |ctx: &GpuContext, layout, label: &str, rows, cols, data| match (stacked, banded) {
                (true, _) => stacked_matrix(ctx, layout, label, (rows, cols), models),
                (_, true) => banded_matrix(ctx, layout, label, rows, cols, data),
                _ => matrix(ctx, layout, label, rows, cols, data),
            };
        // One batch of the same data for every model: one x and one y (filled by the caller).
        let data_matrix = |ctx: &GpuContext, layout, label: &str, rows, cols, data| match stacked
            && stack.shared_batch
        {
            true => memory::matrix(ctx, layout, label, rows, cols, None),
            false => matrix(ctx, layout, label, rows, cols, data),
        };
        let x = data_matrix(
            ctx,
            layout,
            &format!("x ({b}x{} f32)", d[0]),
            b,
            d[0],
            upload.then_some(&host.x.data[..]),
        )?;
        let y = data_matrix(
            ctx,
            layout,
            &format!("y ({b}x{} f32)", d[depth]),
            b,
            d[depth],
            upload.then_some(&host.y.data[..]),
        )?;
        // w1, w2, ... as uploaded (and in the texels layout the second texture of each pair), and
        // dw1, dw2, ... (the gradients, for `gradients()`).
        let per_weight = |name: &str, upload: bool| {
            host.weights
                .iter()
                .enumerate()
                .map(|(l, w)| {
                    let label = format!("{name}{} ({}x{} f32)", l + 1, w.rows, w.cols);
                    if stacked {
                        return stacked_matrix(ctx, layout, &label, (w.rows, w.cols), models);
                    }
                    let data = upload.then_some(&w.data[..]);
                    memory::matrix(ctx, layout, &label, w.rows, w.cols, data)
                })
                .collect::<Result<Vec<_>>>()
        };
        let mut weights: Vec<Vec<GpuMatrix>> = (per_weight("w", true)?.into_iter())
            .map(|w| vec![w])
            .collect();
        if layout.pairs() {
            for (pair, w) in weights.iter_mut().zip(per_weight("w", false)?) {
                pair.push(w);
            }
        }
        let dws = per_weight("dw", false)?;
        let per_bias = |name: &str, upload: bool| {
            host.biases
                .iter()
                .enumerate()
                .map(|(l, bias)| {
                    let label = format!("{name}{} ({} f32)", l + 1, bias.cols);
                    if stacked {
                        return storage(ctx, &label, models * pad4(bias.cols), None);
                    }
                    vector(
                        ctx,
                        &label,
                        bias.cols,
                        upload.then_some(&bias.data[..]),
                        0.0,
                    )
                })
                .collect::<Result<Vec<_>>>()
        };
        let biases = per_bias("b", true)?;
        let dbs = per_bias("db", false)?;
        // The optimizer's state: per weight, then per bias, one zeroed buffer (banded) with as
        // many copies as the step keeps (momentum: 1, Adam: 2), in the padded layout of what
        // they follow.
        let opt = Opt::of(&job.optimizer);
        let opt_state = (host.weights.iter().chain(&host.biases).enumerate())
            .map(|(i, m)| {
                let copies = opt.state_buffers();
                let label = format!("optimizer state of tensor {}", i + 1);
                (copies > 0)
                    .then(|| match stacked {
                        true => Banded::stacked(ctx, &label, (m.rows, m.cols), copies, models),
                        false => Banded::with_copies(ctx, &label, m.rows, m.cols, copies),
                    })
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        // One activation and one gradient per product but the last, for the most uses of a
        // shared layer, then the output gradient.
        let product_layers = job.applications(job.max_uses());
        let hidden = |name: &str| {
            (product_layers[..product_layers.len() - 1]
                .iter()
                .enumerate())
            .map(|(j, &l)| {
                let label = format!("{name}{} ({b}x{} f32)", j + 1, d[l + 1]);
                matrix(ctx, layout, &label, b, d[l + 1], None)
            })
            .collect::<Result<Vec<_>>>()
        };
        let acts = hidden("a")?;
        let mut grads = hidden("g")?;
        let label = format!("output gradient ({b}x{} f32)", d[depth]);
        grads.push(matrix(ctx, layout, &label, b, d[depth], None)?);
        // The per-element losses, one buffer per band of rows.
        let bands: Vec<(usize, usize)> = (0..pad4(b))
            .step_by(row_band.min(pad4(b)))
            .map(|r0| (r0, (r0 + row_band).min(pad4(b))))
            .collect();
        // One buffer of `cols` per band of rows, named `what`.
        let per_band = |what: &str, cols: usize| {
            (bands.iter().enumerate())
                .map(|(j, &(r0, r1))| {
                    let label = match banded {
                        true => format!("{what} (band {})", j + 1),
                        false => what.to_string(),
                    };
                    if stacked {
                        return Banded::stacked(ctx, &label, (r1 - r0, cols), 1, models);
                    }
                    let buf = storage(ctx, &label, (r1 - r0) * pad4(cols), None)?;
                    Ok(Banded::whole(buf, r1 - r0, cols))
                })
                .collect::<Result<Vec<_>>>()
        };
        let what = match job.loss.is_classification() {
            true => "logits",
            false => "per-element losses",
        };
        let loss_terms = per_band(what, d[depth])?;
        // GELU's inputs, for its backward pass.
        let pre = match job.activation.needs_input() {
            true => (product_layers[..product_layers.len() - 1]
                .iter()
                .enumerate())
            .map(|(j, &l)| per_band(&format!("z{} (GELU's input)", j + 1), d[l + 1]))
            .collect::<Result<Vec<_>>>()?,
            false => Vec::new(),
        };
        // With bands: each band's loss slot, the slots, and the gradient sums over the bands.
        let band_slots: Vec<wgpu::Buffer> = (0..if banded { bands.len() } else { 0 })
            .map(|j| {
                ctx.device
                    .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                        label: Some("band loss slot"),
                        contents: bytemuck::cast_slice(&[j as u32, 0, 0, 0]),
                        usage: STORAGE,
                    })
            })
            .collect();
        let band_sums = banded
            .then(|| storage(ctx, "band loss sums", pad4(bands.len()), None))
            .transpose()?;
        let own_sum = |l: usize| banded && job.shared_layer() != Some(l);
        let band_sum_w = (0..depth)
            .map(|l| {
                let label = format!("w{} gradient summed over the bands", l + 1);
                // Banded alike with the optimizer's state it is bound beside.
                let alike = opt.state_buffers();
                (own_sum(l))
                    .then(|| Banded::banded_as(ctx, &label, d[l], d[l + 1], 1, alike))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let band_sum_b = (0..depth)
            .map(|l| {
                let label = format!("b{} gradient summed over the bands", l + 1);
                (own_sum(l) && job.bias)
                    .then(|| vector(ctx, &label, d[l + 1], None, 0.0))
                    .transpose()
            })
            .collect::<Result<Vec<_>>>()?;
        let (sum_w, sum_b) = match job.shared_layer() {
            Some(s) => (
                Some(Banded::banded_as(
                    ctx,
                    "shared weight gradient sum",
                    d[s],
                    d[s + 1],
                    1,
                    opt.state_buffers(),
                )?),
                match job.bias {
                    true => Some(vector(
                        ctx,
                        "shared bias gradient sum",
                        d[s + 1],
                        None,
                        0.0,
                    )?),
                    false => None,
                },
            ),
            None => (None, None),
        };

        let flops = job.flops_with_uses(job.max_uses()).max(1.0);
        // Bound one submission's work (about 20 GFLOP) so no driver watchdog fires on big jobs,
        // and its row indices to 16 MiB.
        // The loss history (4 bytes a step) and the batch rows (4 a row) are single buffers.
        let l = &ctx.limits;
        let limit = l.max_storage_buffer_binding_size.min(l.max_buffer_size) as usize;
        let max_steps = ((SUBMISSION_FLOPS / flops) as usize)
            .clamp(1, 100_000)
            .min((1 << 22) / b)
            .min(limit / 4 / b)
            .min(stack.max_steps)
            .max(1);
        let rows = job.dataset_rows();
        let data = if job.minibatched() {
            let index = storage(ctx, "batch rows", models * max_steps * b, None)?;
            let (x, y) = match shared {
                Some(xy) => xy.clone(),
                None => (
                    data_array(
                        ctx,
                        layout,
                        &format!("dataset x ({rows}x{} f32)", d[0]),
                        rows,
                        d[0],
                        &host.x.data,
                    )?,
                    data_array(
                        ctx,
                        layout,
                        &format!("dataset y ({rows}x{} f32)", d[depth]),
                        rows,
                        d[depth],
                        &host.y.data,
                    )?,
                ),
            };
            Some(Dataset {
                x,
                y,
                index,
                index_len: max_steps * b,
                model_rows: stack.model_rows,
            })
        } else {
            None
        };
        // The warm-up below runs one step of each plan.
        let history_len = max_steps.max(2 * job.max_uses() + 2);
        let history = storage(ctx, "loss history", models * history_len, None)?;
        let state = ctx
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("epoch index and optimizer counters"),
                contents: bytemuck::cast_slice(&initial_state(job).repeat(models)),
                usage: STORAGE,
            });
        let net = Net {
            job: job.clone(),
            layout,
            models,
            history_len,
            x,
            y,
            weights,
            dws,
            biases,
            dbs,
            opt_state,
            acts,
            pre,
            grads,
            loss_terms,
            row_band,
            band_slots,
            band_sums,
            band_sum_w,
            band_sum_b,
            sum_w,
            sum_b,
            data,
            history,
            state,
        };
        Ok((net, max_steps))
    }
}

/// Padded batch rows per band: `usize::MAX` where the batch's matrices fit one storage binding
/// (always in the texels layout, whose textures have their own limits), else the most rows of the
/// widest that fit one, a multiple of [`BAND_ALIGN_ROWS`]. Mini-batches gathered on the GPU are
/// not banded: refused with the limit.
fn row_band(ctx: &GpuContext, job: &Job, layout: Layout) -> Result<usize> {
    let d = &job.layers;
    let product_layers = job.applications(job.max_uses());
    let widest = (product_layers.iter().map(|&l| d[l + 1]))
        .chain([d[0], d[job.depth()]])
        .max()
        .unwrap_or(1);
    let row_bytes = (pad4(widest) * 4) as u64;
    let limit = ctx.limits.max_storage_buffer_binding_size;
    if layout != Layout::Buffer || pad4(job.batch) as u64 * row_bytes <= limit {
        return Ok(usize::MAX);
    }
    let rows = ((limit / row_bytes) as usize / BAND_ALIGN_ROWS) * BAND_ALIGN_ROWS;
    if rows == 0 || job.minibatched() {
        let (buffer, needed) = match rows {
            0 => (
                format!("a band of {BAND_ALIGN_ROWS} batch rows of {widest} columns"),
                BAND_ALIGN_ROWS as u64 * row_bytes,
            ),
            _ => (
                format!(
                    "a mini-batch of {} rows gathered on the GPU (not split in bands)",
                    job.batch
                ),
                pad4(job.batch) as u64 * row_bytes,
            ),
        };
        return Err(Error::TooLarge {
            buffer,
            needed: memory::fmt_bytes(needed),
            limit: "max_storage_buffer_binding_size",
            allowed: memory::fmt_bytes(limit),
        });
    }
    log::info!(
        "the batch's matrices exceed one storage binding ({limit} bytes): {} bands of {rows} rows",
        pad4(job.batch).div_ceil(rows)
    );
    Ok(rows)
}
