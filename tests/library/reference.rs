//! An independent float64 reference of one training step (forward, each loss, backward through the
//! ReLUs or without activation), written here with plain loops, checked first against central
//! finite differences of its own loss, then used to check the CPU backend's and the GPU backend's
//! f32 gradients and SGD step on tiny nets, for every loss and activation.
//!
//! Tolerances.
//! - Finite differences in f64 with h = 1e-6: truncation error ~h²·|L'''| ~ 1e-12 relative, and
//!   rounding error ~ε64·|L|/h ~ 2e-10·|L|; the nets here have |L| ~ 10-100 and gradients ~10-100,
//!   so the normwise relative difference should be ~1e-10 (measured 4e-11..2e-10); we require 1e-7
//!   (a 0.1% error in one element, 1e-3, is far outside). No pre-activation is within 1e-3 of the
//!   ReLU's kink (checked), and no error d within 1e-3 of L1's kink at 0, so ±h crosses neither.
//! - f32 against f64: inputs are the same f32 numbers; each product of length k <= 6 adds a
//!   relative error of a few u = 6e-8, and a gradient chains three of them: normwise 1e-5 leaves
//!   ~40x headroom over the measured 2e-8..2.6e-7 (CPU and GPU); a wrong element or mask is off by
//!   far more (1e-2 or more of the gradient's scale).

use crate::common;

use common::{assert_close, assert_close_normwise, gpu_or_skip, max_rel_err, randn};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::GpuBackend;
use gpu_train::init::{HostState, Matrix};
use gpu_train::job::{
    Activation, DynamicDepth, Job, Loss, LrSchedule, Named, Optimizer, OptimizerKind,
};
use gpu_train::schedule::Schedule;

/// A net in f64: `x [b, d0]`, `y [b, dL]`, `w[l] [d_l, d_{l+1}]`, all row-major.
#[derive(Clone)]
struct Net64 {
    layers: Vec<usize>,
    batch: usize,
    act: Activation,
    loss: Loss,
    x: Vec<f64>,
    y: Vec<f64>,
    w: Vec<Vec<f64>>,
    /// Biases, `[d_{l+1}]` each; empty without.
    b: Vec<Vec<f64>>,
    /// The weights applied in order: every layer once, or a dynamic-depth net's shared layer
    /// several times (`Job::applications`).
    apps: Vec<usize>,
}

/// `c[m,n] = a[m,k]·b[k,n]`.
fn mm(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a[i * k + p] * b[p * n + j];
            }
        }
    }
    c
}

/// `c[m,n] = a[k,m]ᵀ·b[k,n]`.
fn mm_tn(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a[p * m + i] * b[p * n + j];
            }
        }
    }
    c
}

/// `c[m,n] = a[m,k]·b[n,k]ᵀ`.
fn mm_nt(a: &[f64], b: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            for p in 0..k {
                c[i * n + j] += a[i * k + p] * b[j * k + p];
            }
        }
    }
    c
}

/// An activation in f64 (erf from libm).
fn act64(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Relu => z.max(0.0),
        Activation::LeakyRelu(s) => {
            if z > 0.0 {
                z
            } else {
                s as f64 * z
            }
        }
        Activation::Tanh => z.tanh(),
        Activation::Sigmoid => 1.0 / (1.0 + (-z).exp()),
        Activation::Gelu => 0.5 * z * (1.0 + libm::erf(z / std::f64::consts::SQRT_2)),
        Activation::None => z,
    }
}

/// Its derivative at the pre-activation `z`.
fn act64_grad(act: Activation, z: f64) -> f64 {
    match act {
        Activation::Relu => (z > 0.0) as u8 as f64,
        Activation::LeakyRelu(s) => {
            if z > 0.0 {
                1.0
            } else {
                s as f64
            }
        }
        Activation::Tanh => 1.0 - z.tanh().powi(2),
        Activation::Sigmoid => {
            let s = 1.0 / (1.0 + (-z).exp());
            s * (1.0 - s)
        }
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + z * pdf
        }
        Activation::None => 1.0,
    }
}

/// `log Σ_j e^(z_j)`, the max subtracted.
fn log_sum_exp(z: &[f64]) -> f64 {
    let m = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    m + z.iter().map(|v| (v - m).exp()).sum::<f64>().ln()
}

