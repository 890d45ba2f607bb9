// The activation between layers and its backward pass, per vec4, in the f32 operations of the
// CPU's `act_forward` and `act_backward` (src/cpu/activation.rs). Put in front of matmul.wgsl, whose
// MODE 1 epilogue applies act_forward and MODE 2 epilogue act_backward.
//
//   ACT 0 none        a = z                               g
//   ACT 1 relu        a = max(z, 0)                       g where a > 0, else 0
//   ACT 2 leaky-relu  a = z if z > 0 else SLOPE*z         g where a > 0, else SLOPE*g (SLOPE >= 0)
//   ACT 3 tanh        a = tanh(z)                         g*(1 - a*a)
//   ACT 4 sigmoid     a = 1/(1 + exp(-z))                 g*(a*(1 - a))
//   ACT 5 gelu        a = z*Phi(z)                        g*(Phi(z) + z*phi(z)), from z
//
// The backward pass reads the layer's output a (AUX), except GELU, whose output does not give
// back its input: its forward epilogue also writes z to AUX_OUT and its backward reads it there.
// WGSL has no erf: Phi(z) = erfc(-z/sqrt(2))/2 comes from the Chebyshev fit of erfc of Numerical
// Recipes (fractional error below 1.2e-7 for every argument), on |z| so that the lower tail keeps
// its relative precision. tanh is written out too (the builtin's precision and its overflow for
// large |z| are left to each implementation by WebGPU).

override ACT: u32 = ACT_RELU;
override SLOPE: f32 = 0.0;

fn act_tanh(z: vec4<f32>) -> vec4<f32> {
    let x = abs(z);
    let x2 = z * z;
    // z - z^3/3 + 2z^5/15 - 17z^7/315 + 62z^9/2835 below |z| = 1/4
    let p = ((((62.0 / 2835.0) * x2 - 17.0 / 315.0) * x2 + 2.0 / 15.0) * x2 - 1.0 / 3.0) * x2;
    let small = z + z * p;
    let t = exp(-2.0 * x);
    let r = (1.0 - t) / (1.0 + t);
    return select(select(r, -r, z < vec4<f32>(0.0)), small, x < vec4<f32>(0.25));
}

// erfc(x) for x >= 0.
fn erfc_pos(x: vec4<f32>) -> vec4<f32> {
    let t = 1.0 / (1.0 + 0.5 * x);
    var p = vec4<f32>(0.17087277);
    p = p * t - 0.82215223;
    p = p * t + 1.48851587;
    p = p * t - 1.13520398;
    p = p * t + 0.27886807;
    p = p * t - 0.18628806;
    p = p * t + 0.09678418;
    p = p * t + 0.37409196;
    p = p * t + 1.00002368;
    p = p * t - 1.26551223;
    return t * exp(p - x * x);
}

// The standard normal CDF.
fn normal_cdf(z: vec4<f32>) -> vec4<f32> {
    let e = 0.5 * erfc_pos(abs(z) * 0.70710677);
    return select(1.0 - e, e, z < vec4<f32>(0.0));
}

fn act_forward(z: vec4<f32>) -> vec4<f32> {
    switch ACT {
        case ACT_RELU: { return max(z, vec4<f32>(0.0)); }
        case ACT_LEAKY_RELU: { return select(SLOPE * z, z, z > vec4<f32>(0.0)); }
        case ACT_TANH: { return act_tanh(z); }
        case ACT_SIGMOID: { return 1.0 / (1.0 + exp(-z)); }
        case ACT_GELU: { return z * normal_cdf(z); }
        default: { return z; }
    }
}

// g through the activation, from aux: the output a, or z for GELU.
fn act_backward(g: vec4<f32>, aux: vec4<f32>) -> vec4<f32> {
    switch ACT {
        case ACT_RELU: { return select(vec4<f32>(0.0), g, aux > vec4<f32>(0.0)); }
        case ACT_LEAKY_RELU: { return select(SLOPE * g, g, aux > vec4<f32>(0.0)); }
        case ACT_TANH: { return g * (1.0 - aux * aux); }
        case ACT_SIGMOID: { return g * (aux * (1.0 - aux)); }
        case ACT_GELU: {
            let pdf = exp(-0.5 * (aux * aux)) * 0.3989423;
            return g * (normal_cdf(aux) + aux * pdf);
        }
        default: { return g; }
    }
}
