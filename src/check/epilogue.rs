//! The per-element reference of every epilogue the kernels fuse into a product or a reduction
//! (`shaders/matmul.wgsl`'s modes, `activation.wgsl`, `optimizer.wgsl` and `bias_update.wgsl`'s
//! step): each output in f64 from the product `v`, with the slack a correct f32 evaluation may
//! take (its roundings and the stated precision of each builtin it calls), and [`propagate`],
//! which carries the product's own error `2γ_k·S` through the epilogue by evaluating it at
//! `v ± err`.
//!
//! The slacks, per output (u = 2^-24; WGSL states `exp(x)` within `3 + 2|x|` ulp, `sqrt` and
//! division within 2.5 ulp, the rest correctly rounded):
//! - tanh (`act_tanh`, written out): `8u·|r|` for its few roundings, plus `2t·(3 + 4|z|)u` for
//!   `t = exp(-2|z|)` in `(1 - t)/(1 + t)`;
//! - sigmoid: `s²·e·(3 + 2|z|)u + 4u·s` for `e = exp(-z)`;
//! - GELU's `Φ` (`normal_cdf`, the erfc fit of Numerical Recipes in both the WGSL and here, so
//!   the fit's own 1.2e-7 cancels): the tail `e` within `(50 + 8x²)u` relative (`x = |z|/√2`:
//!   the fit's ten Horner steps, `x²` from a rounded `x` (`6u·x²` of the argument) and `exp` of
//!   an argument `≈ -x²` (`3 + 2x²` ulp)), `Φ = 1 - e` within `2u` more;
//!   `φ = exp(-z²/2)·c` within `(8 + z²)u`;
//! - the optimizer step: every sum and product within `2u` of its terms' magnitudes, Adam's
//!   quotient `m / (√v / √(1-β2^t) + ε)` within `8u` relative plus its inputs' slacks carried
//!   through, the step size `lr / (1 - β1^t)` within `5u`.
//!
//! A dropped term, a swapped operand or a misplaced hyperparameter moves an output by orders of
//! magnitude more, with the hyperparameters the checks use (see `verify`): ε, β1, β2, μ and the
//! decay each change the result by more than 1% of its size.

use super::U;
use crate::gpu::Opt;
use crate::job::Activation;

/// A value and how far (absolutely) a correct f32 evaluation may be from it, not counting the
/// error of its inputs (which [`propagate`] carries through).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Approx {
    pub value: f64,
    pub slack: f64,
}

impl Approx {
    pub fn exact(value: f64) -> Self {
        Approx { value, slack: 0.0 }
    }

    /// `value` within `ulps` units of rounding of itself.
    pub fn rounded(value: f64, ulps: f64) -> Self {
        Approx {
            value,
            slack: ulps * U * value.abs(),
        }
    }
}

/// What an epilogue writes per element: C, AUX_OUT, the optimizer's m and v (None where it
/// writes nothing).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Outputs {
    pub c: Option<Approx>,
    pub aux_out: Option<Approx>,
    pub m: Option<Approx>,
    pub v: Option<Approx>,
}

impl Outputs {
    pub fn c(c: Approx) -> Self {
        Outputs {
            c: Some(c),
            ..Outputs::default()
        }
    }

    pub fn all(&self) -> [Option<Approx>; 4] {
        [self.c, self.aux_out, self.m, self.v]
    }
}

/// A wanted value and its bound: the product's error carried through and the slack.
pub type Wanted = Option<(f64, f64)>;

/// The outputs of `f` at the product `v` (as the CPU computed it) and their bounds, given that the
/// GPU's product may be anywhere within `err` of `v`: the largest change of each output over
/// `v ± err` (the epilogues are monotone between their kinks, and smooth on the scale of `err`),
/// plus its slack and [`FTZ`]. In the order C, AUX_OUT, m, v.
pub fn propagate(f: impl Fn(f64) -> Outputs, v: f64, err: f64) -> [Wanted; 4] {
    let at = f(v).all();
    let lo = f(v - err).all();
    let hi = f(v + err).all();
    let mut out = [None; 4];
    for j in 0..4 {
        if let (Some(a), Some(l), Some(h)) = (at[j], lo[j], hi[j]) {
            let moved = (l.value - a.value).abs().max((h.value - a.value).abs());
            out[j] = Some((a.value, moved + a.slack + FTZ));
        }
    }
    out
}