/// What the forward pass keeps for the backward pass.
struct Forward {
    /// Pre-activations `z_j = a_j · w_{apps[j]} + b` of the hidden products.
    pre: Vec<Vec<f64>>,
    /// Inputs of each product: `a_0 = x`, `a_{j+1} = act(z_j)`.
    inputs: Vec<Vec<f64>>,
    pred: Vec<f64>,
    loss: f64,
}

impl Net64 {
    fn forward(&self) -> Forward {
        let b = self.batch;
        let mut inputs = vec![self.x.clone()];
        let mut pre = Vec::new();
        let mut pred = Vec::new();
        for (j, &l) in self.apps.iter().enumerate() {
            let (k, n) = (self.layers[l], self.layers[l + 1]);
            let mut z = mm(&inputs[j], &self.w[l], b, n, k);
            if let Some(bias) = self.b.get(l) {
                for (i, v) in z.iter_mut().enumerate() {
                    *v += bias[i % n];
                }
            }
            if j + 1 < self.apps.len() {
                inputs.push(z.iter().map(|&v| act64(self.act, v)).collect());
                pre.push(z);
            } else {
                pred = z;
            }
        }
        let n = pred.len() as f64;
        let d = pred.iter().zip(&self.y).map(|(p, y)| p - y);
        let loss = match self.loss {
            Loss::Sse => d.map(|d| d * d).sum(),
            Loss::HalfSse => 0.5 * d.map(|d| d * d).sum::<f64>(),
            Loss::Mse => d.map(|d| d * d).sum::<f64>() / n,
            Loss::L1 => d.map(f64::abs).sum::<f64>() / n,
            // PyTorch's CrossEntropyLoss with probability targets: the mean over rows of
            // -Σ_j y_j·log_softmax(z)_j.
            Loss::CrossEntropy => {
                let cols = self.layers[self.layers.len() - 1];
                let rows = pred.chunks(cols).zip(self.y.chunks(cols));
                rows.map(|(z, y)| {
                    let lse = log_sum_exp(z);
                    -z.iter().zip(y).map(|(z, y)| y * (z - lse)).sum::<f64>()
                })
                .sum::<f64>()
                    / self.batch as f64
            }
        };
        Forward {
            pre,
            inputs,
            pred,
            loss,
        }
    }

    fn loss(&self) -> f64 {
        self.forward().loss
    }

    /// The loss and the gradients of every parameter (`dL/dw_l` for every layer, then `dL/db_l`),
    /// by backpropagation: a weight applied several times gets the sum over its uses, one not
    /// applied gets zeros.
    fn gradients(&self) -> (f64, Vec<Vec<f64>>) {
        let f = self.forward();
        let b = self.batch;
        let n = f.pred.len() as f64;
        let cols = self.layers[self.layers.len() - 1];
        let mut g: Vec<f64> = match self.loss {
            // d/dz_k of -Σ_j y_j·(z_j - lse(z)) = softmax(z)_k·Σ_j y_j - y_k, over the rows' mean.
            Loss::CrossEntropy => (f.pred.chunks(cols).zip(self.y.chunks(cols)))
                .flat_map(|(z, y)| {
                    let lse = log_sum_exp(z);
                    let ys: f64 = y.iter().sum();
                    (z.iter().zip(y))
                        .map(move |(z, y)| ((z - lse).exp() * ys - y) / b as f64)
                        .collect::<Vec<f64>>()
                })
                .collect(),
            _ => (f.pred.iter().zip(&self.y))
                .map(|(p, y)| {
                    let d = p - y;
                    match self.loss {
                        Loss::Sse => 2.0 * d,
                        Loss::HalfSse => d,
                        Loss::Mse => 2.0 * d / n,
                        Loss::L1 => d.signum() / n,
                        Loss::CrossEntropy => unreachable!(),
                    }
                })
                .collect(),
        };
        let mut dw: Vec<Vec<f64>> = self.w.iter().map(|w| vec![0.0; w.len()]).collect();
        let mut db: Vec<Vec<f64>> = self.b.iter().map(|b| vec![0.0; b.len()]).collect();
        for (j, &l) in self.apps.iter().enumerate().rev() {
            let (k, n) = (self.layers[l], self.layers[l + 1]);
            for (s, v) in dw[l].iter_mut().zip(mm_tn(&f.inputs[j], &g, k, n, b)) {
                *s += v;
            }
            if l < self.b.len() {
                for (c, s) in db[l].iter_mut().enumerate() {
                    *s += (0..b).map(|r| g[r * n + c]).sum::<f64>();
                }
            }
            if j > 0 {
                let mut gp = mm_nt(&g, &self.w[l], b, k, n);
                for (v, &z) in gp.iter_mut().zip(&f.pre[j - 1]) {
                    *v *= act64_grad(self.act, z);
                }
                g = gp;
            }
        }
        dw.extend(db);
        (f.loss, dw)
    }

