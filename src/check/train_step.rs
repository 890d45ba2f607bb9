//! The reference of a whole training step, parameter by parameter: one epoch (its steps) from a
//! given state, in f64, with the radius within which any correct f32 run (the CPU's, a GPU's)
//! must land for each weight, bias and optimizer state element. `verify`'s training checks start
//! every epoch from the GPU's own state and compare what it ends with (against the CPU's, run
//! from the same state) with these radii, so that a kernel or a host bug that drops a term of the
//! step (AdamW's decay, momentum's weight decay, a bias gradient) fails at the parameters it
//! moves, not only when it shows in the loss.
//!
//! How the radii follow the step (u = 2^-24, γ_k as in [`super::gamma`]; each value `v` carries
//! a radius `e`, the inputs' being 0):
//! - a product `Σ_p a_p·b_p (+ bias)` of length k: `Σ (e_a|b| + |a|e_b + e_a·e_b)` carried
//!   through, plus `γ_{k+1}·Σ (|a|+e_a)(|b|+e_b)` of its own rounding in any summation order;
//! - every element-wise stage (activation, its gradient, the loss gradient, the optimizer step)
//!   is evaluated at the corners of its inputs' boxes `v ± e`, the largest move kept, plus that
//!   stage's own slack ([`super::epilogue`]) and [`FTZ`](super::epilogue::FTZ): the stages are
//!   monotone between their kinks and smooth on the scale of the radii, and a kink inside a box
//!   (a ReLU's mask, L1's sign) shows at its corners;
//! - cross-entropy's softmax moves by at most `s_j·(e^{2E} - 1)` when every logit of the row
//!   moves by at most E, plus the kernel's own `2e-6·Σy·coef + 1e-6·|g|` (`verify`'s bound).
//!
//! Within an epoch of several mini-batches the radii carry over from step to step; each epoch
//! starts exact from the state it is given. A dynamic-depth net's shared layer gets its gradient
//! summed over its uses (each sum rounded once) and its own step counters, as on both paths.

use super::epilogue::{self, Approx, Outputs, Step, FTZ};
use super::{gamma, U};
use crate::backend::Backend;
use crate::error::Result;
use crate::gpu::Opt;
use crate::init::Matrix;
use crate::job::{Activation, Job};
use crate::state::{OptCounters, TrainState};

/// A tensor's reference values and, per element, how far a correct f32 run may be from each.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub value: Vec<f64>,
    pub radius: Vec<f64>,
}

impl Field {
    fn exact(v: &[f32]) -> Self {
        Field {
            value: v.iter().map(|&x| x as f64).collect(),
            radius: vec![0.0; v.len()],
        }
    }

    fn zeros(n: usize) -> Self {
        Field {
            value: vec![0.0; n],
            radius: vec![0.0; n],
        }
    }
}

/// Where one epoch from a state ends: every tensor of the training state, as
/// [`TrainState`] orders them (weights, then biases; per tensor the optimizer's kept buffers).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    pub weights: Vec<Field>,
    pub biases: Vec<Field>,
    pub opt_state: Vec<Vec<Field>>,
}

/// The step's settings as the kernels take them, once `counters` (the run's: the rate follows
/// its step) and `powers` (the tensor's: β1^t and β2^t, a shared layer's own) have advanced.
fn step_settings(job: &Job, counters: OptCounters, powers: OptCounters) -> Step {
    let o = &job.optimizer;
    let opt = Opt::of(o);
    Step {
        opt,
        decay: o.weight_decay,
        lr: job.lr_schedule.lr(job.lr, counters.t.saturating_sub(1)),
        hyper: match opt {
            Opt::Sgd => [0.0; 3],
            Opt::Momentum | Opt::Nesterov => [o.momentum, 0.0, 0.0],
            Opt::Adam | Opt::AdamW => [o.beta1, o.beta2, o.eps],
        },
        beta_t: [powers.beta1_t, powers.beta2_t],
    }
}

