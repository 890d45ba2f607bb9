//! The error bounds of the per-element checks: `2γ_k` of a product, and each epilogue's bound
//! carried through its derivative (see the module description of `verify`).

use super::*;

/// The worst `|got - want| / bound` (0/0 counts as 0; a NaN, or a length mismatch, as infinite).
pub fn worst_ratio(got: &[f32], want: &[f64], bound: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::INFINITY;
    }
    let mut worst = 0.0f64;
    for ((&g, &w), &b) in got.iter().zip(want).zip(bound) {
        let d = (g as f64 - w).abs();
        let r = if d == 0.0 { 0.0 } else { d / b };
        if r.is_nan() {
            return f64::INFINITY;
        }
        worst = worst.max(r);
    }
    worst
}

pub(super) use crate::check::{two_gamma, U};

/// The matmul epilogues the suite checks, each with what it needs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Epi {
    Store,
    Relu,
    Mask,
    Sgd,
    SquaredError,
    AbsError,
    Bias,
    /// A shared layer's gradient summed: ACC_IN and ACC_OUT (the sum so far plus the product).
    Sum,
}

impl Epi {
    pub(super) const ALL: [Epi; 8] = [
        Epi::Store,
        Epi::Relu,
        Epi::Mask,
        Epi::Sgd,
        Epi::SquaredError,
        Epi::AbsError,
        Epi::Bias,
        Epi::Sum,
    ];

    pub(super) fn name(self) -> &'static str {
        match self {
            Epi::Store => "store",
            Epi::Relu => "relu",
            Epi::Mask => "mask",
            Epi::Sgd => "sgd",
            Epi::SquaredError => "sq-err",
            Epi::AbsError => "abs-err",
            Epi::Bias => "bias",
            Epi::Sum => "sum",
        }
    }

    /// The mode and transposes training uses this epilogue with.
    pub(super) fn key(self, layout: Layout, block: Block, trans: (bool, bool)) -> MatmulKey {
        let mode = match self {
            Epi::Store | Epi::Bias | Epi::Sum => Mode::Store,
            Epi::Relu => Mode::Activate,
            Epi::Mask => Mode::ActivationGrad,
            Epi::Sgd => Mode::Update,
            Epi::SquaredError => Mode::SquaredError,
            Epi::AbsError => Mode::AbsError,
        };
        MatmulKey {
            trans_a: trans.0,
            trans_b: trans.1,
            mode,
            block,
            bias: self == Epi::Bias,
            opt: Opt::Sgd,
            update: Update::default(),
            act: Act::default(),
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
    /// the others (x·w forward, g·wᵀ for the mask, aᵀ·g for the weight update and the sum).
    pub(super) fn transposes(self) -> &'static [(bool, bool)] {
        match self {
            Epi::Store => &[(false, false), (true, false), (false, true), (true, true)],
            Epi::Mask => &[(false, true)],
            Epi::Sgd | Epi::Sum => &[(true, false)],
            _ => &[(false, false)],
        }
    }
}

/// What one epilogue check compares: the GPU's output, the CPU's, and the bound per element.
pub(super) struct Compared {
    pub(super) got: Vec<f32>,
    pub(super) want: Vec<f64>,
    pub(super) bound: Vec<f64>,
}

/// The CPU's values of an output and the bound of each element.
pub(super) type Expected = (Vec<f64>, Vec<f64>);

/// The CPU reference of epilogue `e` on the CPU's product `v` (f32, row-major `[m, n]`) and its
/// bound from `err` (`2γ_k·S` per element): `(want, bound)` for C, and for the error modes and
/// the sum also for AUX_OUT.
pub(super) fn epilogue_bound(
    e: Epi,
    v: &[f32],
    err: &[f64],
    extra: &Extra,
) -> (Expected, Option<Expected>) {
    let tiny = f64::MIN_POSITIVE;
    let each =
        |f: &dyn Fn(usize) -> (f64, f64)| -> (Vec<f64>, Vec<f64>) { (0..v.len()).map(f).unzip() };
    match e {
        Epi::Store => (each(&|i| (v[i] as f64, err[i])), None),
        Epi::Relu => (each(&|i| ((v[i] as f64).max(0.0), err[i])), None),
        Epi::Mask => (
            each(&|i| {
                if extra.aux[i] > 0.0 {
                    (v[i] as f64, err[i])
                } else {
                    (0.0, tiny)
                }
            }),
            None,
        ),
        Epi::Sgd => (
            each(&|i| {
                let (old, step) = (extra.aux[i] as f64, extra.lr as f64 * v[i] as f64);
                let want = old - step;
                (
                    want,
                    extra.lr as f64 * err[i] + 2.0 * U * (old.abs() + step.abs()) + tiny,
                )
            }),
            None,
        ),
        Epi::SquaredError => {
            let s = extra.coef as f64;
            let d = |i: usize| v[i] as f64 - extra.aux[i] as f64;
            let derr = |i: usize| err[i] + U * d(i).abs();
            let g = each(&|i| (s * d(i), s * derr(i) + U * (s * d(i)).abs() + tiny));
            let sq = each(&|i| {
                let d2 = d(i) * d(i);
                (
                    d2,
                    2.0 * d(i).abs() * derr(i) + derr(i) * derr(i) + 2.0 * U * d2 + tiny,
                )
            });
            (g, Some(sq))
        }
        Epi::AbsError => {
            let s = extra.coef as f64;
            let d = |i: usize| v[i] as f64 - extra.aux[i] as f64;
            let derr = |i: usize| err[i] + U * d(i).abs();
            // Where d is within its own error of 0, its sign may come out either way.
            let g = each(&|i| {
                if d(i).abs() <= derr(i) {
                    (0.0, s.abs() + tiny)
                } else {
                    (s * d(i).signum(), tiny)
                }
            });
            let abs = each(&|i| (d(i).abs(), derr(i) + tiny));
            (g, Some(abs))
        }
        Epi::Bias => {
            let n = extra.bias.len();
            (
                each(&|i| {
                    let want = v[i] as f64 + extra.bias[i % n] as f64;
                    (want, err[i] + 2.0 * U * want.abs() + tiny)
                }),
                None,
            )
        }
        Epi::Sum => {
            let sum = each(&|i| {
                let want = extra.aux[i] as f64 + v[i] as f64;
                (want, err[i] + 2.0 * U * want.abs() + tiny)
            });
            // C is not written while summing: its NaN poison stays (not compared).
            ((Vec::new(), Vec::new()), Some(sum))
        }
    }
}

/// The inputs an epilogue reads besides A and B.
pub(super) struct Extra {
    /// AUX (y, the activation, the old weights) or the sum so far, `[m, n]`.
    pub(super) aux: Vec<f32>,
    pub(super) bias: Vec<f32>,
    pub(super) lr: f32,
    pub(super) coef: f32,
}