    /// Every parameter tensor, in the order of `gradients`: weights, then biases.
    fn params_mut(&mut self) -> Vec<&mut Vec<f64>> {
        self.w.iter_mut().chain(self.b.iter_mut()).collect()
    }

    /// The gradient of every parameter (as `gradients` orders them) by central differences with
    /// step `h`.
    fn finite_differences(&self, h: f64) -> Vec<Vec<f64>> {
        let sizes: Vec<usize> = self.w.iter().chain(&self.b).map(Vec::len).collect();
        sizes
            .iter()
            .enumerate()
            .map(|(t, &len)| {
                (0..len)
                    .map(|i| {
                        let mut plus = self.clone();
                        plus.params_mut()[t][i] += h;
                        let mut minus = self.clone();
                        minus.params_mut()[t][i] -= h;
                        (plus.loss() - minus.loss()) / (2.0 * h)
                    })
                    .collect()
            })
            .collect()
    }
}

/// A tiny job and its state drawn from `seed` in f32 (what the backends get), with the same numbers
/// widened to f64 for the reference.
fn tiny(
    layers: &[usize],
    batch: usize,
    seed: u64,
    (activation, loss, bias): (Activation, Loss, bool),
) -> (Job, HostState, Net64) {
    let job = Job {
        layers: layers.to_vec(),
        batch,
        lr: 1e-3,
        epochs: 1,
        seed,
        log_every: 0,
        activation,
        loss,
        bias,
        ..Job::default()
    };
    job.validate().unwrap();
    let mut r = common::rng(seed);
    let mut mat =
        |rows: usize, cols: usize| Matrix::from_vec(rows, cols, randn(&mut r, rows * cols));
    let x = mat(batch, layers[0]);
    let mut y = mat(batch, layers[layers.len() - 1]);
    if loss.is_classification() {
        // Cross-entropy's targets: one-hot rows for odd seeds, probability rows (a softmax) for
        // even ones.
        let cols = y.cols;
        for (r, row) in y.data.chunks_mut(cols).enumerate() {
            if seed % 2 == 1 {
                row.iter_mut().for_each(|v| *v = 0.0);
                row[(r * 7 + seed as usize) % cols] = 1.0;
            } else {
                row.iter_mut().for_each(|v| *v = v.exp());
                let sum: f32 = row.iter().sum();
                row.iter_mut().for_each(|v| *v /= sum);
            }
        }
    }
    let weights: Vec<Matrix> = (0..job.depth())
        .map(|l| {
            let [i, o] = job.weight_shape(l);
            mat(i, o)
        })
        .collect();
    let biases: Vec<Matrix> = if bias {
        (1..layers.len()).map(|l| mat(1, layers[l])).collect()
    } else {
        Vec::new()
    };
    let wide = |m: &Matrix| m.data.iter().map(|&v| v as f64).collect::<Vec<f64>>();
    let net = Net64 {
        layers: layers.to_vec(),
        batch,
        act: activation,
        loss,
        x: wide(&x),
        y: wide(&y),
        w: weights.iter().map(wide).collect(),
        b: biases.iter().map(wide).collect(),
        apps: job.applications(0),
    };
    (
        job,
        HostState {
            x,
            y,
            weights,
            biases,
        },
        net,
    )
}

/// The nets checked: a two-layer net, a three-layer net, and a single linear layer (no ReLU).
const NETS: [(&[usize], usize, u64); 3] = [
    (&[5, 4, 3], 3, 11),
    (&[4, 6, 5, 2], 3, 12),
    (&[3, 2], 2, 13),
];

