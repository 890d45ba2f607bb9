//! The check of the matmul kernel with each epilogue training fuses into it (`check_<op>` of
//! the product, one home for `verify`, the kernel tests and `tune`'s parity gate): seeded inputs
//! for the epilogue, the GPU's outputs poisoned with NaN first, and each output (C, AUX_OUT, the
//! optimizer's m and v) against the CPU's product carried through the f64 reference of the
//! epilogue with its bound (`2γ_k·|A|·|B|` through [`propagate`], plus the epilogue's slack).
//!
//! The hyperparameters of the steps it checks make every term matter: ε is a fifth of Adam's
//! denominator, β1 ≠ β2, μ, the decay and the scheduled rate (a quarter of the base rate) each
//! move the result by more than 1% of its size.

use super::epilogue::{self, propagate, Approx, Outputs, Step};
use super::{two_gamma, worst_ratio};
use crate::cpu;
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::{
    run_matmul, Acc, Act, Block, GpuContext, MatmulInputs, MatmulKey, Mode, Opt, StepState, Update,
};
use crate::init::Matrix;
use crate::job::{Activation, Loss};

/// The generator of a check's inputs.
pub fn seeded(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand::SeedableRng::seed_from_u64(seed)
}

/// Standard-normal inputs of a product, seeded.
pub fn random_inputs(
    key: MatmulKey,
    (m, n, k): (usize, usize, usize),
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let ((ar, ac), (br, bc)) = key.stored_shapes((m, n, k));
    let normal = rand_distr::StandardNormal;
    let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|_| normal.sample(&mut r)).collect() };
    let a = draw(ar * ac);
    let b = draw(br * bc);
    (a, b)
}

/// The CPU's product of `a` and `b` (stored as `key`'s transposes say) and `|A|·|B|`, the scale
/// the bound needs.
pub fn cpu_reference(
    key: MatmulKey,
    a: &[f32],
    b: &[f32],
    (m, n, k): (usize, usize, usize),
) -> (Vec<f32>, Vec<f32>) {
    let mut want = vec![0.0; m * n];
    crate::cpu::matmul(
        &mut want,
        a,
        b,
        m,
        n,
        k,
        key.trans_a,
        key.trans_b,
        crate::cpu::Epilogue::Store,
    );
    let (aa, ba): (Vec<f32>, Vec<f32>) = (
        a.iter().map(|v| v.abs()).collect(),
        b.iter().map(|v| v.abs()).collect(),
    );
    let mut scale = vec![0.0; m * n];
    crate::cpu::matmul(
        &mut scale,
        &aa,
        &ba,
        m,
        n,
        k,
        key.trans_a,
        key.trans_b,
        crate::cpu::Epilogue::Store,
    );
    (want, scale)
}

/// A plain product (`Mode::Store`) of a variant in `layout`.
pub fn store_key(layout: Layout, trans_a: bool, trans_b: bool, block: Block) -> MatmulKey {
    MatmulKey {
        layout,
        trans_a,
        trans_b,
        mode: Mode::Store,
        block,
        bias: false,
        opt: Opt::Sgd,
        update: Update::default(),
        acc: Acc::default(),
        act: Act::default(),
    }
}

/// The settings of every optimizer step the suite checks, chosen so that each term matters: ε
/// is a fifth of Adam's denominator, β1 ≠ β2, μ, the decay and the scheduled rate (a quarter of
/// the base rate) each move the result by more than 1% of its size.
pub const BASE_LR: f32 = 0.25;
pub const SCHEDULED_LR: f32 = 0.0625;
pub const DECAY: f32 = 0.3;
pub const MOMENTUM: f32 = 0.7;
pub const ADAM: [f32; 3] = [0.8, 0.9, 0.5];
/// β1^t and β2^t at step t = 3.
pub const BETA_T: [f32; 2] = [0.512, 0.729];

/// Every activation, in the order the suite checks them.
pub const ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu(0.01),
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Gelu,
    Activation::None,
];

/// Every optimizer step of the kernels.
pub const OPTS: [Opt; 5] = [
    Opt::Sgd,
    Opt::Momentum,
    Opt::Nesterov,
    Opt::Adam,
    Opt::AdamW,
];

/// The matmul epilogues the suite checks, each with what it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Epi {
    Store,
    /// A hidden layer's forward product through its activation (GELU keeps its input too).
    Act(Activation),
    /// The input gradient through the activation below.
    Grad(Activation),
    /// The output layer's logits, for cross_entropy (AUX_OUT only).
    Logits,
    /// The weight gradient fused with an optimizer step.
    Update(Opt, Update),
    SquaredError,
    AbsError,
    Bias,
    /// A shared layer's gradient summed: ACC_IN and ACC_OUT (the sum so far plus the product).
    Sum,
}

