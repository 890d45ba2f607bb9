//! The error bounds of the per-element checks: `2γ_k` of a product, and each epilogue's bound
//! carried through its derivative (see the module description of `verify`).

use super::*;

pub(super) use crate::check::epilogue::{self, propagate, Approx, Outputs, Step};
pub(super) use crate::check::{two_gamma, worst_ratio};

/// The settings of every optimizer step the suite checks, chosen so that each term matters: ε
/// is a fifth of Adam's denominator, β1 ≠ β2, μ, the decay and the scheduled rate (a quarter of
/// the base rate) each move the result by more than 1% of its size.
pub(super) const BASE_LR: f32 = 0.25;
pub(super) const SCHEDULED_LR: f32 = 0.0625;
pub(super) const DECAY: f32 = 0.3;
pub(super) const MOMENTUM: f32 = 0.7;
pub(super) const ADAM: [f32; 3] = [0.8, 0.9, 0.5];
/// β1^t and β2^t at step t = 3.
pub(super) const BETA_T: [f32; 2] = [0.512, 0.729];

/// Every activation, in the order the suite checks them.
pub(super) const ACTIVATIONS: [Activation; 6] = [
    Activation::Relu,
    Activation::LeakyRelu(0.01),
    Activation::Tanh,
    Activation::Sigmoid,
    Activation::Gelu,
    Activation::None,
];

/// Every optimizer step of the kernels.
pub(super) const OPTS: [Opt; 5] = [
    Opt::Sgd,
    Opt::Momentum,
    Opt::Nesterov,
    Opt::Adam,
    Opt::AdamW,
];

/// The matmul epilogues the suite checks, each with what it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Epi {
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

pub(super) fn opt_name(opt: Opt) -> &'static str {
    match opt {
        Opt::Sgd => "sgd",
        Opt::Momentum => "momentum",
        Opt::Nesterov => "nesterov",
        Opt::Adam => "adam",
        Opt::AdamW => "adamw",
    }
}

/// `sgd`, `adamw+decay+sched`, ...
pub(super) fn step_name(opt: Opt, update: Update) -> String {
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
pub(super) fn steps(quick: bool) -> Vec<(Opt, Update)> {
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
    pub(super) fn all(quick: bool) -> Vec<Epi> {
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
    pub(super) fn core(self) -> bool {
        match self {
            Epi::Act(a) | Epi::Grad(a) => a == Activation::Relu,
            Epi::Update(o, u) => o == Opt::Sgd && u == Update::default(),
            Epi::Logits => false,
            _ => true,
        }
    }

    pub(super) fn name(self) -> String {
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
    pub(super) fn key(self, layout: Layout, block: Block, trans: (bool, bool)) -> MatmulKey {
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
            bias: self == Epi::Bias,
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

    /// The transposes to check it with: every combination for the plain product, training's for
    /// the others (x·w forward, g·wᵀ for the gradient through an activation, aᵀ·g for the weight
    /// update and the sum).
    pub(super) fn transposes(self) -> &'static [(bool, bool)] {
        match self {
            Epi::Store => &[(false, false), (true, false), (false, true), (true, true)],
            Epi::Grad(_) => &[(false, true)],
            Epi::Update(..) | Epi::Sum => &[(true, false)],
            _ => &[(false, false)],
        }
    }
}

/// What one epilogue check compares: the GPU's output, the CPU's, and the bound per element.
pub(super) struct Compared {
    /// Which output: C, AUX_OUT, m or v.
    pub(super) name: &'static str,
    pub(super) got: Vec<f32>,
    pub(super) want: Vec<f64>,
    pub(super) bound: Vec<f64>,
}

/// The inputs an epilogue reads besides A and B.
pub(super) struct Extra {
    /// AUX (y, the activation's output, the old weights), the sum so far or GELU's kept input,
    /// `[m, n]`.
    pub(super) aux: Vec<f32>,
    pub(super) bias: Vec<f32>,
    /// The loss gradient's factor of the error modes.
    pub(super) coef: f32,
    /// The optimizer's state before an update.
    pub(super) state: crate::gpu::StepState,
}

/// The optimizer step of `opt` with `update` as the kernels take it (see [`BASE_LR`]).
pub(super) fn step_of(opt: Opt, update: Update) -> Step {
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
pub(super) fn hyper_of(opt: Opt) -> [f32; 3] {
    match opt.state_buffers() {
        2 => ADAM,
        1 => [MOMENTUM, 0.0, 0.0],
        _ => [0.0; 3],
    }
}

/// The CPU reference of epilogue `e` on the CPU's product `v` (f32, row-major `[m, n]`) with the
/// product's error `err` (`2γ_k·S` per element) carried through ([`propagate`]): per output (C,
/// AUX_OUT, m, v) the wanted values and their bounds, empty where the epilogue writes none.
pub(super) fn expected(e: Epi, v: &[f32], err: &[f64], extra: &Extra) -> [Expected; 4] {
    let n = extra.bias.len();
    let mut out: [Expected; 4] = Default::default();
    let at = |i: usize| {
        let aux = extra.aux[i] as f64;
        move |x: f64| -> Outputs {
            match e {
                Epi::Store => Outputs::c(Approx::exact(x)),
                Epi::Act(a) => Outputs {
                    c: Some(epilogue::act_forward(a, x)),
                    aux_out: (a == Activation::Gelu).then_some(Approx::exact(x)),
                    ..Outputs::default()
                },
                Epi::Grad(a) => Outputs::c(epilogue::act_backward(a, x, aux)),
                Epi::Logits => Outputs {
                    aux_out: Some(Approx::exact(x)),
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
pub(super) type Expected = (Vec<f64>, Vec<f64>);

/// The names of the outputs [`expected`] returns, in its order.
pub(super) const OUTPUTS: [&str; 4] = ["C", "AUX_OUT", "m", "v"];

/// The outputs `got` (in [`OUTPUTS`]' order, an empty one where the kernel wrote none) beside
/// what [`expected`] wants of them, for those it wants something of.
pub(super) fn compare(got: Vec<Vec<f32>>, wanted: [Expected; 4]) -> Vec<Compared> {
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
    pub(super) fn ratio(&self) -> f64 {
        worst_ratio(&self.got, &self.want, &self.bound)
    }
}