/// Every activation with mse and cross-entropy, every loss with ReLU and without activation,
/// without and with biases.
fn variants() -> Vec<(Activation, Loss, bool)> {
    let mut v = Vec::new();
    for bias in [false, true] {
        for a in Activation::ALL {
            for &(_, l) in Loss::CHOICES {
                let linear = matches!(a, Activation::Relu | Activation::None);
                if linear || matches!(l, Loss::Mse | Loss::CrossEntropy) {
                    v.push((a, l, bias));
                }
            }
        }
    }
    v
}

fn variant_label(layers: &[usize], batch: usize, (a, l, bias): (Activation, Loss, bool)) -> String {
    let b = if bias { " bias" } else { "" };
    format!("{layers:?} batch {batch} {a} {}{b}", l.name())
}

/// The name of the `t`-th tensor of `gradients` (weights, then biases) of a net with `depth`
/// weights.
fn tensor_name(t: usize, depth: usize) -> String {
    if t < depth {
        format!("w{}", t + 1)
    } else {
        format!("b{}", t - depth + 1)
    }
}

fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn f64_reference_gradients_match_central_finite_differences() {
    for ((layers, batch, seed), variant) in NETS
        .into_iter()
        .flat_map(|n| variants().into_iter().map(move |v| (n, v)))
    {
        let name = variant_label(layers, batch, variant);
        let (_, _, net) = tiny(layers, batch, seed, variant);
        let f = net.forward();
        // Safe distance from the ReLU kinks, and both sides of them exercised (the smooth
        // activations get both signs too).
        for z in &f.pre {
            let min = z.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
            assert!(
                min > 1e-3,
                "{name}: a pre-activation is {min:e} from the kink"
            );
            assert!(z.iter().any(|&v| v < 0.0), "{name}: no ReLU is off");
            assert!(z.iter().any(|&v| v > 0.0), "{name}: no ReLU is on");
        }
        // And from L1's kink at d = 0.
        let min_d = if net.loss.is_classification() {
            1.0
        } else {
            f.pred
                .iter()
                .zip(&net.y)
                .fold(f64::INFINITY, |m, (p, y)| m.min((p - y).abs()))
        };
        assert!(min_d > 1e-3, "{name}: an error is {min_d:e} from 0");
        let (_, grads) = net.gradients();
        let fd = net.finite_differences(1e-6);
        for l in 0..grads.len() {
            let label = format!(
                "{name}: d{} backprop vs finite differences",
                tensor_name(l, net.w.len())
            );
            assert!(
                grads[l].iter().any(|&v| v.abs() > 1e-3),
                "{label}: zero gradient"
            );
            let scale = grads[l].iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let worst = grads[l]
                .iter()
                .zip(&fd[l])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f64::max);
            eprintln!("{label}: normwise relative difference {:e}", worst / scale);
            for (i, (a, b)) in grads[l].iter().zip(&fd[l]).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-7 * scale,
                    "{label}: element {i}: backprop {a:e}, finite differences {b:e}"
                );
            }
        }
    }
}

/// The f64 reference must be able to fail: a gradient with one ReLU mask flipped, or with the
/// transpose dropped, is far outside the finite-difference tolerance.
#[test]
fn finite_difference_check_detects_a_wrong_gradient() {
    let (_, _, net) = tiny(
        NETS[0].0,
        NETS[0].1,
        NETS[0].2,
        (Activation::Relu, Loss::Sse, false),
    );
    let fd = net.finite_differences(1e-6);
    let (_, mut grads) = net.gradients();
    let scale = grads[0].iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let i = grads[0]
        .iter()
        .position(|v| v.abs() > 0.1 * scale)
        .expect("a sizeable element");
    grads[0][i] *= 1.001;
    let worst = grads[0]
        .iter()
        .zip(&fd[0])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(
        worst > 1e-7 * scale,
        "a 0.1% error in one element went unnoticed"
    );
}

