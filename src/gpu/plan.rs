//! The step plan: every resource the recorded steps bind ([`Net`]), and the dispatches of one
//! step in order (forward, `loss_reduce`, backward; see the module description of `gpu`).

use super::kernels::bias_update::{bias_update_dispatch, BiasStep};
use super::kernels::cross_entropy::{cross_entropy_dispatch, CrossEntropyBind};
use super::kernels::loss_reduce::{
    loss_partial_dispatch, loss_reduce_dispatch, SHARED_COUNTERS_OFFSET,
};
use super::kernels::matmul::{matmul_dispatch, MatmulBind, Windows};
use super::kernels::optimizer::OptBind;
use super::memory::GpuMatrix;
use super::net::Net;
use super::record::Dispatch;
use super::{Acc, Act, GpuContext, MatmulKey, Mode, Opt, Update};
use crate::error::Result;
use crate::job::Activation;

/// Which recorded epoch: training or gradients only, how many times the shared layer of a
/// dynamic-depth net runs, and which texture of each weight pair holds the current weights
/// (`parity` for every weight but the shared one, which flips only in epochs that use it; both
/// always 0 in the buffer layout, whose weights are updated in place).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PlanKey {
    pub(crate) update: bool,
    /// Rows of the step's batch (fewer than `job.batch` for a short last batch).
    pub(crate) rows: usize,
    pub(crate) uses: usize,
    pub(crate) parity: usize,
    pub(crate) shared_parity: usize,
}