pub fn opt_name(opt: Opt) -> &'static str {
    match opt {
        Opt::Sgd => "sgd",
        Opt::Momentum => "momentum",
        Opt::Nesterov => "nesterov",
        Opt::Adam => "adam",
        Opt::AdamW => "adamw",
    }
}

/// `sgd`, `adamw+decay+sched`, ...
pub fn step_name(opt: Opt, update: Update) -> String {
    let mut s = opt_name(opt).to_string();
    if update.decay_bits != 0 {
        s += "+decay";
    }
    if update.scheduled {
        s += "+sched";
    }
    s
}

/// Every optimizer step with and without the decay and the schedule (`quick`: plain SGD, and
/// each step without either and with both).
pub fn steps(quick: bool) -> Vec<(Opt, Update)> {
    let mut v = Vec::new();
    for opt in OPTS {
        for decay in [0.0f32, DECAY] {
            for scheduled in [false, true] {
                if quick && (decay != 0.0) != scheduled {
                    continue;
                }
                let update = Update {
                    decay_bits: decay.to_bits(),
                    scheduled,
                };
                v.push((opt, update));
            }
        }
    }
    v
}

fn act_name(a: Activation) -> &'static str {
    match a {
        Activation::Relu => "relu",
        Activation::LeakyRelu(_) => "leaky-relu",
        Activation::Tanh => "tanh",
        Activation::Sigmoid => "sigmoid",
        Activation::Gelu => "gelu",
        Activation::None => "linear",
    }
}

impl Epi {
    /// Every epilogue: the core ones first (checked on every shape), then the variants (checked
    /// on a few: they differ from a core one only in the per-element step, not in how the
    /// product is tiled).
    pub fn all(quick: bool) -> Vec<Epi> {
        let mut v = vec![
            Epi::Store,
            Epi::Act(Activation::Relu),
            Epi::Grad(Activation::Relu),
            Epi::Update(Opt::Sgd, Update::default()),
            Epi::SquaredError,
            Epi::AbsError,
            Epi::Bias,
            Epi::Sum,
            Epi::Logits,
        ];
        for a in ACTIVATIONS.into_iter().skip(1) {
            v.push(Epi::Act(a));
            v.push(Epi::Grad(a));
        }
        v.extend(
            steps(quick)
                .into_iter()
                .skip(1)
                .map(|(o, u)| Epi::Update(o, u)),
        );
        v
    }

    /// Whether the epilogue is checked on every shape (the core ones, which the variants share
    /// their tiling with) or on a few.
    pub fn core(self) -> bool {
        match self {
            Epi::Act(a) | Epi::Grad(a) => a == Activation::Relu,
            Epi::Update(o, u) => o == Opt::Sgd && u == Update::default(),
            Epi::Logits => false,
            _ => true,
        }
    }

    pub fn name(self) -> String {
        match self {
            Epi::Store => "store".into(),
            Epi::Act(a) => act_name(a).into(),
            Epi::Grad(a) => format!("{}-grad", act_name(a)),
            Epi::Logits => "logits".into(),
            Epi::Update(o, u) => step_name(o, u),
            Epi::SquaredError => "sq-err".into(),
            Epi::AbsError => "abs-err".into(),
            Epi::Bias => "bias".into(),
            Epi::Sum => "sum".into(),
        }
    }

    /// The mode and transposes training uses this epilogue with.
    pub fn key(self, layout: Layout, block: Block, trans: (bool, bool)) -> MatmulKey {
        let (mode, act, (opt, update)) = match self {
            Epi::Store | Epi::Bias | Epi::Sum => (Mode::Store, Act::default(), Default::default()),
            Epi::Act(a) => (Mode::Activate, Act::of(a), Default::default()),
            Epi::Grad(a) => (Mode::ActivationGrad, Act::of(a), Default::default()),
            Epi::Logits => (Mode::Logits, Act::default(), Default::default()),
            Epi::Update(o, u) => (Mode::Update, Act::default(), (o, u)),
            Epi::SquaredError => (Mode::SquaredError, Act::default(), Default::default()),
            Epi::AbsError => (Mode::AbsError, Act::default(), Default::default()),
        };
        MatmulKey {
            trans_a: trans.0,
            trans_b: trans.1,
            mode,
            block,
            bias: self.has_bias(),
            opt,
            update,
            act,
            acc: if self == Epi::Sum {
                Acc {
                    input: true,
                    output: true,
                }
            } else {
                Acc::default()
            },
            layout,
        }
    }