/// One backend's f32 loss, gradients and SGD step against the f64 reference, from the same state:
/// the gradients, the weights after one step, and the loss at those weights.
fn check_step_against_f64(
    label: &str,
    backend: &mut dyn Backend,
    job: &Job,
    state: &HostState,
    net: &Net64,
) {
    let (loss64, grads64) = net.gradients();
    let (loss, grads) = backend.gradients().unwrap();
    assert_close(
        &format!("{label}: loss"),
        &[loss],
        &[loss64 as f32],
        1e-5,
        0.0,
    );
    assert_eq!(grads.weights.len(), job.depth());
    assert_eq!(grads.biases.len(), if job.bias { job.depth() } else { 0 });
    let named = grads.named();
    assert_eq!(named.len(), grads64.len());
    for ((name, g), want) in named.iter().zip(&grads64) {
        let want = narrow(want);
        eprintln!("{label}: d{name} {:e}", max_rel_err(&g.data, &want));
        assert_close_normwise(&format!("{label}: d{name}"), &g.data, &want, 1e-5);
    }
    // One SGD step: p - lr·dp for every parameter.
    let losses = backend.run(1).unwrap();
    assert_eq!(losses, vec![loss]);
    let after = backend.read_params().unwrap();
    let mut stepped = net.clone();
    let before = state.params();
    for (t, (((name, p), p64), (_, p0))) in after
        .named()
        .into_iter()
        .zip(stepped.params_mut())
        .zip(before.named())
        .enumerate()
    {
        for (v, g) in p64.iter_mut().zip(&grads64[t]) {
            *v -= job.lr as f64 * g;
        }
        assert_close_normwise(
            &format!("{label}: {name} after a step"),
            &p.data,
            &narrow(p64),
            1e-5,
        );
        if grads64[t].iter().any(|&g| g != 0.0) {
            assert_ne!(p.data, p0.data, "{label}: step did nothing to {name}");
        } else {
            // A layer the epoch does not use has no gradient and no step.
            assert_eq!(p.data, p0.data, "{label}: {name} moved without a gradient");
        }
    }
    // And the loss after the step is the f64 loss at the f64-stepped parameters.
    let next = backend.run(1).unwrap()[0];
    assert_close(
        &format!("{label}: loss after a step"),
        &[next],
        &[stepped.loss() as f32],
        1e-5,
        0.0,
    );
    assert!(
        (next as f64) < loss64,
        "{label}: the step did not lower the loss"
    );
}

#[test]
fn cpu_f32_gradients_and_step_match_f64_reference() {
    for ((layers, batch, seed), variant) in NETS
        .into_iter()
        .flat_map(|n| variants().into_iter().map(move |v| (n, v)))
    {
        let (job, state, net) = tiny(layers, batch, seed, variant);
        let mut cpu = CpuBackend::new(&job, &state);
        check_step_against_f64(
            &format!("CPU {}", variant_label(layers, batch, variant)),
            &mut cpu,
            &job,
            &state,
            &net,
        );
    }
}

#[test]
fn gpu_f32_gradients_and_step_match_f64_reference() {
    let Some(ctx) = gpu_or_skip() else { return };
    for ((layers, batch, seed), variant) in NETS
        .into_iter()
        .flat_map(|n| variants().into_iter().map(move |v| (n, v)))
    {
        let (job, state, net) = tiny(layers, batch, seed, variant);
        let mut gpu = GpuBackend::new(ctx.clone(), &job, &state).unwrap();
        check_step_against_f64(
            &format!("GPU {}", variant_label(layers, batch, variant)),
            &mut gpu,
            &job,
            &state,
            &net,
        );
    }
}

/// One optimizer step in f64 of every parameter tensor (PyTorch's formulas), with its state and
/// its own step count per tensor (PyTorch skips a tensor without a gradient, so a dynamic-depth
/// net's shared layer counts only the epochs that use it).
struct Opt64 {
    opt: Optimizer,
    lr: f64,
    schedule: LrSchedule,
    /// Steps taken (the schedule's step).
    steps: u32,
    t: Vec<i32>,
    m: Vec<Vec<f64>>,
    v: Vec<Vec<f64>>,
}

impl Opt64 {
    fn new(opt: Optimizer, lr: f32, net: &Net64) -> Self {
        let zeros: Vec<Vec<f64>> = net
            .w
            .iter()
            .chain(&net.b)
            .map(|p| vec![0.0; p.len()])
            .collect();
        Opt64 {
            opt,
            lr: lr as f64,
            schedule: LrSchedule::default(),
            steps: 0,
            t: vec![0; zeros.len()],
            m: zeros.clone(),
            v: zeros,
        }
    }

