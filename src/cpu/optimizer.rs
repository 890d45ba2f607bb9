//! The CPU twin of `shaders/optimizer.wgsl`: one optimizer step of a tensor.

use crate::job::{Optimizer, OptimizerKind};
use crate::state::OptCounters;

/// One optimizer step of the parameters `p` from their gradient `g`, with the per-element state
/// `m` (momentum buffer, or Adam's first moment) and `v` (Adam's second moment), at this step's
/// learning rate `lr` (the schedule's), in the order of operations of `shaders/optimizer.wgsl`.
/// With weight decay `wd` (L2, PyTorch's `weight_decay` of SGD and Adam) the gradient is first
/// `g + wd·p`; AdamW decays the parameters instead:
/// - sgd: `p = p - lr·g`
/// - momentum: `m = μ·m + g; p = p - lr·m` (Nesterov: `p = p - lr·(g + μ·m)`)
/// - adam: `m = β1·m + (1-β1)·g; v = β2·v + (1-β2)·g²;
///   p = p - (lr / (1-β1^t))·(m / (sqrt(v) / sqrt(1-β2^t) + eps))`
/// - adamw: `p = p·(1 - lr·wd)`, then adam's step without decay in `g`
pub fn optimizer_update(
    p: &mut [f32],
    g: &[f32],
    (m, v): (&mut [f32], &mut [f32]),
    opt: &Optimizer,
    lr: f32,
    c: OptCounters,
) {
    let wd = opt.weight_decay;
    // L2 decay joins the gradient (every kind but AdamW's decoupled decay).
    let l2 = wd != 0.0 && opt.kind != OptimizerKind::AdamW;
    let grad = |g: f32, p: f32| if l2 { g + wd * p } else { g };
    match opt.kind {
        OptimizerKind::Sgd => {
            for (p, &g) in p.iter_mut().zip(g) {
                *p -= lr * grad(g, *p);
            }
        }
        OptimizerKind::Momentum => {
            let mu = opt.momentum;
            for ((p, &g), m) in p.iter_mut().zip(g).zip(m.iter_mut()) {
                let g = grad(g, *p);
                *m = mu * *m + g;
                let step = if opt.nesterov { g + mu * *m } else { *m };
                *p -= lr * step;
            }
        }
        OptimizerKind::Adam | OptimizerKind::AdamW => {
            let (b1, b2, eps) = (opt.beta1, opt.beta2, opt.eps);
            let step_size = lr / (1.0 - c.beta1_t);
            let bc2_sqrt = (1.0 - c.beta2_t).sqrt();
            let decay = 1.0 - lr * wd;
            let adamw = opt.kind == OptimizerKind::AdamW;
            // Iterators rather than indices, so the loop vectorises (sqrt and division included).
            for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
                let g = grad(g, *p);
                let p0 = if adamw { *p * decay } else { *p };
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * (g * g);
                let denom = v.sqrt() / bc2_sqrt + eps;
                *p = p0 - step_size * (*m / denom);
            }
        }
    }
}