/// What a result below f32's smallest normal may come out as, absolutely: WGSL lets an
/// implementation flush subnormals to zero.
pub const FTZ: f64 = 2.0 * f32::MIN_POSITIVE as f64;

/// `sign(x)` as WGSL has it: 0 at 0.
pub fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The fit of `erfc(x)`, `x >= 0`, that `activation.wgsl` and the CPU's `erfc_pos` evaluate, in
/// f64 (the fit, not erfc: both paths compute the fit).
#[allow(clippy::excessive_precision)]
fn erfc_fit(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let c = [
        0.17087277,
        -0.82215223,
        1.48851587,
        -1.13520398,
        0.27886807,
        -0.18628806,
        0.09678418,
        0.37409196,
        1.00002368,
        -1.26551223,
    ];
    let p = c[1..].iter().fold(c[0], |p, &k| p * t + k);
    t * (p - x * x).exp()
}

/// `Φ(z)` of the fit and its slack.
fn normal_cdf(z: f64) -> Approx {
    let x = z.abs() * std::f64::consts::FRAC_1_SQRT_2;
    let e = 0.5 * erfc_fit(x);
    // The tail underflows past x ≈ 9.3: flushed to zero there.
    let e_slack = e * (50.0 + 8.0 * x * x) * U + FTZ;
    if z < 0.0 {
        Approx {
            value: e,
            slack: e_slack,
        }
    } else {
        Approx {
            value: 1.0 - e,
            slack: e_slack + 2.0 * U,
        }
    }
}

/// The activation of one pre-activation `z` (`act_forward` in `shaders/activation.wgsl`).
pub fn act_forward(act: Activation, z: f64) -> Approx {
    match act {
        Activation::None => Approx::exact(z),
        Activation::Relu => Approx::exact(z.max(0.0)),
        Activation::LeakyRelu(slope) => {
            if z > 0.0 {
                Approx::exact(z)
            } else {
                Approx::rounded(slope as f64 * z, 1.0)
            }
        }
        Activation::Tanh => {
            let r = z.tanh();
            let x = z.abs();
            let t = (-2.0 * x).exp();
            Approx {
                value: r,
                slack: 8.0 * U * r.abs() + 2.0 * t * (3.0 + 4.0 * x) * U,
            }
        }
        Activation::Sigmoid => {
            let e = (-z).exp();
            let s = 1.0 / (1.0 + e);
            Approx {
                value: s,
                slack: s * s * e * (3.0 + 2.0 * z.abs()) * U + 4.0 * U * s,
            }
        }
        Activation::Gelu => {
            let phi = normal_cdf(z);
            let value = z * phi.value;
            Approx {
                value,
                slack: z.abs() * phi.slack + 2.0 * U * value.abs(),
            }
        }
    }
}

/// The gradient `g` through the activation, from `aux`: the layer's output, or its input for
/// GELU (`act_backward` in `shaders/activation.wgsl`).
pub fn act_backward(act: Activation, g: f64, aux: f64) -> Approx {
    let (h, h_slack) = match act {
        Activation::None => (1.0, 0.0),
        Activation::Relu => (if aux > 0.0 { 1.0 } else { 0.0 }, 0.0),
        Activation::LeakyRelu(slope) => (if aux > 0.0 { 1.0 } else { slope as f64 }, 0.0),
        Activation::Tanh => {
            let h = 1.0 - aux * aux;
            (h, 3.0 * U * (aux * aux + h.abs()))
        }
        Activation::Sigmoid => {
            let h = aux * (1.0 - aux);
            (h, 4.0 * U * aux.abs() * (1.0 + aux.abs()))
        }
        Activation::Gelu => {
            let phi = normal_cdf(aux);
            let pdf = (-0.5 * aux * aux).exp() * 0.398_942_280_401_432_7;
            let h = phi.value + aux * pdf;
            let pdf_slack = aux.abs() * (pdf * (8.0 + aux * aux) * U + FTZ);
            (h, phi.slack + pdf_slack + 2.0 * U * h.abs())
        }
    };
    let value = g * h;
    Approx {
        value,
        slack: g.abs() * h_slack + U * value.abs(),
    }
}