    /// Step every tensor `active` says has a gradient this epoch.
    fn step(&mut self, net: &mut Net64, grads: &[Vec<f64>], active: &dyn Fn(usize) -> bool) {
        let o = &self.opt;
        let (mu, b1, b2, eps) = (
            o.momentum as f64,
            o.beta1 as f64,
            o.beta2 as f64,
            o.eps as f64,
        );
        let lr = lr64(&self.schedule, self.lr, self.steps);
        self.steps += 1;
        let wd = o.weight_decay as f64;
        for (tensor, (((p, g), m), v)) in net
            .params_mut()
            .into_iter()
            .zip(grads)
            .zip(&mut self.m)
            .zip(&mut self.v)
            .enumerate()
        {
            if !active(tensor) {
                continue;
            }
            self.t[tensor] += 1;
            let t = self.t[tensor];
            for i in 0..p.len() {
                // PyTorch: L2 decay joins the gradient; AdamW scales the parameter first.
                let g = match o.kind {
                    OptimizerKind::AdamW => {
                        p[i] *= 1.0 - lr * wd;
                        g[i]
                    }
                    _ => g[i] + wd * p[i],
                };
                p[i] -= match o.kind {
                    OptimizerKind::Sgd => lr * g,
                    OptimizerKind::Momentum => {
                        m[i] = mu * m[i] + g;
                        lr * if o.nesterov { g + mu * m[i] } else { m[i] }
                    }
                    OptimizerKind::Adam | OptimizerKind::AdamW => {
                        m[i] = b1 * m[i] + (1.0 - b1) * g;
                        v[i] = b2 * v[i] + (1.0 - b2) * g * g;
                        let mhat = m[i] / (1.0 - b1.powi(t));
                        let vhat = v[i] / (1.0 - b2.powi(t));
                        lr * mhat / (vhat.sqrt() + eps)
                    }
                };
            }
        }
    }
}

/// The learning rate of step `n` in f64, by PyTorch's closed forms (StepLR, CosineAnnealingLR,
/// and LinearLR before them).
fn lr64(s: &LrSchedule, lr: f64, n: u32) -> f64 {
    let mut n = n;
    if let Some(w) = s.warmup {
        if n < w.steps {
            let start = w.start as f64;
            return lr * (start + (1.0 - start) * n as f64 / w.steps as f64);
        }
        n -= w.steps;
    }
    match s.main {
        Schedule::Constant => lr,
        Schedule::Step { every, gamma } => lr * (gamma as f64).powi((n / every) as i32),
        Schedule::Cosine { t_max, min_lr } => {
            let min = min_lr as f64;
            let c = (std::f64::consts::PI * n as f64 / t_max as f64).cos();
            min + (lr - min) * (1.0 + c) / 2.0
        }
    }
}

/// The optimizer the multi-step checks use, its hyperparameters away from the defaults so that a
/// default left in by mistake shows.
fn optimizer(kind: OptimizerKind, nesterov: bool) -> Optimizer {
    Optimizer {
        kind,
        nesterov,
        momentum: 0.8,
        beta1: 0.85,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.0,
    }
}