    /// Whether the product adds a bias before the epilogue: the plain one with it (`Bias`),
    /// and every forward one (a hidden layer's activation, the logits), as training with biases
    /// runs them, so that the bias shows added before the activation.
    pub fn has_bias(self) -> bool {
        matches!(self, Epi::Bias | Epi::Act(_) | Epi::Logits)
    }

    /// The transposes to check it with: every combination for the plain product, training's for
    /// the others (x·w forward, g·wᵀ for the gradient through an activation, aᵀ·g for the weight
    /// update and the sum).
    pub fn transposes(self) -> &'static [(bool, bool)] {
        match self {
            Epi::Store => &[(false, false), (true, false), (false, true), (true, true)],
            Epi::Grad(_) => &[(false, true)],
            Epi::Update(..) | Epi::Sum => &[(true, false)],
            _ => &[(false, false)],
        }
    }
}

/// What one epilogue check compares: the GPU's output, the CPU's, and the bound per element.
pub struct Compared {
    /// Which output: C, AUX_OUT, m or v.
    pub name: &'static str,
    pub got: Vec<f32>,
    pub want: Vec<f64>,
    pub bound: Vec<f64>,
}

/// The inputs an epilogue reads besides A and B.
pub struct Extra {
    /// AUX (y, the activation's output, the old weights), the sum so far or GELU's kept input,
    /// `[m, n]`.
    pub aux: Vec<f32>,
    pub bias: Vec<f32>,
    /// The loss gradient's factor of the error modes.
    pub coef: f32,
    /// The optimizer's state before an update.
    pub state: crate::gpu::StepState,
}

/// The optimizer step of `opt` with `update` as the kernels take it (see [`BASE_LR`]).
pub fn step_of(opt: Opt, update: Update) -> Step {
    Step {
        opt,
        decay: f32::from_bits(update.decay_bits),
        lr: if update.scheduled {
            SCHEDULED_LR
        } else {
            BASE_LR
        },
        hyper: hyper_of(opt),
        beta_t: BETA_T,
    }
}

/// mu, or beta1, beta2, eps.
pub fn hyper_of(opt: Opt) -> [f32; 3] {
    match opt.state_buffers() {
        2 => ADAM,
        1 => [MOMENTUM, 0.0, 0.0],
        _ => [0.0; 3],
    }
}

/// The CPU reference of epilogue `e` on the CPU's product `v` (f32, row-major `[m, n]`) with the
/// product's error `err` (`2γ_k·S` per element) carried through ([`propagate`]): per output (C,
/// AUX_OUT, m, v) the wanted values and their bounds, empty where the epilogue writes none.
pub fn expected(e: Epi, v: &[f32], err: &[f64], extra: &Extra) -> [Expected; 4] {
    let n = extra.bias.len();
    let mut out: [Expected; 4] = Default::default();
    let at = |i: usize| {
        let aux = extra.aux[i] as f64;
        move |x: f64| -> Outputs {
            match e {
                Epi::Store => Outputs::c(Approx::exact(x)),
                Epi::Act(a) => {
                    // z = x + bias, rounded once: that rounding carried through the activation.
                    let z = x + extra.bias[i % n] as f64;
                    let c = epilogue::act_forward(a, z);
                    let dz = crate::check::U * z.abs();
                    let moved = |d: f64| (epilogue::act_forward(a, z + d).value - c.value).abs();
                    Outputs {
                        c: Some(Approx {
                            value: c.value,
                            slack: c.slack + moved(dz).max(moved(-dz)),
                        }),
                        aux_out: (a == Activation::Gelu).then_some(Approx::rounded(z, 1.0)),
                        ..Outputs::default()
                    }
                }
                Epi::Grad(a) => Outputs::c(epilogue::act_backward(a, x, aux)),
                Epi::Logits => Outputs {
                    aux_out: Some(Approx::rounded(x + extra.bias[i % n] as f64, 1.0)),
                    ..Outputs::default()
                },
                Epi::Update(o, u) => {
                    let moment = |j: usize| {
                        (extra.state.moments.get(j)).map_or(0.0, |m: &Vec<f32>| m[i] as f64)
                    };
                    epilogue::step(&step_of(o, u), aux, x, moment(0), moment(1))
                }
                Epi::SquaredError => {
                    let (s, d) = (extra.coef as f64, x - aux);
                    Outputs {
                        c: Some(Approx::rounded(s * d, 2.0)),
                        aux_out: Some(Approx::rounded(d * d, 3.0)),
                        ..Outputs::default()
                    }
                }
                Epi::AbsError => {
                    let (s, d) = (extra.coef as f64, x - aux);
                    Outputs {
                        c: Some(Approx::exact(s * epilogue::sign(d))),
                        aux_out: Some(Approx::rounded(d.abs(), 1.0)),
                        ..Outputs::default()
                    }
                }
                Epi::Bias => Outputs::c(Approx::rounded(x + extra.bias[i % n] as f64, 2.0)),
                Epi::Sum => Outputs {
                    aux_out: Some(Approx::rounded(aux + x, 2.0)),
                    ..Outputs::default()
                },
            }
        }
    };
    for i in 0..v.len() {
        let w = propagate(at(i), v[i] as f64, err[i]);
        for (o, w) in out.iter_mut().zip(w) {
            if let Some((want, bound)) = w {
                o.0.push(want);
                o.1.push(bound);
            }
        }
    }
    out
}