impl Net {
    /// One epoch's dispatches: forward, `loss_reduce`, backward (see the module's description),
    /// over the products `job.applications(key.uses)`.
    pub(crate) fn plan<'a>(&'a self, ctx: &GpuContext, key: PlanKey) -> Result<Vec<Dispatch>> {
        let job = &self.job;
        // A short last batch runs over its own rows only: the products, the loss and the bias
        // sums cover `pad4(rows)` rows, which the gather filled (zeros below `rows`).
        let (b, d) = (key.rows, &job.layers);
        let depth = job.depth();
        let product_layers = job.applications(key.uses);
        let n = product_layers.len();
        let shared = job.shared_layer();
        let opt = Opt::of(&job.optimizer);
        let o = &job.optimizer;
        let parity = |l: usize| {
            if shared == Some(l) {
                key.shared_parity
            } else {
                key.parity
            }
        };
        let w = |l: usize| &self.weights[l][parity(l)];
        let bias = |l: usize| self.biases.get(l);
        let activated = job.activation != Activation::None;
        let gelu = job.activation.needs_input();
        let (hidden_mode, input_grad_mode) = if activated {
            (Mode::Activate, Mode::ActivationGrad)
        } else {
            (Mode::Store, Mode::Store)
        };
        let update = Update::of(job);
        let grad = |j: usize| {
            if j + 1 == n {
                self.grads.last().expect("the output gradient")
            } else {
                &self.grads[j]
            }
        };
        // One matmul dispatch of `op(a)[m,k]·op(b)[k,n]`, its block size chosen for the shape.
        let mm =
            |(trans_a, trans_b, mode): (bool, bool, Mode), acc, dims, scalar, bind: MatmulBind| {
                let key = MatmulKey {
                    trans_a,
                    trans_b,
                    mode,
                    block: ctx.block_for(self.layout, (trans_a, trans_b), dims),
                    bias: bind.bias.is_some(),
                    opt: if mode == Mode::Update { opt } else { Opt::Sgd },
                    update: match mode {
                        Mode::Update => update,
                        _ => Update::default(),
                    },
                    acc,
                    act: match mode {
                        Mode::Activate | Mode::ActivationGrad => Act::of(job.activation),
                        _ => Act::default(),
                    },
                    layout: self.layout,
                };
                matmul_dispatch(ctx, key, dims, scalar, bind)
            };
        let bind = |a, b, c, aux, aux_out| MatmulBind {
            windows: Windows::default(),
            a,
            b,
            c,
            aux,
            aux_out,
            bias: None,
            opt: None,
        };
        // The optimizer's bindings for tensor `i` (weights, then biases) of layer `l`.
        let opt_of = |i: usize, l: usize| OptBind {
            state: self.opt_state[i].as_ref(),
            counters: (
                &self.state,
                if shared == Some(l) {
                    SHARED_COUNTERS_OFFSET
                } else {
                    0
                },
            ),
            hyper: match opt {
                Opt::Adam | Opt::AdamW => [o.beta1, o.beta2, o.eps],
                _ => [o.momentum, 0.0, 0.0],
            },
        };
        let mut plan = Vec::new();
        if let Some(data) = &self.data {
            plan.push(self.gather_dispatch(ctx, data, b));
        }
        // Bands of the batch's rows (one unless its matrices exceed one storage binding), and the
        // real rows of each.
        let bands = self.bands(b);
        let banded = bands.len() > 1;
        let real = |(r0, r1): (usize, usize)| b.min(r1) - r0;
        let rows_of = |band| Windows {
            rows: banded.then_some(band),
            depth: None,
        };
        for (j, &l) in product_layers.iter().enumerate() {
            let input = if j == 0 { &self.x } else { &self.acts[j - 1] };
            let none = Acc::default();
            for (bi, &band) in bands.iter().enumerate() {
                let dims = (real(band), d[l + 1], d[l]);
                plan.extend(if j + 1 < n {
                    // a_j = act(a_{j-1} · w_l + b_l) (GELU keeps its input in pre[j])
                    let pre = self.pre.get(j).map(|bands| &bands[bi]);
                    let bd = bind(input, w(l), &self.acts[j], None, pre);
                    let bd = MatmulBind {
                        bias: bias(l),
                        windows: rows_of(band),
                        ..bd
                    };
                    mm((false, false, hidden_mode), none, dims, 0.0, bd)?
                } else {
                    // g_out = dLoss/d(pred) of pred = a_{j-1} · w_l + b_l, per-element losses
                    // into loss_terms; for cross-entropy, the logits pred into loss_terms (the
                    // gradient comes with the loss, from cross_entropy)
                    let loss_terms = Some(&self.loss_terms[bi]);
                    let mode = Mode::for_loss(job.loss);
                    let y = (mode != Mode::Logits).then_some(&self.y);
                    let bd = bind(input, w(l), grad(j), y, loss_terms);
                    let bd = MatmulBind {
                        bias: bias(l),
                        windows: rows_of(band),
                        ..bd
                    };
                    let coef = job.loss.grad_coef(b, d[depth]);
                    mm((false, false, mode), none, dims, coef, bd)?
                });
            }
        }
        // Training advances the step counters (Adam's powers, and the run's step that a
        // learning-rate schedule reads).
        let advance = key.update.then_some((o.beta1, o.beta2));
        let advance_shared = advance.is_some() && shared.is_some() && key.uses > 0;
        let scale = job.loss.scale(b, d[depth]);
        let cross_entropy = job.loss.is_classification();
        let out_grad = self.grads.last().expect("the output gradient");
        // cross_entropy over the logits of one band (all of them, unbanded) into `history`
        // (a band's slot of `band_sums`, without advancing anything, when `adv` is None).
        let ce = |bi: usize, band, scale, adv, history, state| {
            let win = |m: &'a GpuMatrix| match banded {
                true => m.window(band),
                false => m.binding(),
            };
            let bind = CrossEntropyBind {
                logits: &self.loss_terms[bi].bufs[0],
                y: win(&self.y),
                grad: win(out_grad),
                history,
                state,
            };
            let dims = (real(band), d[depth]);
            let coef = job.loss.grad_coef(b, d[depth]);
            cross_entropy_dispatch(ctx, self.layout, dims, (scale, coef), adv, bind)
        };
        match (&self.band_sums, banded) {
            (Some(sums), true) => {
                for (bi, &band) in bands.iter().enumerate() {
                    let values = &self.loss_terms[bi].bufs[0];
                    let dims = (real(band), d[depth]);
                    let slot = &self.band_slots[bi];
                    plan.push(match cross_entropy {
                        true => ce(bi, band, 1.0, None, sums, slot),
                        false => loss_partial_dispatch(ctx, dims, values, sums, slot),
                    });
                }
                let adv = (advance, advance_shared);
                let (history, state) = (&self.history, &self.state);
                let dims = (1, bands.len());
                plan.push(loss_reduce_dispatch(
                    ctx, dims, scale, adv, sums, history, state,
                ));
            }
            _ if cross_entropy => plan.push(ce(
                0,
                bands[0],
                scale,
                Some((advance, advance_shared)),
                &self.history,
                &self.state,
            )),
            _ => plan.push(loss_reduce_dispatch(
                ctx,
                (b, d[depth]),
                scale,
                (advance, advance_shared),
                &self.loss_terms[0].bufs[0],
                &self.history,
                &self.state,
            )),
        }
        for j in (0..n).rev() {
            let l = product_layers[j];
            if j > 0 {
                // g_{j-1} = (g_j · w_lᵀ) through the activation below (from its output
                // a_{j-1}, or for GELU its input pre[j-1]), from the weights before any step
                let aux = (activated && !gelu).then_some(&self.acts[j - 1]);
                for (bi, &band) in bands.iter().enumerate() {
                    let dims = (real(band), d[l], d[l + 1]);
                    let pre = self.pre.get(j - 1).map(|bands| &bands[bi]);
                    let bd = MatmulBind {
                        windows: rows_of(band),
                        ..bind(grad(j), w(l), &self.grads[j - 1], aux, pre)
                    };
                    let mode = (false, true, input_grad_mode);
                    plan.extend(mm(mode, Acc::default(), dims, 0.0, bd)?);
                }
            }
            // A shared weight's gradient is summed over its uses, from the last down; its step
            // comes with the first use (the last one the backward pass reaches). Over bands of
            // the batch, each use's gradient is summed band by band the same way.
            let use_acc = Acc {
                input: j + 1 < n && product_layers[j + 1] == l,
                output: j > 0 && product_layers[j - 1] == l,
            };
            let (sum_w, sum_b) = match shared == Some(l) {
                true => (self.sum_w.as_ref(), self.sum_b.as_ref()),
                false => (self.band_sum_w[l].as_ref(), self.band_sum_b[l].as_ref()),
            };
            let input = if j == 0 { &self.x } else { &self.acts[j - 1] };
            for (bi, &band) in bands.iter().enumerate() {
                let acc = Acc {
                    input: use_acc.input || bi > 0,
                    output: use_acc.output || bi + 1 < bands.len(),
                };
                let summing = acc != Acc::default();
                let depth_of = Windows {
                    rows: None,
                    depth: banded.then_some(band),
                };
                // w_l' = step(w_l, a_{j-1}ᵀ · g_j [+ sum]) (or dw_l = ..., or sum = ...)
                let dims = (d[l], d[l + 1], real(band));
                let sum_w = sum_w.filter(|_| summing);
                plan.extend(if key.update && !acc.output {
                    let old = w(l);
                    // Pairs: read one texture, write the other; else step in place.
                    let (new, aux) = match self.layout.pairs() {
                        true => (&self.weights[l][1 - parity(l)], Some(old)),
                        false => (old, None),
                    };
                    let bd = MatmulBind {
                        opt: Some(opt_of(l, l)),
                        windows: depth_of,
                        ..bind(input, grad(j), new, aux, sum_w)
                    };
                    mm((true, false, Mode::Update), acc, dims, job.lr, bd)?
                } else {
                    // dws[l] is not written while summing (acc.output).
                    let bd = MatmulBind {
                        windows: depth_of,
                        ..bind(input, grad(j), &self.dws[l], None, sum_w)
                    };
                    mm((true, false, Mode::Store), acc, dims, 0.0, bd)?
                });
                // b_l' = step(b_l, Σ_rows g_j [+ sum]) (or db_l = ..., or sum = ...)
                if let Some(b_l) = bias(l) {
                    let step = BiasStep {
                        lr: job.lr,
                        store: !key.update,
                        kind: opt,
                        update,
                        opt: Some(opt_of(depth + l, l)),
                        acc,
                        sum: sum_b.filter(|_| summing),
                        band: banded.then_some(band),
                    };
                    let target = if key.update { b_l } else { &self.dbs[l] };
                    let dims = (real(band), d[l + 1]);
                    plan.push(bias_update_dispatch(ctx, dims, step, grad(j), target));
                }
            }
        }
        Ok(plan)
    }
}
