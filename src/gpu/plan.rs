//! The step plan: the dispatches of one step in order over the resources of a [`Net`], written as
//! the CPU path's step is: [`Step::forward`], [`Step::loss`] (`loss_reduce` or `cross_entropy`),
//! [`Step::backward`] (see the module description of `gpu`).

use super::kernels::bias_update::{bias_update_dispatch, BiasStep};
use super::kernels::cross_entropy::{cross_entropy_dispatch, CrossEntropyBind};
use super::kernels::loss_reduce::{
    loss_partial_dispatch, loss_reduce_dispatch, Stack, SHARED_COUNTERS_OFFSET,
};
use super::kernels::matmul::{matmul_dispatch, MatmulBind, Windows};
use super::kernels::optimizer::OptBind;
use super::kernels::optimizer::COUNTER_MODEL_WORDS;
use super::memory::{Banded, GpuMatrix};
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
    /// One epoch's dispatches: forward, the loss (`loss_reduce`, or `cross_entropy`), backward
    /// (see the module's description), over the products `job.applications(key.uses)`.
    pub(crate) fn plan(&self, ctx: &GpuContext, key: PlanKey) -> Result<Vec<Dispatch>> {
        let step = Step::new(self, ctx, key);
        let mut plan = Vec::new();
        if let Some(data) = &self.data {
            plan.push(self.gather_dispatch(ctx, data, step.b));
        }
        step.forward(&mut plan)?;
        step.loss(&mut plan);
        step.backward(&mut plan)?;
        Ok(plan)
    }
}

/// One step's plan in the making: the net, the key and what follows from them, shared by the
/// forward pass, the loss and the backward pass.
struct Step<'a> {
    net: &'a Net,
    ctx: &'a GpuContext,
    key: PlanKey,
    /// Rows of the step's batch: a short last batch runs over its own rows only (the products,
    /// the loss and the bias sums cover `pad4(b)` rows, which the gather filled, zeros below `b`).
    b: usize,
    /// The layer of each product, in order (a shared layer's once per use).
    product_layers: Vec<usize>,
    shared: Option<usize>,
    opt: Opt,
    update: Update,
    /// Bands of the batch's rows (one unless its matrices exceed one storage binding).
    bands: Vec<(usize, usize)>,
    banded: bool,
}

impl<'a> Step<'a> {
    fn new(net: &'a Net, ctx: &'a GpuContext, key: PlanKey) -> Self {
        let job = &net.job;
        let bands = net.bands(key.rows);
        Step {
            net,
            ctx,
            key,
            b: key.rows,
            product_layers: job.applications(key.uses),
            shared: job.shared_layer(),
            opt: Opt::of(&job.optimizer),
            update: Update::of(job),
            banded: bands.len() > 1,
            bands,
        }
    }