/// The wanted values of one output and the bound of each.
pub type Expected = (Vec<f64>, Vec<f64>);

/// The names of the outputs [`expected`] returns, in its order.
pub const OUTPUTS: [&str; 4] = ["C", "AUX_OUT", "m", "v"];

/// The outputs `got` (in [`OUTPUTS`]' order, an empty one where the kernel wrote none) beside
/// what [`expected`] wants of them, for those it wants something of.
pub fn compare(got: Vec<Vec<f32>>, wanted: [Expected; 4]) -> Vec<Compared> {
    (got.into_iter().zip(wanted).zip(OUTPUTS))
        .filter(|((_, (want, _)), _)| !want.is_empty())
        .map(|((got, (want, bound)), name)| Compared {
            name,
            got,
            want,
            bound,
        })
        .collect()
}

impl Compared {
    /// The worst `|got - want| / bound` of this output (see [`worst_ratio`]).
    pub fn ratio(&self) -> f64 {
        worst_ratio(&self.got, &self.want, &self.bound)
    }
}

/// The inputs of epilogue `e` besides A and B on an `[m, n]` output, from `r`: AUX holds the
/// activation's output (its input for GELU) with exact zeros among it, y, the old weights or the
/// sum so far; the optimizer's moments are random (v non-negative).
pub fn extra_inputs(e: Epi, (m, n): (usize, usize), r: &mut rand_chacha::ChaCha8Rng) -> Extra {
    let mut aux = Matrix::randn(m, n, r).data;
    if let Epi::Grad(a) = e {
        for (i, x) in aux.iter_mut().enumerate() {
            let z = if i % 5 == 0 { 0.0 } else { 2.0 * *x };
            *x = if a == Activation::Gelu {
                z
            } else {
                cpu::act_forward(a, z)
            };
        }
    }
    let bias = Matrix::randn(1, n, r).data;
    let opt = match e {
        Epi::Update(o, _) => o,
        _ => Opt::Sgd,
    };
    Extra {
        aux,
        bias,
        coef: match e {
            Epi::AbsError => Loss::L1.grad_coef(m, n),
            _ => Loss::Sse.grad_coef(m, n),
        },
        state: step_state(opt, (m, n), r),
    }
}

/// The optimizer's state before a step of `opt` on a `[rows, cols]` parameter, from `r`: random
/// moments (v non-negative), the hyperparameters and counters of [`step_of`].
pub fn step_state(
    opt: Opt,
    (rows, cols): (usize, usize),
    r: &mut rand_chacha::ChaCha8Rng,
) -> StepState {
    let moments = (0..opt.state_buffers())
        .map(|j| {
            let x = Matrix::randn(rows, cols, r).data;
            if j == 1 {
                x.iter().map(|v| v * v).collect()
            } else {
                x
            }
        })
        .collect();
    StepState {
        hyper: hyper_of(opt),
        moments,
        beta_t: BETA_T,
        scheduled_lr: SCHEDULED_LR,
    }
}

/// What one [`check_matmul`] found: each output the epilogue writes beside what it should be,
/// and what else failed (padding written, C written where it must stay untouched).
pub struct MatmulCheck {
    pub outputs: Vec<Compared>,
    /// The width of the outputs (to name an element).
    pub n: usize,
    pub note: Option<String>,
}

impl MatmulCheck {
    /// The worst `|gpu - cpu| / bound` over every output's elements; infinite where something
    /// else failed.
    pub fn ratio(&self) -> f64 {
        match self.note {
            Some(_) => f64::INFINITY,
            None => (self.outputs.iter()).fold(0.0, |r, c| r.max(c.ratio())),
        }
    }