/// `f` at the centre `v` and at every corner of the box `v ± e` (only the dimensions with a
/// radius vary): per output, the value at the centre and the largest move to a corner plus the
/// largest slack seen plus [`FTZ`].
fn through<const N: usize>(
    f: impl Fn([f64; N]) -> Outputs,
    v: [f64; N],
    e: [f64; N],
) -> [Option<(f64, f64)>; 4] {
    let at = f(v).all();
    let mut moved = [0.0f64; 4];
    let mut slack: [f64; 4] = at.map(|a| a.map_or(0.0, |a| a.slack));
    let varying: Vec<usize> = (0..N).filter(|&i| e[i] > 0.0).collect();
    for mask in 1u32..(1 << varying.len()) {
        let mut x = v;
        for (bit, &i) in varying.iter().enumerate() {
            x[i] += if mask >> bit & 1 == 1 { e[i] } else { -e[i] };
        }
        for (j, o) in f(x).all().into_iter().enumerate() {
            if let (Some(o), Some(a)) = (o, at[j]) {
                moved[j] = moved[j].max((o.value - a.value).abs());
                slack[j] = slack[j].max(o.slack);
            }
        }
    }
    let mut out = [None; 4];
    for j in 0..4 {
        // An output exactly zero at every corner (a ReLU's negative side) stays exact, so that
        // a mask read from it is not made ambiguous.
        out[j] = at[j].map(|a| {
            let r = moved[j] + slack[j];
            (
                a.value,
                if r > 0.0 || a.value != 0.0 {
                    r + FTZ
                } else {
                    0.0
                },
            )
        });
    }
    out
}

/// An element-wise stage of one input with one output.
fn map1(f: impl Fn(f64) -> Approx, a: &Field) -> Field {
    let mut out = Field::zeros(a.value.len());
    for i in 0..a.value.len() {
        let [c, ..] = through(|[x]| Outputs::c(f(x)), [a.value[i]], [a.radius[i]]);
        (out.value[i], out.radius[i]) = c.unwrap_or_default();
    }
    out
}

/// `C[m, n] = Σ_p A[m, p]·B[p, n]` (A transposed if `ta`, stored `[p, m]`; B transposed if `tb`,
/// stored `[n, p]`) plus `bias[n]`, with the radius of a product of length k.
fn product(
    a: &Field,
    b: &Field,
    bias: Option<&Field>,
    (m, n, k): (usize, usize, usize),
    (ta, tb): (bool, bool),
) -> Field {
    let g = gamma(k + bias.is_some() as usize);
    let mut out = Field::zeros(m * n);
    for i in 0..m {
        for j in 0..n {
            let (mut v, mut carried, mut mag) = (0.0, 0.0, 0.0);
            for p in 0..k {
                let ai = if ta { p * m + i } else { i * k + p };
                let bi = if tb { j * k + p } else { p * n + j };
                let (av, ae, bv, be) = (a.value[ai], a.radius[ai], b.value[bi], b.radius[bi]);
                v += av * bv;
                carried += ae * bv.abs() + av.abs() * be + ae * be;
                mag += (av.abs() + ae) * (bv.abs() + be);
            }
            if let Some(b) = bias {
                v += b.value[j];
                carried += b.radius[j];
                mag += b.value[j].abs() + b.radius[j];
            }
            out.value[i * n + j] = v;
            out.radius[i * n + j] = carried + g * mag + k as f64 * FTZ;
        }
    }
    out
}

/// The column sums of `g` (`[rows, n]`): `bias_update`'s reduction.
fn column_sums(g: &Field, rows: usize, n: usize) -> Field {
    let mut out = Field::zeros(n);
    let gm = gamma(rows);
    for j in 0..n {
        let (mut v, mut carried, mut mag) = (0.0, 0.0, 0.0);
        for r in 0..rows {
            let (x, e) = (g.value[r * n + j], g.radius[r * n + j]);
            v += x;
            carried += e;
            mag += x.abs() + e;
        }
        out.value[j] = v;
        out.radius[j] = carried + gm * mag;
    }
    out
}

