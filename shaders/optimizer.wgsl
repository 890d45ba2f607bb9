// The optimizer step of one vec4 of parameters, shared by the weight update (matmul.wgsl's MODE 3
// epilogue) and the bias update (bias_update.wgsl): this file is put in front of both. The order
// of operations is the CPU's `optimizer_update`, so the two paths stay within rounding:
//   OPT 0 sgd       p = p - lr*g
//   OPT 1 momentum  m = mu*m + g; p = p - lr*m                (PyTorch's SGD with momentum)
//   OPT 2 nesterov  m = mu*m + g; p = p - lr*(g + mu*m)
//   OPT 3 adam      m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//                   p = p - (lr / (1 - b1^t)) * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
// h holds (mu or b1, b2, eps); b1t, b2t are b1^t and b2^t at this step, kept on the GPU by
// loss_reduce.wgsl.

override OPT: u32 = 0u;

struct OptStep {
    p: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
}

fn optimizer_step(p: vec4<f32>, g: vec4<f32>, m: vec4<f32>, v: vec4<f32>, lr: f32, h: vec3<f32>,
                  b1t: f32, b2t: f32) -> OptStep {
    switch OPT {
        case 1u, 2u: {
            let mu = h.x;
            let m1 = mu * m + g;
            var s = m1;
            if (OPT == 2u) {
                s = g + mu * m1;
            }
            return OptStep(p - lr * s, m1, v);
        }
        case 3u: {
            let b1 = h.x;
            let b2 = h.y;
            let m1 = b1 * m + (1.0 - b1) * g;
            let v1 = b2 * v + (1.0 - b2) * (g * g);
            let step_size = lr / (1.0 - b1t);
            let denom = sqrt(v1) / sqrt(1.0 - b2t) + h.z;
            return OptStep(p - step_size * (m1 / denom), m1, v1);
        }
        default: {
            return OptStep(p - lr * g, m, v);
        }
    }
}
