// The optimizer step of one vec4 of parameters, shared by the weight update (matmul.wgsl's MODE 3
// epilogue) and the bias update (bias_update.wgsl): this file is put in front of both. The order
// of operations is the CPU's `optimizer_update`, so the two paths stay within rounding:
//   OPT 0 sgd       p = p - lr*g
//   OPT 1 momentum  m = mu*m + g; p = p - lr*m                (PyTorch's SGD with momentum)
//   OPT 2 nesterov  m = mu*m + g; p = p - lr*(g + mu*m)
//   OPT 3 adam      m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
//                   p = p - (lr / (1 - b1^t)) * (m / (sqrt(v) / sqrt(1 - b2^t) + eps))
//   OPT 4 adamw     p = p*(1 - lr*WD), then adam's step (PyTorch's AdamW: decoupled decay)
// The step's scalars come from the model's slot of step counters (`counters`, loss_reduce's
// state, at word `count_base`), so that one dispatch steps many models of a sweep, each with its
// own (a lone run is model 0): the step's learning rate (word 5: loss_reduce computes it once per
// step from the schedule, schedule.wgsl, also where the rate is constant), mu or b1 (word 16), b2
// (word 17), eps (word 18) and the weight decay WD (word 19); b1^t and b2^t at this step (words 2
// and 3) are kept on the GPU by loss_reduce.wgsl. With a weight decay, every OPT but adamw first
// adds it to the gradient, g = g + WD*p (PyTorch's weight_decay of SGD and Adam).
//
// The state lives at the same bindings in every kernel that includes this file: one buffer with
// m (momentum buffer or Adam's first moment) in the layout of the parameters and, for Adam, v (the
// second moment) after it in the same layout (one binding rather than two, so that the buffer
// layout's matmul kernel binds 8 storage buffers, WebGPU's default limit per stage); with many
// models, every model's m, then every model's v, model k's at `opt_base` (set by the including
// kernel). The counters (32 words, see loss_reduce.wgsl): [epoch in chunk, step t, bits of b1^t,
// bits of b2^t, the run's step, bits of the step's learning rate, b1 and b2 of the powers, the
// schedule's 6 words, _, _, mu or b1, b2, eps, WD, ...].

override OPT: u32 = OPT_SGD;

// The including kernel sets these from its model (workgroup_id.z) before any step.
var<private> count_base: u32;
var<private> opt_base: u32;

@group(0) @binding(7) var<storage, read_write> opt_state: array<vec4<f32>>;
@group(0) @binding(8) var<storage, read> counters: array<u32>;

fn counter_f32(word: u32) -> f32 {
    return bitcast<f32>(counters[count_base + word]);
}

// The parameters p stepped by their gradient g; the state at index i of the model (opt_base + i)
// is read and written back.
fn optimizer_apply(p: vec4<f32>, g0: vec4<f32>, i0: u32) -> vec4<f32> {
    let i = opt_base + i0;
    let lr = counter_f32(5u);
    let hyper = vec3<f32>(counter_f32(16u), counter_f32(17u), counter_f32(18u));
    let wd = counter_f32(19u);
    var g = g0;
    if (wd != 0.0 && OPT != OPT_ADAMW) {
        g = g0 + wd * p;
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
                p0 = p * (1.0 - lr * wd);
            }
            let b1 = hyper.x;
            let b2 = hyper.y;
            let b1t = counter_f32(2u);
            let b2t = counter_f32(3u);
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