/// The gradient of the loss with respect to the output `p` (`[rows, cols]`) against `y`, as
/// `cpu::loss_forward` computes it.
fn loss_gradient(job: &Job, p: &Field, y: &[f32], rows: usize, cols: usize) -> Field {
    let s = job.loss.grad_coef(rows, cols) as f64;
    let mut g = Field::zeros(rows * cols);
    if job.loss.is_classification() {
        for r in 0..rows {
            let (z, e) = (&p.value[r * cols..][..cols], &p.radius[r * cols..][..cols]);
            let yr = &y[r * cols..][..cols];
            let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            let ex: Vec<f64> = z.iter().map(|&v| (v - m).exp()).collect();
            let sum: f64 = ex.iter().sum();
            let ys: f64 = yr.iter().map(|&v| v as f64).sum();
            let big_e = e.iter().fold(0.0f64, |a, &b| a.max(b));
            let spread = (2.0 * big_e).exp_m1();
            for j in 0..cols {
                let soft = ex[j] / sum;
                let v = (soft * ys - yr[j] as f64) * s;
                g.value[r * cols + j] = v;
                g.radius[r * cols + j] = s.abs() * ys.abs() * soft * spread
                    + 2e-6 * s.abs() * ys.abs().max(1.0)
                    + 1e-6 * v.abs()
                    + FTZ;
            }
        }
        return g;
    }
    let abs = job.loss.is_abs();
    let f = |x: f64, t: f64| {
        let d = x - t;
        if abs {
            Approx::exact(s * epilogue::sign(d))
        } else {
            // The difference and the product, each rounded.
            Approx::rounded(s * d, 2.0)
        }
    };
    for (i, &t) in y[..rows * cols].iter().enumerate() {
        let [c, ..] = through(
            |[x]| Outputs::c(f(x, t as f64)),
            [p.value[i]],
            [p.radius[i]],
        );
        (g.value[i], g.radius[i]) = c.unwrap_or_default();
    }
    g
}

/// Apply one optimizer step to `p` from its gradient `g` and its kept state.
fn update(s: &Step, p: &mut Field, g: &Field, state: &mut [Field]) {
    let kept = state.len();
    for i in 0..p.value.len() {
        let at = |f: &[Field], j: usize| f.get(j).map_or((0.0, 0.0), |f| (f.value[i], f.radius[i]));
        let ((m0, em), (v0, ev)) = (at(state, 0), at(state, 1));
        let out = through(
            |[p, g, m, v]| epilogue::step(s, p, g, m, v),
            [p.value[i], g.value[i], m0, v0],
            [p.radius[i], g.radius[i], em, ev],
        );
        let [c, _, m, v] = out;
        (p.value[i], p.radius[i]) = c.unwrap_or_default();
        for (j, o) in [m, v].into_iter().enumerate().take(kept) {
            (state[j].value[i], state[j].radius[i]) = o.unwrap_or_default();
        }
    }
}

/// One epoch of `job` from `start` on the dataset `x`, `y` (`[rows, d0]`, `[rows, dL]`): its
/// steps in the epoch's row order, each forward, loss gradient, backward and optimizer step as
/// the CPU backend orders them (the shared layer of a dynamic-depth net as many times as each
/// step draws). `epoch` picks the row order of mini-batches.
pub fn epoch(job: &Job, start: &TrainState, x: &Matrix, y: &Matrix, epoch: usize) -> Reference {
    let depth = job.depth();
    let act = job.activation;
    let exact =
        |ms: &[Matrix]| -> Vec<Field> { ms.iter().map(|m| Field::exact(&m.data)).collect() };
    let mut weights = exact(&start.params.weights);
    let mut biases = exact(&start.params.biases);
    let mut opt_state: Vec<Vec<Field>> = start.opt_state.iter().map(|kept| exact(kept)).collect();
    let (mut counters, mut shared_counters) = (start.counters, start.shared_counters);
    let order = job.order(epoch);
    let (d0, dl) = (job.layers[0], job.layers[depth]);
    for j in 0..job.steps_per_epoch() {
        let rows = job.batch_rows(j);
        let picked = &order[j * job.batch..][..rows];
        let gather = |m: &Matrix, w: usize| -> Vec<f32> {
            (picked.iter())
                .flat_map(|&r| m.data[r as usize * w..][..w].to_vec())
                .collect()
        };
        let (xb, yb) = (gather(x, d0), gather(y, dl));
        // The weights this step applies, in order (a dynamic-depth net's shared one as many
        // times as the step draws).
        let uses = job.uses(start.step + j);
        let products = job.applications(uses);
        let n = products.len();
        // Forward: each product's input, and what its activation's backward reads (its output,
        // or its input for GELU).
        let mut inputs = vec![Field::exact(&xb)];
        let mut aux = Vec::new();
        for (i, &l) in products.iter().enumerate() {
            let (k, w) = (job.layers[l], job.layers[l + 1]);
            let z = product(
                &inputs[i],
                &weights[l],
                biases.get(l),
                (rows, w, k),
                (false, false),
            );
            if i + 1 == n {
                inputs.push(z);
                break;
            }
            let a = map1(|v| epilogue::act_forward(act, v), &z);
            aux.push(if act.needs_input() { z } else { a.clone() });
            inputs.push(a);
        }
        let out = inputs.pop().expect("the output layer");
        counters.advance(&job.optimizer);
        if uses > 0 {
            shared_counters.advance(&job.optimizer);
        }
        let mut g = loss_gradient(job, &out, &yb, rows, dl);
        // The gradients of a weight used more than once, summed over its uses (backward order).
        let mut sums: Vec<Option<(Field, Option<Field>)>> = vec![None; depth];
        for i in (0..n).rev() {
            let l = products[i];
            let (k, w) = (job.layers[l], job.layers[l + 1]);
            // The gradient below, with the weights before their step.
            let below = (i > 0).then(|| {
                let h = product(&g, &weights[l], None, (rows, k, w), (false, true));
                backward(act, &h, &aux[i - 1])
            });
            let dw = product(&inputs[i], &g, None, (k, w, rows), (true, false));
            let db = (l < biases.len()).then(|| column_sums(&g, rows, w));
            let (dw, db) = match sums[l].take() {
                Some((sw, sb)) => (add(&sw, &dw), sb.zip(db).map(|(a, b)| add(&a, &b))),
                None => (dw, db),
            };
            if i > 0 && products[i - 1] == l {
                // More uses below: the step waits for their gradients.
                sums[l] = Some((dw, db));
            } else {
                let powers = if job.shared_layer() == Some(l) {
                    shared_counters
                } else {
                    counters
                };
                let s = step_settings(job, counters, powers);
                let kept = opt_state.get_mut(l).map_or(&mut [][..], |s| &mut s[..]);
                update(&s, &mut weights[l], &dw, kept);
                if let (Some(b), Some(db)) = (biases.get_mut(l), db) {
                    let kept = opt_state
                        .get_mut(depth + l)
                        .map_or(&mut [][..], |s| &mut s[..]);
                    update(&s, b, &db, kept);
                }
            }
            if let Some(below) = below {
                g = below;
            }
        }
    }
    Reference {
        weights,
        biases,
        opt_state,
    }
}