/// One optimizer step's settings, as the kernels take them: the kind, the weight decay, the
/// step's learning rate (the schedule's where there is one), mu or beta1, beta2, eps, and
/// beta1^t, beta2^t.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub opt: Opt,
    pub decay: f32,
    pub lr: f32,
    pub hyper: [f32; 3],
    pub beta_t: [f32; 2],
}

/// The parameter `p` stepped by its gradient `g` with the state `m0` (and `v0` for Adam), as
/// `optimizer_apply` in `shaders/optimizer.wgsl`: the new p, m and v (m and v where kept).
pub fn step(s: &Step, p: f64, g: f64, m0: f64, v0: f64) -> Outputs {
    let u2 = 2.0 * U;
    let (lr, wd) = (s.lr as f64, s.decay as f64);
    let [h0, b2, eps] = s.hyper.map(|h| h as f64);
    let l2 = wd != 0.0 && s.opt != Opt::AdamW;
    let (g, g_slack) = if l2 {
        let g2 = g + wd * p;
        (g2, u2 * (g2.abs() + (wd * p).abs()))
    } else {
        (g, 0.0)
    };
    let moved = |p: f64, d: f64, d_slack: f64| {
        let value = p - d;
        Approx {
            value,
            slack: u2 * (p.abs() + d.abs()) + d_slack,
        }
    };
    match s.opt {
        Opt::Sgd => Outputs::c(moved(p, lr * g, lr * g_slack + U * (lr * g).abs())),
        Opt::Momentum | Opt::Nesterov => {
            let mu = h0;
            let m = mu * m0 + g;
            let m_slack = u2 * ((mu * m0).abs() + g.abs()) + g_slack;
            let (st, st_slack) = if s.opt == Opt::Nesterov {
                let st = g + mu * m;
                (
                    st,
                    u2 * (g.abs() + (mu * m).abs()) + g_slack + mu.abs() * m_slack,
                )
            } else {
                (m, m_slack)
            };
            Outputs {
                c: Some(moved(p, lr * st, lr * st_slack + U * (lr * st).abs())),
                m: Some(Approx {
                    value: m,
                    slack: m_slack,
                }),
                ..Outputs::default()
            }
        }
        Opt::Adam | Opt::AdamW => {
            let b1 = h0;
            let (p0, p0_slack) = if s.opt == Opt::AdamW {
                let p0 = p * (1.0 - lr * wd);
                (p0, 3.0 * U * (p.abs() + (p * lr * wd).abs()))
            } else {
                (p, 0.0)
            };
            let m = b1 * m0 + (1.0 - b1) * g;
            let m_slack = 3.0 * U * ((b1 * m0).abs() + ((1.0 - b1) * g).abs()) + g_slack;
            let v = b2 * v0 + (1.0 - b2) * (g * g);
            let v_slack = 4.0 * U * (b2 * v0).abs()
                + (1.0 - b2) * (4.0 * U * g * g + 2.0 * g.abs() * g_slack);
            let [b1t, b2t] = s.beta_t.map(|b| b as f64);
            let step_size = lr / (1.0 - b1t);
            let root = v.sqrt() / (1.0 - b2t).sqrt();
            let denom = root + eps;
            // √v moves by v_slack/(2√v) (at most √v_slack near 0), then 8u of the divisions and
            // roots.
            let root_slack = (v_slack / (2.0 * v.sqrt())).min(v_slack.sqrt()) / (1.0 - b2t).sqrt()
                + 8.0 * U * root;
            let q = m / denom;
            let q_slack = m_slack / denom + q.abs() * (root_slack + U * denom) / denom;
            let d = step_size * q;
            Outputs {
                c: Some(moved(
                    p0,
                    d,
                    p0_slack + step_size * q_slack + 8.0 * U * d.abs(),
                )),
                m: Some(Approx {
                    value: m,
                    slack: m_slack,
                }),
                v: Some(Approx {
                    value: v,
                    slack: v_slack,
                }),
                aux_out: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The f64 references agree with the CPU twins (f32) within the slack (the twins compute in
    /// the kernels' operations, so a slack that misses them misses a correct GPU too).
    #[test]
    fn references_hold_the_cpu_twins_within_their_slack() {
        let acts = [
            Activation::None,
            Activation::Relu,
            Activation::LeakyRelu(0.01),
            Activation::Tanh,
            Activation::Sigmoid,
            Activation::Gelu,
        ];
        for i in -4000..4000 {
            let z = i as f32 * 0.00731;
            for act in acts {
                let f = act_forward(act, z as f64);
                let cpu = crate::cpu::act_forward(act, z) as f64;
                assert!(
                    (cpu - f.value).abs() <= f.slack + f64::MIN_POSITIVE,
                    "{act:?} forward at {z}: cpu {cpu}, reference {} ± {}",
                    f.value,
                    f.slack
                );
                let aux = if act == Activation::Gelu {
                    z
                } else {
                    crate::cpu::act_forward(act, z)
                };
                let b = act_backward(act, 1.7f32 as f64, aux as f64);
                let cpu = crate::cpu::act_backward(act, 1.7, aux) as f64;
                assert!(
                    (cpu - b.value).abs() <= b.slack + f64::MIN_POSITIVE,
                    "{act:?} backward at {z}: cpu {cpu}, reference {} ± {}",
                    b.value,
                    b.slack
                );
            }
        }
    }

    #[test]
    fn the_step_holds_the_cpu_optimizer_within_its_slack() {
        use crate::job::{Optimizer, OptimizerKind};
        let kinds = [
            (OptimizerKind::Sgd, false, Opt::Sgd),
            (OptimizerKind::Momentum, false, Opt::Momentum),
            (OptimizerKind::Momentum, true, Opt::Nesterov),
            (OptimizerKind::Adam, false, Opt::Adam),
            (OptimizerKind::AdamW, false, Opt::AdamW),
        ];
        for (kind, nesterov, opt) in kinds {
            for decay in [0.0f32, 0.3] {
                let o = Optimizer {
                    kind,
                    nesterov,
                    momentum: 0.7,
                    beta1: 0.8,
                    beta2: 0.9,
                    eps: 0.5,
                    weight_decay: decay,
                };
                let s = Step {
                    opt,
                    decay,
                    lr: 0.0625,
                    hyper: if opt.state_buffers() == 2 {
                        [0.8, 0.9, 0.5]
                    } else {
                        [0.7, 0.0, 0.0]
                    },
                    beta_t: [0.512, 0.729],
                };
                let c = crate::state::OptCounters {
                    t: 3,
                    beta1_t: 0.512,
                    beta2_t: 0.729,
                };
                for i in 0..500 {
                    let x = i as f32;
                    let (p, g, m0) = ((x * 0.37).sin() * 2.0, (x * 0.11).cos() * 9.0, x.sin());
                    let v0 = (x * 0.7).cos().powi(2) * 3.0;
                    let (mut pp, mut mm, mut vv) = ([p], [m0], [v0]);
                    crate::cpu::optimizer_update(&mut pp, &[g], (&mut mm, &mut vv), &o, 0.0625, c);
                    let want = step(&s, p as f64, g as f64, m0 as f64, v0 as f64);
                    let check = |name: &str, got: f32, w: Option<Approx>| {
                        let w = w.expect(name);
                        assert!(
                            (got as f64 - w.value).abs() <= w.slack,
                            "{opt:?} decay {decay} {name} at {i}: cpu {got}, reference {} ± {}",
                            w.value,
                            w.slack
                        );
                    };
                    check("p", pp[0], want.c);
                    if opt.state_buffers() > 0 {
                        check("m", mm[0], want.m);
                    }
                    if opt.state_buffers() > 1 {
                        check("v", vv[0], want.v);
                    }
                }
            }
        }
    }
}
