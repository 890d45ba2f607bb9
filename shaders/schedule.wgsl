// The learning rate of an optimizer step, from the step counter the GPU keeps: the f32
// operations of `LrSchedule::lr` (src/schedule.rs), which says what each schedule is (PyTorch's
// StepLR, CosineAnnealingLR, and LinearLR as a warm-up before them). Put in front of
// loss_reduce.wgsl, which computes each step's rate once for the updates to read. The schedule's
// words: [kind, every or t_max, bits of gamma or min_lr, warm-up steps, bits of the warm-up's
// start factor, bits of the base rate]; kind 0 constant, 1 step, 2 cosine.

// x^k by squaring.
fn sched_powi(x: f32, k: u32) -> f32 {
    var result = 1.0;
    var base = x;
    var e = k;
    while (e > 0u) {
        if ((e & 1u) == 1u) {
            result *= base;
        }
        base *= base;
        e = e >> 1u;
    }
    return result;
}

// cos(pi n / t): n reduced modulo 2t, folded onto [0, pi/2], a Taylor polynomial to x^14.
fn sched_cos_pi_ratio(n: u32, t: u32) -> f32 {
    var r = f32(n % (2u * t)) / f32(t);
    if (r > 1.0) {
        r = 2.0 - r;
    }
    var sign = 1.0;
    if (r > 0.5) {
        r = 1.0 - r;
        sign = -1.0;
    }
    let x = 3.14159274 * r;
    let x2 = x * x;
    var p = -1.0 / 87178291200.0;
    p = p * x2 + 1.0 / 479001600.0;
    p = p * x2 - 1.0 / 3628800.0;
    p = p * x2 + 1.0 / 40320.0;
    p = p * x2 - 1.0 / 720.0;
    p = p * x2 + 1.0 / 24.0;
    p = p * x2 - 0.5;
    p = p * x2 + 1.0;
    return sign * p;
}

// The rate of step n (0-based) for the base rate lr.
fn scheduled_lr(lr: f32, step: u32, kind: u32, a: u32, b: f32, warm: u32, start: f32) -> f32 {
    var n = step;
    if (warm > 0u) {
        if (n < warm) {
            return lr * (start + (1.0 - start) * (f32(n) / f32(warm)));
        }
        n -= warm;
    }
    switch kind {
        case SCHED_STEP: { return lr * sched_powi(b, n / a); }
        case SCHED_COSINE: { return b + (lr - b) * (0.5 * (1.0 + sched_cos_pi_ratio(n, a))); }
        default: { return lr; }
    }
}