/// `a + b`, rounded once.
fn add(a: &Field, b: &Field) -> Field {
    let mut out = Field::zeros(a.value.len());
    for i in 0..a.value.len() {
        let v = a.value[i] + b.value[i];
        out.value[i] = v;
        out.radius[i] = a.radius[i] + b.radius[i] + U * (a.value[i].abs() + b.value[i].abs());
    }
    out
}

/// The gradient `h` through the activation, from `aux` (the layer's output, or its input for
/// GELU); none for a linear net (the CPU and GPU pass it through).
fn backward(act: Activation, h: &Field, aux: &Field) -> Field {
    if act == Activation::None {
        return h.clone();
    }
    let mut out = Field::zeros(h.value.len());
    for i in 0..h.value.len() {
        let [c, ..] = through(
            |[g, a]| Outputs::c(epilogue::act_backward(act, g, a)),
            [h.value[i], aux.value[i]],
            [h.radius[i], aux.radius[i]],
        );
        (out.value[i], out.radius[i]) = c.unwrap_or_default();
    }
    out
}

/// `got` against `want` (both f32 runs from the same state: a GPU's and the CPU's) within twice each element's radius
/// (each run within one radius of the reference): the worst ratio over every tensor, and where.
pub fn compare(got: &TrainState, want: &TrainState, reference: &Reference) -> (f64, String) {
    let mut worst = (0.0f64, String::new());
    // Every tensor with its name (w1, b1, m.w1, v.w1 ...) and its width.
    let named = |s: &TrainState| -> Vec<(String, usize, Vec<f32>)> {
        let p = &s.params;
        let mut out: Vec<(String, usize, Vec<f32>)> = (p.named().into_iter())
            .map(|(n, m)| (n, m.cols, m.data.clone()))
            .collect();
        let names: Vec<String> = out.iter().map(|(n, ..)| n.clone()).collect();
        for (t, kept) in s.opt_state.iter().enumerate() {
            for (b, m) in kept.iter().enumerate() {
                let name = format!("{}.{}", ["m", "v"][b], names[t]);
                out.push((name, m.cols, m.data.clone()));
            }
        }
        out
    };
    let fields: Vec<&Field> = (reference.weights.iter())
        .chain(&reference.biases)
        .chain(reference.opt_state.iter().flatten())
        .collect();
    let (got, want) = (named(got), named(want));
    if got.len() != want.len() || got.len() != fields.len() {
        return (
            f64::INFINITY,
            format!("{} tensors, want {}", got.len(), want.len()),
        );
    }
    for (((name, cols, g), (.., w)), f) in got.iter().zip(&want).zip(fields) {
        if g.len() != w.len() || g.len() != f.value.len() {
            return (
                f64::INFINITY,
                format!("{name} has {} elements, want {}", g.len(), w.len()),
            );
        }
        for i in 0..g.len() {
            let bound = 2.0 * f.radius[i];
            let r = super::ratio(g[i], w[i] as f64, bound);
            if r > worst.0 || worst.1.is_empty() {
                worst = (
                    r,
                    format!(
                        "{name}[{}, {}] = {:e}, want {:e} ± {bound:.1e}",
                        i / cols.max(&1),
                        i % cols.max(&1),
                        g[i],
                        w[i]
                    ),
                );
            }
        }
    }
    worst
}