/// Several epochs with each optimizer (and biases) against the same optimizer run in f64: the
/// loss of every epoch and the parameters at the end. Momentum's and Nesterov's first step equals
/// SGD's, so it takes a few steps to tell them apart; Adam's moments and bias corrections change
/// at every step. Tolerance: 1e-5 normwise, as for one step (four steps of tiny nets compound a
/// few more roundings; measured ~1e-7).
fn check_optimizer_steps_against_f64(make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>) {
    let steps = 4;
    let sched = |s: &str, w: Option<&str>| LrSchedule::parse(Some(s), w).unwrap();
    // (kind, nesterov, weight decay, schedule): each optimizer, weight decay in its L2 form and
    // AdamW's decoupled one (on SGD fused in the product: the CPU's unfused path), and each
    // schedule (also on plain SGD, fused on the GPU; on Adam, with a warm-up).
    let kinds = [
        (OptimizerKind::Momentum, false, 0.0, LrSchedule::default()),
        (OptimizerKind::Momentum, true, 0.0, LrSchedule::default()),
        (OptimizerKind::Adam, false, 0.0, LrSchedule::default()),
        (OptimizerKind::Sgd, false, 0.3, LrSchedule::default()),
        (OptimizerKind::Momentum, false, 0.2, LrSchedule::default()),
        (OptimizerKind::Adam, false, 0.2, LrSchedule::default()),
        (OptimizerKind::AdamW, false, 0.2, LrSchedule::default()),
        (OptimizerKind::Sgd, false, 0.0, sched("step:2:0.5", None)),
        (
            OptimizerKind::Adam,
            false,
            0.0,
            sched("cosine:3:1e-3", Some("2:0.25")),
        ),
        (
            OptimizerKind::Momentum,
            false,
            0.1,
            sched("constant", Some("3")),
        ),
    ];
    for (layers, batch, seed) in NETS {
        for (kind, nesterov, wd, schedule) in kinds {
            let (mut job, state, net) =
                tiny(layers, batch, seed, (Activation::Relu, Loss::Mse, true));
            job.optimizer = Optimizer {
                weight_decay: wd,
                ..optimizer(kind, nesterov)
            };
            job.lr = 1e-2;
            job.lr_schedule = schedule;
            let label = format!("{layers:?} {kind:?} nesterov {nesterov} wd {wd} {schedule}");
            let mut backend = make(&job, &state);
            let got = backend.run(steps).unwrap();
            let mut net64 = net.clone();
            let mut opt = Opt64::new(job.optimizer, job.lr, &net64);
            opt.schedule = schedule;
            let mut want = Vec::new();
            for _ in 0..steps {
                let (loss, grads) = net64.gradients();
                want.push(loss as f32);
                opt.step(&mut net64, &grads, &|_| true);
            }
            eprintln!("{label}: losses {got:?} vs f64 {want:?}");
            assert_close(&format!("{label}: losses"), &got, &want, 1e-5, 0.0);
            let after = backend.read_params().unwrap();
            let before = state.params();
            for (((name, p), p64), (_, p0)) in after
                .named()
                .into_iter()
                .zip(net64.params_mut())
                .zip(before.named())
            {
                assert_close_normwise(&format!("{label}: {name}"), &p.data, &narrow(p64), 1e-5);
                assert_ne!(p.data, p0.data, "{label}: {name} did not move");
            }
            // The optimizer must matter: plain SGD (at a constant rate, without decay) from the
            // same state ends elsewhere.
            let mut sgd = net.clone();
            let mut plain = Opt64::new(Optimizer::default(), job.lr, &sgd);
            for _ in 0..steps {
                let (_, grads) = sgd.gradients();
                plain.step(&mut sgd, &grads, &|_| true);
            }
            assert!(
                max_rel_err(&after.weights[0].data, &narrow(&sgd.w[0])) > 1e-3,
                "{label}: indistinguishable from SGD"
            );
        }
    }
}

#[test]
fn cpu_optimizers_match_f64_reference_over_several_steps() {
    check_optimizer_steps_against_f64(&mut |job, state| Box::new(CpuBackend::new(job, state)));
}

#[test]
fn gpu_optimizers_match_f64_reference_over_several_steps() {
    let Some(ctx) = gpu_or_skip() else { return };
    check_optimizer_steps_against_f64(&mut |job, state| {
        Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap())
    });
}

/// A tiny dynamic-depth net, 4 -> 5 -> [5 -> 5 shared] -> 3 with ReLU, whose shared layer runs
/// `schedule[e % len]` times in epoch e.
fn tiny_dynamic(schedule: Vec<usize>, bias: bool, seed: u64) -> (Job, HostState, Net64) {
    let variant = (Activation::Relu, Loss::Sse, bias);
    let (mut job, state, mut net) = tiny(&[4, 5, 5, 3], 3, seed, variant);
    job.dynamic = Some(DynamicDepth { max: 3, schedule });
    job.validate().unwrap();
    net.apps = job.applications(job.uses(0));
    (job, state, net)
}