    /// Why it failed: the note, or the element furthest outside its bound (`C[r, c] = got,
    /// want w ± b`); None where it passed.
    pub fn failure(&self) -> Option<String> {
        self.note.clone().or_else(|| {
            (self.outputs.iter())
                .find(|c| c.ratio() > 1.0)
                .and_then(|c| worst_element(c, self.n))
        })
    }
}

/// What the product of epilogue `e` reads besides A and B, from `extra`: C's content before
/// (`poison`, or the weights before an update), AUX, AUX_OUT, the bias, the step's state, and
/// the scalar (the base rate of an update, the loss gradient's factor).
pub fn epilogue_inputs<'a>(e: Epi, extra: &'a Extra, poison: &'a [f32]) -> MatmulInputs<'a> {
    let mut inputs = MatmulInputs::new(poison);
    match e {
        Epi::Store | Epi::Logits | Epi::Act(_) | Epi::Bias => {}
        Epi::Grad(Activation::Gelu) => inputs.aux_out = Some(&extra.aux),
        Epi::Grad(_) | Epi::SquaredError | Epi::AbsError => inputs.aux = Some(&extra.aux),
        Epi::Update(..) => {
            inputs.c_init = &extra.aux;
            inputs.step = Some(&extra.state);
        }
        Epi::Sum => inputs.aux_out = Some(&extra.aux),
    }
    if e.has_bias() {
        inputs.bias = Some(&extra.bias);
    }
    inputs.scalar = match e {
        Epi::Update(..) => BASE_LR,
        Epi::SquaredError | Epi::AbsError => extra.coef,
        _ => 0.0,
    };
    inputs
}

/// `check_matmul`: the product of `key` with epilogue `e` on `dims` (`(m, n, k)`), inputs drawn
/// from `seed`, its outputs poisoned with NaN first, against the CPU's product carried through
/// the epilogue's f64 reference ([`expected`]).
pub async fn check_matmul(
    ctx: &GpuContext,
    key: MatmulKey,
    e: Epi,
    dims: (usize, usize, usize),
    seed: u64,
) -> Result<MatmulCheck> {
    let (m, n, k) = dims;
    let (a, b) = random_inputs(key, dims, seed);
    let (v, scale) = cpu_reference(key, &a, &b, dims);
    let g2 = two_gamma(k);
    let err: Vec<f64> = scale.iter().map(|&s| g2 * s as f64).collect();
    let extra = extra_inputs(e, (m, n), &mut seeded(seed ^ 0x5eed));
    let poison = vec![f32::NAN; m * n];
    let inputs = epilogue_inputs(e, &extra, &poison);
    let out = run_matmul(ctx, key, &a, &b, dims, inputs).await?;
    let untouched = out.c.iter().all(|x| x.is_nan());
    let mut got = vec![out.c, out.aux_out];
    got.extend(out.moments);
    let outputs = compare(got, expected(e, &v, &err, &extra));
    let mut note = (!out.padding_zero).then(|| "non-zero padding left in the output".to_string());
    // What must stay untouched: C while summing and for the logits (its NaN poison).
    if matches!(e, Epi::Sum | Epi::Logits) && !untouched {
        note = Some("C written where it must stay untouched".into());
    }
    Ok(MatmulCheck { outputs, n, note })
}

/// The plain product's bound in one call, for products run elsewhere (the naive kernel of the
/// bench): the worst `|got - want| / (2γ_k·scale + FTZ)` (`want` the CPU's product, `scale`
/// `|A|·|B|`), as [`expected`] bounds [`Epi::Store`].
pub fn product_ratio(got: &[f32], want: &[f32], scale: &[f32], k: usize) -> f64 {
    let g2 = two_gamma(k);
    let want64: Vec<f64> = want.iter().map(|&w| w as f64).collect();
    let bound: Vec<f64> = (scale.iter())
        .map(|&s| g2 * s as f64 + epilogue::FTZ)
        .collect();
    worst_ratio(got, &want64, &bound)
}

/// `"C[r, c] = got, want w ± b"` for the element of `c` (an output `n` wide) furthest outside
/// its bound.
fn worst_element(c: &Compared, n: usize) -> Option<String> {
    let ratio = |i: usize| super::ratio(c.got[i], c.want[i], c.bound[i]);
    let i = (0..c.got.len()).max_by(|&a, &b| ratio(a).total_cmp(&ratio(b)))?;
    Some(format!(
        "{}[{}, {}] = {}, want {:.9e} ± {:.2e}",
        c.name,
        i / n,
        i % n,
        c.got[i],
        c.want[i],
        c.bound[i]
    ))
}