/// `epochs` epochs of `job` (on the dataset `x`, `y`) on two backends, each epoch started from
/// `got`'s state (restored into `want`): the worst ratio over the epochs of every tensor of the
/// state against the [`epoch`] reference ([`compare`]) and of the loss (the trajectory
/// tolerance), and where it was. Used by `verify` (a GPU against the CPU) and the tests (a
/// banded run against a whole one, a resumed state on both paths).
pub async fn follow(
    job: &Job,
    (x, y): (&Matrix, &Matrix),
    got: &mut dyn Backend,
    want: &mut dyn Backend,
    epochs: usize,
) -> Result<(f64, String)> {
    let mut start = got.state_async().await?;
    let mut worst = (0.0f64, String::new());
    for _ in 0..epochs {
        want.restore_async(&start).await?;
        let e = start.step / job.steps_per_epoch().max(1);
        let reference = epoch(job, &start, x, y, e);
        let (g, w) = (got.run_async(1).await?, want.run_async(1).await?);
        let loss = super::worst_ratio(&g, &[w[0] as f64], &[super::trajectory_tol(w[0])]);
        let end = got.state_async().await?;
        let (r, at) = compare(&end, &want.state_async().await?, &reference);
        // The worst ratio; where: the worst until something fails, then the first failure
        // (what follows starts from a wrong state).
        for (ratio, at) in [(loss, format!("loss {:e}, want {:e}", g[0], w[0])), (r, at)] {
            if worst.0 <= 1.0 && (ratio > worst.0 || worst.1.is_empty()) {
                worst.1 = format!("epoch {e}: {at}");
            }
            worst.0 = worst.0.max(ratio);
        }
        start = end;
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::cpu::CpuBackend;
    use crate::init::HostState;
    use crate::job::{InitScheme, Loss, Optimizer, OptimizerKind};

    fn jobs() -> Vec<Job> {
        let base = Job {
            layers: vec![23, 13, 5],
            batch: 9,
            epochs: 3,
            bias: true,
            init_scheme: InitScheme::Torch,
            lr: 1e-2,
            log_every: 0,
            ..Job::default()
        };
        let mut jobs = Vec::new();
        for kind in [
            OptimizerKind::Sgd,
            OptimizerKind::Momentum,
            OptimizerKind::Adam,
            OptimizerKind::AdamW,
        ] {
            for loss in [
                Loss::Sse,
                Loss::Mse,
                Loss::HalfSse,
                Loss::L1,
                Loss::CrossEntropy,
            ] {
                for weight_decay in [0.0, 0.05] {
                    let optimizer = Optimizer {
                        kind,
                        nesterov: loss == Loss::Mse,
                        weight_decay,
                        ..Optimizer::default()
                    };
                    jobs.push(Job {
                        loss,
                        optimizer,
                        ..base.clone()
                    });
                }
            }
        }
        for activation in Activation::ALL {
            jobs.push(Job {
                activation,
                loss: Loss::Mse,
                ..base.clone()
            });
        }
        jobs.push(Job {
            rows: Some(3 * base.batch + 2),
            ..base.clone()
        });
        // A shared layer used 0 to 3 times a step, with Adam (its own step counters).
        let dynamic = crate::job::preset("dynamic").expect("the dynamic preset");
        jobs.push(Job {
            layers: vec![11, 7, 7, 3],
            batch: 5,
            epochs: 6,
            lr: 1e-2,
            bias: true,
            optimizer: Optimizer {
                kind: OptimizerKind::Adam,
                ..Optimizer::default()
            },
            ..dynamic
        });
        if let Ok(lr_schedule) =
            crate::schedule::LrSchedule::parse(Some("step:1:0.5"), Some("1:0.25"))
        {
            jobs.push(Job {
                lr_schedule,
                ..base
            });
        }
        jobs
    }

    /// The CPU backend (a correct f32 run) lands within one radius of the reference on every
    /// element, epoch after epoch (a radius that misses it would miss a correct GPU too); and the
    /// radii are tight: the median element's is under 1e-3 of how far the epoch moved it (they
    /// run 3e-6 to 3e-4 of it, the worst with sigmoid and mini-batches).
    #[test]
    fn the_cpu_lands_within_the_radius_of_every_element() {
        for job in jobs() {
            let state = HostState::seeded(&job);
            let mut cpu = CpuBackend::new(&job, &state);
            for e in 0..job.epochs {
                let start = cpu.train_state();
                let before: Vec<f64> = (start.params.weights.iter().chain(&start.params.biases))
                    .flat_map(|m| m.data.iter().map(|&v| v as f64))
                    .collect();
                let reference = epoch(&job, &start, &state.x, &state.y, e);
                cpu.run(1).expect("the CPU runs");
                let end = cpu.train_state();
                // The CPU's values against the reference's, within one radius (not the two of
                // a comparison of two runs).
                let fields = (reference.weights.iter()).chain(&reference.biases);
                let tensors = (end.params.weights.iter()).chain(&end.params.biases);
                let ended = tensors.flat_map(|m| m.data.iter().map(|&v| v as f64));
                let refs = fields.flat_map(|f| f.value.iter().zip(&f.radius));
                let mut radii = Vec::new();
                for (i, ((got, (&want, &radius)), was)) in ended.zip(refs).zip(&before).enumerate()
                {
                    assert!(
                        (got - want).abs() <= radius,
                        "{job:?} epoch {e}: element {i} {got} vs {want} ± {radius}"
                    );
                    let moved = (got - was).abs();
                    if moved > 0.0 {
                        radii.push(radius / moved);
                    }
                }
                for (kept, f) in end
                    .opt_state
                    .iter()
                    .flatten()
                    .zip(reference.opt_state.iter().flatten())
                {
                    for i in 0..kept.data.len() {
                        let d = (kept.data[i] as f64 - f.value[i]).abs();
                        assert!(
                            d <= f.radius[i],
                            "{job:?} epoch {e}: state {i} {} vs {} ± {}",
                            kept.data[i],
                            f.value[i],
                            f.radius[i]
                        );
                    }
                }
                radii.sort_by(f64::total_cmp);
                let median = radii[radii.len() / 2];
                assert!(
                    median < 1e-3,
                    "{job:?} epoch {e}: median radius/step {median:e}"
                );
            }
        }
    }

    /// A run whose step lacks a term lands outside the radii: the reference of the job without
    /// its weight decay against the CPU's run with it, for AdamW's decoupled decay (1e-2) and
    /// momentum's L2 decay, on most weights after one step.
    #[test]
    fn a_dropped_decay_lands_outside_the_radii() {
        for (kind, weight_decay) in [
            (OptimizerKind::AdamW, 1e-2),
            (OptimizerKind::Momentum, 5e-2),
        ] {
            let job = Job {
                layers: vec![23, 13, 5],
                batch: 9,
                bias: true,
                init_scheme: InitScheme::Torch,
                lr: 1e-2,
                optimizer: Optimizer {
                    kind,
                    weight_decay,
                    ..Optimizer::default()
                },
                ..Job::default()
            };
            let mut dropped = job.clone();
            dropped.optimizer.weight_decay = 0.0;
            let state = HostState::seeded(&job);
            let mut cpu = CpuBackend::new(&job, &state);
            let start = cpu.train_state();
            let reference = epoch(&dropped, &start, &state.x, &state.y, 0);
            cpu.run(1).expect("the CPU runs");
            let end = cpu.train_state();
            let (mut outside, mut all) = (0, 0);
            for (f, t) in reference.weights.iter().zip(&end.params.weights) {
                for i in 0..t.data.len() {
                    all += 1;
                    outside += ((t.data[i] as f64 - f.value[i]).abs() > 2.0 * f.radius[i]) as usize;
                }
            }
            assert!(
                outside * 10 > all * 9,
                "{kind:?}: {outside} of {all} outside"
            );
            let (ratio, _) = compare(&end, &end, &reference);
            assert_eq!(ratio, 0.0);
        }
    }
}