    fn d(&self) -> &'a [usize] {
        &self.net.job.layers
    }

    fn n(&self) -> usize {
        self.product_layers.len()
    }

    /// The real rows of a band.
    fn real(&self, (r0, r1): (usize, usize)) -> usize {
        self.b.min(r1) - r0
    }

    fn rows_of(&self, band: (usize, usize)) -> Windows {
        Windows {
            rows: self.banded.then_some(band),
            depth: None,
        }
    }

    fn parity(&self, l: usize) -> usize {
        if self.shared == Some(l) {
            self.key.shared_parity
        } else {
            self.key.parity
        }
    }

    fn w(&self, l: usize) -> &'a GpuMatrix {
        &self.net.weights[l][self.parity(l)]
    }

    fn bias(&self, l: usize) -> Option<&'a wgpu::Buffer> {
        self.net.biases.get(l)
    }

    /// The gradient with respect to the j-th product's output.
    fn grad(&self, j: usize) -> &'a GpuMatrix {
        if j + 1 == self.n() {
            self.net.grads.last().expect("the output gradient")
        } else {
            &self.net.grads[j]
        }
    }

    fn activated(&self) -> bool {
        self.net.job.activation != Activation::None
    }

    /// One matmul dispatch of `op(a)[m,k]·op(b)[k,n]`, its block size chosen for the shape.
    fn mm(
        &self,
        (trans_a, trans_b, mode): (bool, bool, Mode),
        acc: Acc,
        dims: (usize, usize, usize),
        scalar: f32,
        bind: MatmulBind,
    ) -> Result<Vec<Dispatch>> {
        let key = MatmulKey {
            trans_a,
            trans_b,
            mode,
            block: self
                .ctx
                .block_for(self.net.layout, (trans_a, trans_b), dims),
            bias: bind.bias.is_some(),
            opt: if mode == Mode::Update {
                self.opt
            } else {
                Opt::Sgd
            },
            update: match mode {
                Mode::Update => self.update,
                _ => Update::default(),
            },
            acc,
            act: match mode {
                Mode::Activate | Mode::ActivationGrad => Act::of(self.net.job.activation),
                _ => Act::default(),
            },
            layout: self.net.layout,
        };
        matmul_dispatch(self.ctx, key, dims, scalar, bind)
    }

    fn bind(
        a: &'a GpuMatrix,
        b: &'a GpuMatrix,
        c: &'a GpuMatrix,
        aux: Option<&'a GpuMatrix>,
        aux_out: Option<&'a Banded>,
    ) -> MatmulBind<'a> {
        MatmulBind {
            windows: Windows::default(),
            a,
            b,
            c,
            aux,
            aux_out,
            bias: None,
            opt: None,
        }
    }

    /// The optimizer's bindings for tensor `i` (weights, then biases) of layer `l`.
    fn opt_of(&self, i: usize, l: usize) -> OptBind<'a> {
        OptBind {
            state: self.net.opt_state[i].as_ref(),
            counters: (
                &self.net.state,
                if self.shared == Some(l) {
                    SHARED_COUNTERS_OFFSET
                } else {
                    0
                },
            ),
            stacked: self.net.models > 1,
        }
    }

    /// a_j = act(a_{j-1} · w_l + b_l) for every product but the last, whose output meets the
    /// loss: its gradient (and per-element losses, or logits for cross-entropy) in one dispatch.
    fn forward(&self, plan: &mut Vec<Dispatch>) -> Result<()> {
        let job = &self.net.job;
        let (b, d, n) = (self.b, self.d(), self.n());
        let depth = job.depth();
        let hidden_mode = match self.activated() {
            true => Mode::Activate,
            false => Mode::Store,
        };
        for (j, &l) in self.product_layers.iter().enumerate() {
            let input = if j == 0 {
                &self.net.x
            } else {
                &self.net.acts[j - 1]
            };
            let none = Acc::default();
            for (bi, &band) in self.bands.iter().enumerate() {
                let dims = (self.real(band), d[l + 1], d[l]);
                plan.extend(if j + 1 < n {
                    // a_j = act(a_{j-1} · w_l + b_l) (GELU keeps its input in pre[j])
                    let pre = self.net.pre.get(j).map(|bands| &bands[bi]);
                    let bd = Self::bind(input, self.w(l), &self.net.acts[j], None, pre);
                    let bd = MatmulBind {
                        bias: self.bias(l),
                        windows: self.rows_of(band),
                        ..bd
                    };
                    self.mm((false, false, hidden_mode), none, dims, 0.0, bd)?
                } else {
                    // g_out = dLoss/d(pred) of pred = a_{j-1} · w_l + b_l, per-element losses
                    // into loss_terms; for cross-entropy, the logits pred into loss_terms (the
                    // gradient comes with the loss, from cross_entropy)
                    let loss_terms = Some(&self.net.loss_terms[bi]);
                    let mode = Mode::for_loss(job.loss);
                    let y = (mode != Mode::Logits).then_some(&self.net.y);
                    let bd = Self::bind(input, self.w(l), self.grad(j), y, loss_terms);
                    let bd = MatmulBind {
                        bias: self.bias(l),
                        windows: self.rows_of(band),
                        ..bd
                    };
                    let coef = job.loss.grad_coef(b, d[depth]);
                    self.mm((false, false, mode), none, dims, coef, bd)?
                });
            }
        }
        Ok(())
    }

    /// The loss summed into the step's history slot (over the bands' partial sums where banded),
    /// advancing the step counters in training; cross-entropy's softmax and gradient with it.
    fn loss(&self, plan: &mut Vec<Dispatch>) {
        let job = &self.net.job;
        let (b, d) = (self.b, self.d());
        let depth = job.depth();
        // Training advances the step counters (Adam's powers, and the run's step that a
        // learning-rate schedule reads).
        let advance = self.key.update;
        let advance_shared = advance && self.shared.is_some() && self.key.uses > 0;
        // Stacked models: one reduction for all, model z of the grid.
        let stack = match self.net.models {
            1 => Stack::ONE,
            models => Stack {
                models,
                values: 4 * self.net.loss_terms[0].model_stride(),
                history: self.net.history_len as u32,
                state: COUNTER_MODEL_WORDS,
                y: self.net.y.model_stride(),
            },
        };
        let scale = job.loss.scale(b, d[depth]);
        let cross_entropy = job.loss.is_classification();
        let out_grad = self.net.grads.last().expect("the output gradient");
        // cross_entropy over the logits of one band (all of them, unbanded) into `history`
        // (a band's slot of `band_sums`, without advancing anything, when `adv` is None).
        let ce = |bi: usize, band, scale, adv, history, state| {
            let win = |m: &'a GpuMatrix| match self.banded {
                true => m.window(band),
                false => m.binding(),
            };
            let bind = CrossEntropyBind {
                logits: &self.net.loss_terms[bi].bufs[0],
                y: win(&self.net.y),
                grad: win(out_grad),
                history,
                state,
            };
            let dims = (self.real(band), d[depth]);
            let coef = job.loss.grad_coef(b, d[depth]);
            let adv = (adv, stack);
            cross_entropy_dispatch(self.ctx, self.net.layout, dims, (scale, coef), adv, bind)
        };
        match (&self.net.band_sums, self.banded) {
            (Some(sums), true) => {
                for (bi, &band) in self.bands.iter().enumerate() {
                    let values = &self.net.loss_terms[bi].bufs[0];
                    let dims = (self.real(band), d[depth]);
                    let slot = &self.net.band_slots[bi];
                    plan.push(match cross_entropy {
                        true => ce(bi, band, 1.0, None, sums, slot),
                        false => loss_partial_dispatch(self.ctx, dims, values, sums, slot),
                    });
                }
                let adv = (advance, advance_shared);
                let (history, state) = (&self.net.history, &self.net.state);
                let dims = (1, self.bands.len());
                plan.push(loss_reduce_dispatch(
                    self.ctx,
                    dims,
                    scale,
                    adv,
                    Stack::ONE,
                    sums,
                    history,
                    state,
                ));
            }
            _ if cross_entropy => plan.push(ce(
                0,
                self.bands[0],
                scale,
                Some((advance, advance_shared)),
                &self.net.history,
                &self.net.state,
            )),
            _ => plan.push(loss_reduce_dispatch(
                self.ctx,
                (b, d[depth]),
                scale,
                (advance, advance_shared),
                stack,
                &self.net.loss_terms[0].bufs[0],
                &self.net.history,
                &self.net.state,
            )),
        }
    }

    /// From the last product down: the gradient through each product and the activation below
    /// it, and each weight's and bias's step (or gradient, or sum over a shared layer's uses).
    fn backward(&self, plan: &mut Vec<Dispatch>) -> Result<()> {
        let job = &self.net.job;
        let (d, n) = (self.d(), self.n());
        let depth = job.depth();
        let opt = self.opt;
        let activated = self.activated();
        let gelu = job.activation.needs_input();
        let input_grad_mode = match activated {
            true => Mode::ActivationGrad,
            false => Mode::Store,
        };
        for j in (0..n).rev() {
            let l = self.product_layers[j];
            if j > 0 {
                // g_{j-1} = (g_j · w_lᵀ) through the activation below (from its output
                // a_{j-1}, or for GELU its input pre[j-1]), from the weights before any step
                let aux = (activated && !gelu).then_some(&self.net.acts[j - 1]);
                for (bi, &band) in self.bands.iter().enumerate() {
                    let dims = (self.real(band), d[l], d[l + 1]);
                    let pre = self.net.pre.get(j - 1).map(|bands| &bands[bi]);
                    let bd = MatmulBind {
                        windows: self.rows_of(band),
                        ..Self::bind(self.grad(j), self.w(l), &self.net.grads[j - 1], aux, pre)
                    };
                    let mode = (false, true, input_grad_mode);
                    plan.extend(self.mm(mode, Acc::default(), dims, 0.0, bd)?);
                }
            }
            // A self.shared weight's gradient is summed over its uses, from the last down; its step
            // comes with the first use (the last one the backward pass reaches). Over self.bands of
            // the batch, each use's gradient is summed band by band the same way.
            let use_acc = Acc {
                input: j + 1 < n && self.product_layers[j + 1] == l,
                output: j > 0 && self.product_layers[j - 1] == l,
            };
            let (sum_w, sum_b) = match self.shared == Some(l) {
                true => (self.net.sum_w.as_ref(), self.net.sum_b.as_ref()),
                false => (
                    self.net.band_sum_w[l].as_ref(),
                    self.net.band_sum_b[l].as_ref(),
                ),
            };
            let input = if j == 0 {
                &self.net.x
            } else {
                &self.net.acts[j - 1]
            };
            for (bi, &band) in self.bands.iter().enumerate() {
                let acc = Acc {
                    input: use_acc.input || bi > 0,
                    output: use_acc.output || bi + 1 < self.bands.len(),
                };
                let summing = acc != Acc::default();
                let depth_of = Windows {
                    rows: None,
                    depth: self.banded.then_some(band),
                };
                // w_l' = step(w_l, a_{j-1}ᵀ · g_j [+ sum]) (or dw_l = ..., or sum = ...)
                let dims = (d[l], d[l + 1], self.real(band));
                let sum_w = sum_w.filter(|_| summing);
                plan.extend(if self.key.update && !acc.output {
                    let old = self.w(l);
                    // Pairs: read one texture, write the other; else step in place.
                    let (new, aux) = match self.net.layout.pairs() {
                        true => (&self.net.weights[l][1 - self.parity(l)], Some(old)),
                        false => (old, None),
                    };
                    let bd = MatmulBind {
                        opt: Some(self.opt_of(l, l)),
                        windows: depth_of,
                        ..Self::bind(input, self.grad(j), new, aux, sum_w)
                    };
                    self.mm((true, false, Mode::Update), acc, dims, job.lr, bd)?
                } else {
                    // dws[l] is not written while summing (acc.output).
                    let bd = MatmulBind {
                        windows: depth_of,
                        ..Self::bind(input, self.grad(j), &self.net.dws[l], None, sum_w)
                    };
                    self.mm((true, false, Mode::Store), acc, dims, 0.0, bd)?
                });
                // b_l' = step(b_l, Σ_rows g_j [+ sum]) (or db_l = ..., or sum = ...)
                if let Some(b_l) = self.bias(l) {
                    let step = BiasStep {
                        store: !self.key.update,
                        kind: opt,
                        opt: Some(self.opt_of(depth + l, l)),
                        acc,
                        sum: sum_b.filter(|_| summing),
                        band: self.banded.then_some(band),
                    };
                    let target = if self.key.update {
                        b_l
                    } else {
                        &self.net.dbs[l]
                    };
                    let dims = (self.real(band), d[l + 1]);
                    plan.push(bias_update_dispatch(
                        self.ctx,
                        dims,
                        step,
                        self.grad(j),
                        target,
                    ));
                }
            }
        }
        Ok(())
    }
}