/// The f64 reference of a dynamic-depth net (the shared layer's gradient summed over its uses)
/// against central finite differences, for every number of uses; an unused layer's is zero.
#[test]
fn f64_dynamic_depth_gradients_match_finite_differences() {
    for uses in 0..=3 {
        for bias in [false, true] {
            let (_, _, net) = tiny_dynamic(vec![uses], bias, 21);
            let name = format!("dynamic, {uses} uses, bias {bias}");
            for z in &net.forward().pre {
                let min = z.iter().fold(f64::INFINITY, |m, v| m.min(v.abs()));
                assert!(
                    min > 1e-3,
                    "{name}: a pre-activation is {min:e} from the kink"
                );
            }
            let (_, grads) = net.gradients();
            let fd = net.finite_differences(1e-6);
            for t in 0..grads.len() {
                let label = format!("{name}: d{}", tensor_name(t, net.w.len()));
                let shared = t % net.w.len() == 1;
                if shared && uses == 0 {
                    assert!(grads[t].iter().all(|&g| g == 0.0), "{label}");
                    assert!(
                        fd[t].iter().all(|&g| g.abs() < 1e-9),
                        "{label}: {:?}",
                        fd[t]
                    );
                    continue;
                }
                let scale = grads[t].iter().fold(0.0f64, |m, v| m.max(v.abs()));
                assert!(scale > 1e-3, "{label}: zero gradient");
                for (i, (a, b)) in grads[t].iter().zip(&fd[t]).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-7 * scale,
                        "{label}: element {i}: backprop {a:e}, finite differences {b:e}"
                    );
                }
            }
        }
    }
}

fn check_dynamic_step(make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>, device: &str) {
    for uses in 0..=3 {
        let (job, state, net) = tiny_dynamic(vec![uses], true, 21);
        let mut backend = make(&job, &state);
        let label = format!("{device} dynamic, {uses} uses");
        check_step_against_f64(&label, backend.as_mut(), &job, &state, &net);
    }
}

#[test]
fn cpu_dynamic_depth_gradients_and_step_match_f64_reference() {
    check_dynamic_step(
        &mut |job, state| Box::new(CpuBackend::new(job, state)),
        "CPU",
    );
}

#[test]
fn gpu_dynamic_depth_gradients_and_step_match_f64_reference() {
    let Some(ctx) = gpu_or_skip() else { return };
    check_dynamic_step(
        &mut |job, state| Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap()),
        "GPU",
    );
}

/// Several epochs of a dynamic-depth net whose depths include epochs without the shared layer,
/// with each stateful optimizer, against f64 with PyTorch's semantics: the shared layer's
/// gradient summed over its uses, and no step (no momentum decay, no Adam step count) in epochs
/// that do not use it.
fn check_dynamic_optimizers(make: &mut dyn FnMut(&Job, &HostState) -> Box<dyn Backend>) {
    let schedule = vec![2, 0, 3, 1, 0, 0, 2];
    let kinds = [
        (OptimizerKind::Sgd, false),
        (OptimizerKind::Momentum, false),
        (OptimizerKind::Momentum, true),
        (OptimizerKind::Adam, false),
    ];
    for (kind, nesterov) in kinds {
        let (mut job, state, net) = tiny_dynamic(schedule.clone(), true, 22);
        job.optimizer = optimizer(kind, nesterov);
        job.lr = 1e-3;
        let label = format!("dynamic {kind:?} nesterov {nesterov}");
        let mut backend = make(&job, &state);
        let steps = schedule.len();
        // In two chunks, so that the depths and parities carry across them.
        let mut got = backend.run(3).unwrap();
        got.extend(backend.run(steps - 3).unwrap());
        let mut net64 = net.clone();
        let mut opt = Opt64::new(job.optimizer, job.lr, &net64);
        let mut want = Vec::new();
        let depth = net64.w.len();
        for &uses in &schedule {
            net64.apps = job.applications(uses);
            let (loss, grads) = net64.gradients();
            want.push(loss as f32);
            opt.step(&mut net64, &grads, &|t| uses > 0 || t % depth != 1);
        }
        eprintln!("{label}: losses {got:?} vs f64 {want:?}");
        assert_close(&format!("{label}: losses"), &got, &want, 1e-5, 0.0);
        let after = backend.read_params().unwrap();
        for ((name, p), p64) in after.named().into_iter().zip(net64.params_mut()) {
            assert_close_normwise(&format!("{label}: {name}"), &p.data, &narrow(p64), 1e-5);
        }
    }
}

#[test]
fn cpu_dynamic_depth_optimizers_match_f64_reference() {
    check_dynamic_optimizers(&mut |job, state| Box::new(CpuBackend::new(job, state)));
}

#[test]
fn gpu_dynamic_depth_optimizers_match_f64_reference() {
    let Some(ctx) = gpu_or_skip() else { return };
    check_dynamic_optimizers(&mut |job, state| {
        Box::new(GpuBackend::new(ctx.clone(), job, state).unwrap())
    });
}
