//! The CPU twin of `shaders/activation.wgsl`: each activation forward and backward, in the
//! kernel's f32 operations.

use crate::job::Activation;

/// The activation of one pre-activation value `z` (see [`Activation`]), in f32 as `act_forward`
/// in `shaders/activation.wgsl`.
pub fn act_forward(act: Activation, z: f32) -> f32 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu(slope) => {
            if z > 0.0 {
                z
            } else {
                slope * z
            }
        }
        Activation::Tanh => tanh(z),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Gelu => z * normal_cdf(z),
        Activation::None => z,
    }
}

/// The gradient `g` through the activation, from `aux`: the activation's output for every kind
/// but GELU, whose input it is (see [`Activation::needs_input`]); as `act_backward` in
/// `shaders/activation.wgsl`.
pub fn act_backward(act: Activation, g: f32, aux: f32) -> f32 {
    match act {
        Activation::Relu => {
            if aux > 0.0 {
                g
            } else {
                0.0
            }
        }
        Activation::LeakyRelu(slope) => {
            if aux > 0.0 {
                g
            } else {
                slope * g
            }
        }
        Activation::Tanh => g * (1.0 - aux * aux),
        Activation::Sigmoid => g * (aux * (1.0 - aux)),
        Activation::Gelu => {
            // d/dz z·Φ(z) = Φ(z) + z·φ(z)
            let pdf = (-0.5 * (aux * aux)).exp() * FRAC_1_SQRT_2PI;
            g * (normal_cdf(aux) + aux * pdf)
        }
        Activation::None => g,
    }
}

/// `1 / sqrt(2π)`
const FRAC_1_SQRT_2PI: f32 = 0.398_942_3;

/// `tanh(z)`: `(1 - e^-2|z|) / (1 + e^-2|z|)` with `z`'s sign, and below |z| = 1/4 its Taylor
/// series to z⁹ (where the quotient would lose relative precision to cancellation); relative
/// error below 3e-7 (tested against f64). Not the WGSL builtin, whose precision and overflow
/// behaviour WebGPU leaves to the implementation.
pub fn tanh(z: f32) -> f32 {
    let x = z.abs();
    if x < 0.25 {
        let x2 = z * z;
        // z - z³/3 + 2z⁵/15 - 17z⁷/315 + 62z⁹/2835
        let p = ((((62.0 / 2835.0) * x2 - 17.0 / 315.0) * x2 + 2.0 / 15.0) * x2 - 1.0 / 3.0) * x2;
        return z + z * p;
    }
    let t = (-2.0 * x).exp();
    let r = (1.0 - t) / (1.0 + t);
    if z < 0.0 {
        -r
    } else {
        r
    }
}

/// `erfc(x)` for `x >= 0`: the Chebyshev fit of Numerical Recipes (`erfcc`), fractional error
/// below 1.2e-7 everywhere, in f32 (as `erfc_pos` in `shaders/activation.wgsl`: WGSL has no
/// erf); f32 rounding adds ~3e-7 and, through `x²` in the exponent, ~1.2e-7·x² (tested: within
/// `4e-7 + 1.2e-7·x²` relative of f64 for x < 9, where erfc is 4e-37).
// The fit's coefficients as published (and as in the WGSL, so both round them alike).
#[allow(clippy::excessive_precision)]
pub fn erfc_pos(x: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.5 * x);
    let mut p = 0.170_872_77f32;
    p = p * t - 0.822_152_23;
    p = p * t + 1.488_515_87;
    p = p * t - 1.135_203_98;
    p = p * t + 0.278_868_07;
    p = p * t - 0.186_288_06;
    p = p * t + 0.096_784_18;
    p = p * t + 0.374_091_96;
    p = p * t + 1.000_023_68;
    p = p * t - 1.265_512_23;
    t * (p - x * x).exp()
}

/// The standard normal CDF `Φ(z) = erfc(-z/√2) / 2`, through [`erfc_pos`] on `|z|/√2` so that the
/// lower tail keeps its relative precision.
pub fn normal_cdf(z: f32) -> f32 {
    let e = 0.5 * erfc_pos(z.abs() * std::f32::consts::FRAC_1_SQRT_2);
    if z < 0.0 {
        e
    } else {
        1.0 - e
    }
}

/// `a = act(a)` in place over a hidden layer's pre-activations, keeping them in `z` (the same
/// shape) for the backward pass where that needs them (GELU); `z` is empty where nothing is kept
/// (the other kinds, and a forward pass alone).
pub fn activation_forward(a: &mut [f32], z: &mut [f32], act: Activation) {
    if act.needs_input() && !z.is_empty() {
        z.copy_from_slice(a);
    }
    for v in a {
        *v = act_forward(act, *v);
    }
}

/// `g` through the activation, from `aux`: the layer's output, or for GELU its input (see
/// [`act_backward`]).
pub fn activation_backward(g: &mut [f32], aux: &[f32], act: Activation) {
    for (g, &a) in g.iter_mut().zip(aux) {
        *g = act_backward(act, *g, a);
    }
}
