// The optimizer step of one vec4 of parameters, shared by the weight update (matmul.wgsl's MODE 3
// epilogue) and the bias update (bias_update.wgsl): this file is put in front of both. The order
// of operations is the CPU's `optimizer_update`, so the two paths stay within rounding:
//   OPT 0 sgd       p = p - lr*g
//   OPT 1 momentum  m = mu*m + g; p = p - lr*m                (PyTorch's SGD with momentum)
//   OPT 2 nesterov  m = mu*m + g; p = p - lr*(g + mu*m)
//   OPT 3 adam      m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//                   p = p - (lr / (1 - b1^t)) * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
//   OPT 4 adamw     p = p*(1 - lr*WD), then adam's step (PyTorch's AdamW: decoupled decay)
// h holds (mu or b1, b2, eps); b1^t and b2^t at this step are kept on the GPU by loss_reduce.wgsl.
// With a weight decay WD, every OPT but adamw first adds it to the gradient, g = g + WD*p
// (PyTorch's weight_decay of SGD and Adam). With SCHED the step's learning rate is the schedule's,
// which loss_reduce.wgsl computes once per step (schedule.wgsl) into counters[5], rather than
// every invocation for every element (which cost +65% on the default job on lavapipe).
//
// The state lives at the same bindings in every kernel that includes this file: one buffer with
// m (momentum buffer or Adam's first moment) in the layout of the parameters and, for Adam, v (the
// second moment) after it in the same layout (one binding rather than two, so that the buffer
// layout's matmul kernel binds 8 storage buffers, WebGPU's default limit per stage), and
// loss_reduce's state [epoch in chunk, step t, bits of b1^t, bits of b2^t, the run's step, bits of
// the step's learning rate, _, _, the schedule's words]. Plain SGD at a constant rate reads none
// of them.

override OPT: u32 = OPT_SGD;
override WD: f32 = 0.0;
override SCHED: bool = false;

@group(0) @binding(7) var<storage, read_write> opt_state: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> counters: array<u32>;

// The parameters p stepped by their gradient g; the state at index i is read and written back.
// hyper: (momentum's mu, or Adam's beta1; beta2; eps), as the uniform blocks hold them.
fn optimizer_apply(p: vec4<f32>, g0: vec4<f32>, i: u32, base_lr: f32, hyper: vec3<f32>) -> vec4<f32> {
    var lr = base_lr;
    if (SCHED) {
        lr = bitcast<f32>(counters[5]);
    }
    var g = g0;
    if (WD != 0.0 && OPT != OPT_ADAMW) {
        g = g0 + WD * p;
    }
    switch OPT {
        case OPT_MOMENTUM, OPT_NESTEROV: {
            let mu = hyper.x;
            let m = mu * opt_state[i] + g;
            opt_state[i] = m;
            var s = m;
            if (OPT == OPT_NESTEROV) {
                s = g + mu * m;
            }
            return p - lr * s;
        }
        case OPT_ADAM, OPT_ADAMW: {
            var p0 = p;
            if (OPT == OPT_ADAMW) {
                p0 = p * (1.0 - lr * WD);
            }
            let b1 = hyper.x;
            let b2 = hyper.y;
            let b1t = bitcast<f32>(counters[2]);
            let b2t = bitcast<f32>(counters[3]);
            // v of element i is in the second half of the buffer.
            let iv = i + arrayLength(&opt_state) / 2u;
            let m = b1 * opt_state[i] + (1.0 - b1) * g;
            let v = b2 * opt_state[iv] + (1.0 - b2) * (g * g);
            opt_state[i] = m;
            opt_state[iv] = v;
            let step_size = lr / (1.0 - b1t);
            let denom = sqrt(v) / sqrt(1.0 - b2t) + hyper.z;
            return p0 - step_size * (m / denom);
        }
        default: {
            return p - lr * g;
        }
    }
}
