//! The GPU backend against the CPU backend from the same seeded state: one step (loss, gradients,
//! new weights), the whole default trajectory, determinism, and the seeded initial state.
//!
//! Tolerances of one step. The two paths run the same f32 operations in different summation
//! orders, so each product differs by a few ulps times sqrt(k) relative to `Σ|a||b|` (see
//! tests/library/kernels.rs); nothing cancels badly in the first step (the prediction is ~100x larger than
//! y), and a gradient chains three products, compounding a few such errors. Measured on lavapipe
//! the normwise relative difference of the gradients is 1e-7 to 8e-7, of the loss < 1e-7; we allow
//! 2e-5 (25x headroom at least, still far below what one wrong element, a wrong mask or a missing
//! term produces: those change a gradient by 1e-3 or more of its scale). The new weights
//! `w - lr·dw` may then differ by `lr` times the gradient's allowed difference, plus two roundings
//! of `w`; measured normwise ~1e-7.

use crate::common;

use common::{
    assert_close, assert_close_normwise, assert_within, auto_adapter, gpu_or_skip, max_rel_err,
    trajectory_tol, U32,
};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::{GpuBackend, GpuContext};
use gpu_train::init::{HostState, Params};
use gpu_train::job::{
    self, Activation, DynamicDepth, InitScheme, Job, Loss, Optimizer, OptimizerKind,
};
use gpu_train::train;
use std::sync::Arc;

/// Loss and gradient tolerance (normwise relative), see the file comment.
const STEP_GRAD_TOL: f64 = 2e-5;

fn job(layers: &[usize], batch: usize, lr: f32, epochs: usize) -> Job {
    Job {
        layers: layers.to_vec(),
        batch,
        lr,
        epochs,
        seed: 0,
        log_every: 0,
        ..Job::default()
    }
}

/// Parameters after one SGD step: `|Δp_i| <= lr·STEP_GRAD_TOL·max|dp| + 4u·|p_i|` for each tensor
/// (the gradients' allowed difference, scaled by the step, and the roundings of the update itself).
fn assert_stepped_params_close(label: &str, lr: f32, got: &Params, want: &Params, grads: &Params) {
    let (got, want, grads) = (got.named(), want.named(), grads.named());
    assert_eq!(got.len(), want.len(), "{label}: number of tensors");
    for (((name, g), (_, w)), (_, dp)) in got.iter().zip(&want).zip(&grads) {
        assert_eq!(g.shape(), w.shape(), "{label}: shape of {name}");
        let scale = dp.data.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
        let step = lr as f64 * STEP_GRAD_TOL * scale;
        assert_within(&format!("{label}: {name}"), &g.data, &w.data, |i| {
            step + 4.0 * U32 * (w.data[i] as f64).abs()
        });
    }
}

/// One step from the same state: the loss and gradients (without update), then one real epoch and
/// the parameters it leaves.
fn check_one_step(job: &Job) {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        job.validate().unwrap();
        let state = HostState::seeded(job);
        let label = format!(
            "batch {} x {:?} bias {} {layout:?}",
            job.batch, job.layers, job.bias
        );
        let mut cpu = CpuBackend::new(job, &state);
        let mut gpu = GpuBackend::with_layout(ctx.clone(), job, &state, layout).unwrap();

        let (cpu_loss, cpu_grads) = cpu.gradients();
        let (gpu_loss, gpu_grads) = gpu.gradients().unwrap();
        eprintln!("{label}: loss cpu {cpu_loss:e} gpu {gpu_loss:e}");
        assert_close(
            &format!("{label}: loss"),
            &[gpu_loss],
            &[cpu_loss],
            STEP_GRAD_TOL,
            0.0,
        );
        assert_eq!(gpu_grads.weights.len(), job.depth());
        let n_bias = if job.bias { job.depth() } else { 0 };
        assert_eq!(gpu_grads.biases.len(), n_bias);
        for (l, g) in gpu_grads.weights.iter().enumerate() {
            assert_eq!(g.shape(), job.weight_shape(l));
        }
        for (l, g) in gpu_grads.biases.iter().enumerate() {
            assert_eq!(g.shape(), [1, job.layers[l + 1]]);
        }
        // A dynamic-depth net's shared layer (w_{L-1}, b_{L-1}) in an epoch that does not use it.
        let unused = |name: &str| {
            let shared = job.shared_layer().map(|s| format!("{}", s + 1));
            job.uses(0) == 0 && shared.is_some_and(|s| name[1..] == s)
        };
        for ((name, g), (_, c)) in gpu_grads.named().into_iter().zip(cpu_grads.named()) {
            eprintln!(
                "{label}: d{name} normwise rel diff {:e}",
                max_rel_err(&g.data, &c.data)
            );
            if unused(&name) {
                assert!(
                    g.data.iter().chain(&c.data).all(|&v| v == 0.0),
                    "{label}: d{name}"
                );
                continue;
            }
            assert!(
                c.data.iter().any(|&v| v != 0.0),
                "{label}: CPU gradient d{name} is all zero, the test would prove nothing"
            );
            assert_close_normwise(
                &format!("{label}: d{name}"),
                &g.data,
                &c.data,
                STEP_GRAD_TOL,
            );
        }

        // gradients() must not have moved the parameters: the next epoch's loss is the same loss.
        let cpu_l = cpu.run(1).unwrap();
        let gpu_l = gpu.run(1).unwrap();
        assert_eq!(cpu_l, vec![cpu_loss], "CPU gradients() changed the state");
        assert_eq!(gpu_l, vec![gpu_loss], "GPU gradients() changed the state");

        let cpu_p = cpu.read_params().unwrap();
        let gpu_p = gpu.read_params().unwrap();
        let before = state.params();
        for (((name, w), (_, g)), (_, w0)) in cpu_p
            .named()
            .into_iter()
            .zip(gpu_p.named())
            .zip(before.named())
        {
            eprintln!(
                "{label}: {name} after one step, normwise rel diff {:e}",
                max_rel_err(&g.data, &w.data)
            );
            if unused(&name) {
                assert_eq!(
                    (&w.data, &g.data),
                    (&w0.data, &w0.data),
                    "{label}: unused {name} moved"
                );
                continue;
            }
            // The step really moved the parameters (else comparing them would prove nothing).
            assert_ne!(w.data, w0.data, "CPU step left {name} as is");
        }
        assert_stepped_params_close(
            &format!("{label}: after one step"),
            job.lr,
            &gpu_p,
            &cpu_p,
            &cpu_grads,
        );
    }
}

#[test]
fn gpu_matches_cpu_one_step_default_job() {
    check_one_step(&Job::default());
}

#[test]
fn gpu_matches_cpu_one_step_odd_deeper_net() {
    check_one_step(&job(&[7, 65, 33, 3], 13, 1e-4, 1));
}

/// Odd sizes large enough that the GPU picks its big register blocks for some products.
#[test]
fn gpu_matches_cpu_one_step_odd_net_with_big_blocks() {
    check_one_step(&job(&[301, 67, 33, 3], 70, 1e-6, 1));
}

/// Every loss and activation, the linear net and every init scheme: one step from the same state
/// on both paths
/// (odd sizes, so the 16x16 blocks and the padding are exercised too).
#[test]
fn gpu_matches_cpu_one_step_every_loss_activation_and_init_scheme() {
    let cases = [
        (Activation::Relu, Loss::Mse, InitScheme::Torch),
        (Activation::Relu, Loss::HalfSse, InitScheme::Xavier),
        (Activation::Relu, Loss::L1, InitScheme::Kaiming),
        (Activation::None, Loss::Sse, InitScheme::Normal),
        (Activation::None, Loss::HalfSse, InitScheme::Constant(0.5)),
        (Activation::None, Loss::L1, InitScheme::Torch),
        (Activation::LeakyRelu(0.1), Loss::Mse, InitScheme::Kaiming),
        (Activation::Tanh, Loss::CrossEntropy, InitScheme::Xavier),
        (Activation::Sigmoid, Loss::Sse, InitScheme::Torch),
        (Activation::Gelu, Loss::CrossEntropy, InitScheme::Normal),
        (Activation::Relu, Loss::CrossEntropy, InitScheme::Torch),
    ];
    for (activation, loss, init_scheme) in cases {
        eprintln!("{activation:?} {loss:?} {init_scheme}");
        check_one_step(&Job {
            activation,
            loss,
            init_scheme,
            ..job(&[65, 33, 7], 37, 1e-3, 1)
        });
    }
}

/// Biases on both paths: with each init scheme that draws them, on odd sizes (so padding rows and
/// columns of the bias epilogue are exercised), through ReLU and without.
#[test]
fn gpu_matches_cpu_one_step_with_bias() {
    let cases = [
        (Activation::Relu, Loss::Sse, InitScheme::Torch),
        (Activation::Relu, Loss::Mse, InitScheme::Normal),
        (Activation::None, Loss::HalfSse, InitScheme::Constant(0.5)),
        (Activation::Relu, Loss::L1, InitScheme::Kaiming),
        (Activation::Gelu, Loss::CrossEntropy, InitScheme::Torch),
        (Activation::Sigmoid, Loss::Mse, InitScheme::Xavier),
    ];
    for (activation, loss, init_scheme) in cases {
        eprintln!("bias {activation:?} {loss:?} {init_scheme}");
        check_one_step(&Job {
            activation,
            loss,
            init_scheme,
            bias: true,
            ..job(&[65, 33, 17, 7], 37, 1e-3, 1)
        });
    }
}

/// The whole default job (500 epochs, as the CLI runs it: read back every 50) on both devices:
/// every epoch within [`trajectory_tol`], and both final losses below 1e-2.
#[test]
fn gpu_matches_cpu_whole_default_trajectory() {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        let job = Job::default();
        let state = HostState::seeded(&job);
        let mut cpu = CpuBackend::new(&job, &state);
        let mut gpu = GpuBackend::with_layout(ctx.clone(), &job, &state, layout).unwrap();
        let mut logged = Vec::new();
        let c = train::train(&job, &mut cpu, |_, _| {}).unwrap();
        let g = train::train(&job, &mut gpu, |e, l| logged.push((e, l))).unwrap();
        assert_eq!(c.losses.len(), 500);
        assert_eq!(g.losses.len(), 500);
        assert!(c.diverged.is_none() && g.diverged.is_none());
        let epochs: Vec<usize> = logged.iter().map(|&(e, _)| e).collect();
        assert_eq!(epochs, (0..500).step_by(50).collect::<Vec<_>>());
        for &(e, l) in &logged {
            assert_eq!(l, g.losses[e], "logged loss of epoch {e}");
        }
        let mut worst = (0, 0.0f64);
        for (e, (&gl, &cl)) in g.losses.iter().zip(&c.losses).enumerate() {
            let diff = (gl as f64 - cl as f64).abs();
            let ratio = diff / trajectory_tol(cl);
            if ratio > worst.1 {
                worst = (e, ratio);
            }
            assert!(
                ratio <= 1.0,
                "epoch {e}: GPU loss {gl:e} vs CPU {cl:e}, difference {diff:e} > allowed {:e}",
                trajectory_tol(cl)
            );
        }
        eprintln!(
        "trajectory: worst difference {:.3} of the allowed, at epoch {} (loss {:e}); final cpu {:e} \
         gpu {:e}",
        worst.1, worst.0, c.losses[worst.0], c.losses[499], g.losses[499]
    );
        assert!(c.losses[0] > 1e6, "the default job starts at a loss ~3e7");
        assert!(c.losses[499] < 1e-2, "CPU final loss {:e}", c.losses[499]);
        assert!(g.losses[499] < 1e-2, "GPU final loss {:e}", g.losses[499]);
    }
}

/// A reduced job for the determinism tests: three layers, sizes that are not multiples of 4.
/// A reduced three-layer job with odd sizes and biases.
fn small_job() -> Job {
    Job {
        bias: true,
        init_scheme: InitScheme::Torch,
        ..job(&[50, 30, 20, 5], 17, 1e-2, 40)
    }
}

#[test]
fn gpu_training_is_bit_for_bit_deterministic() {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        let job = small_job();
        let state = HostState::seeded(&job);
        let run = || {
            let mut gpu = GpuBackend::with_layout(ctx.clone(), &job, &state, layout).unwrap();
            let losses = gpu.run(job.epochs).unwrap();
            (losses, gpu.read_params().unwrap())
        };
        let (l1, w1) = run();
        let (l2, w2) = run();
        assert!(l1[job.epochs - 1] < l1[0], "the job must train: {l1:?}");
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&l1), bits(&l2), "GPU losses differ between two runs");
        for ((name, a), (_, b)) in w1.named().into_iter().zip(w2.named()) {
            assert_eq!(bits(&a.data), bits(&b.data), "GPU {name} differs");
        }
    }
}

#[test]
fn cpu_training_is_bit_for_bit_deterministic() {
    let job = small_job();
    let state = HostState::seeded(&job);
    let run = || {
        let mut cpu = CpuBackend::new(&job, &state);
        let losses = cpu.run(job.epochs).unwrap();
        (losses, cpu.read_params().unwrap())
    };
    let (l1, w1) = run();
    let (l2, w2) = run();
    assert!(l1[job.epochs - 1] < l1[0], "the job must train: {l1:?}");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&l1), bits(&l2), "CPU losses differ between two runs");
    for ((name, a), (_, b)) in w1.named().into_iter().zip(w2.named()) {
        assert_eq!(bits(&a.data), bits(&b.data), "CPU {name} differs");
    }
}

/// Chunks of epochs recorded into one submission, with the epoch index kept on the GPU, must give
/// exactly what the same epochs give one chunk at a time (a wrong index would overwrite or skip a
/// history slot; a missing barrier would mix epochs).
#[test]
fn gpu_losses_do_not_depend_on_chunking() {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        let job = small_job();
        let state = HostState::seeded(&job);
        let mut whole = GpuBackend::with_layout(ctx.clone(), &job, &state, layout).unwrap();
        let all = whole.run(job.epochs).unwrap();
        let mut pieces = GpuBackend::with_layout(ctx.clone(), &job, &state, layout).unwrap();
        let mut parts = Vec::new();
        for n in [1, 7, 1, 13, 18] {
            parts.extend(pieces.run(n).unwrap());
        }
        assert_eq!(parts.len(), job.epochs);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&all), bits(&parts));
        let (a, b) = (whole.read_params().unwrap(), pieces.read_params().unwrap());
        assert_eq!(a.named().len(), 2 * job.depth(), "weights and biases");
        for ((name, x), (_, y)) in a.named().into_iter().zip(b.named()) {
            assert_eq!(bits(&x.data), bits(&y.data), "{name}");
        }
        // One submission per run() call here (each is within the chunk limit).
        assert_eq!(pieces.stats().submits, 5);
        // Per epoch: L-1 relu products, the sse product, loss_reduce, L-1 mask products, L sgd
        // products, L bias updates.
        assert_eq!(pieces.stats().dispatches_per_epoch, 4 * job.depth());
    }
}

/// Reduced-job trajectories of GPU and CPU agree epoch by epoch (a cheap version of the 500-epoch
/// test, on a three-layer net with odd sizes).
#[test]
fn gpu_matches_cpu_small_three_layer_trajectory() {
    let Some(ctx) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        let job = small_job();
        let state = HostState::seeded(&job);
        let c = CpuBackend::new(&job, &state).run(job.epochs).unwrap();
        let g = GpuBackend::with_layout(ctx.clone(), &job, &state, layout)
            .unwrap()
            .run(job.epochs)
            .unwrap();
        eprintln!("small trajectory: {:e} -> {:e}", c[0], c[job.epochs - 1]);
        assert!(c[job.epochs - 1] < 0.1 * c[0], "the job must train: {c:?}");
        eprintln!("small trajectory: max rel diff {:e}", max_rel_err(&g, &c));
        assert_within("small job losses", &g, &c, |i| trajectory_tol(c[i]));
    }
}

#[test]
fn same_seed_gives_same_initial_state_other_seeds_differ() {
    let job = small_job();
    let a = HostState::seeded(&job);
    assert_eq!(a, HostState::seeded(&job), "same seed, different state");
    assert_eq!(a.x.shape(), [17, 50]);
    assert_eq!(a.y.shape(), [17, 5]);
    let shapes: Vec<_> = a.weights.iter().map(|w| w.shape()).collect();
    assert_eq!(shapes, vec![[50, 30], [30, 20], [20, 5]]);
    for seed in [1, 2, u64::MAX] {
        let b = HostState::seeded(&Job {
            seed,
            ..job.clone()
        });
        assert_ne!(a.x, b.x, "seed {seed}: same x");
        assert_ne!(a.y, b.y, "seed {seed}: same y");
        for (l, (wa, wb)) in a.weights.iter().zip(&b.weights).enumerate() {
            assert_ne!(wa, wb, "seed {seed}: same w{}", l + 1);
        }
    }
    // Each array is drawn fresh: no two of them start with the same numbers.
    assert_ne!(a.x.data[..5], a.y.data[..5]);
    assert_ne!(a.weights[0].data[..5], a.weights[1].data[..5]);
}

/// "Same numbers on every machine and device": the first values of the default job's seed-0 state,
/// pinned, and the first loss the README shows. A change here (a new generator, a new normal
/// sampler, another draw order) changes every trajectory and every figure in the README, so it must
/// be deliberate.
#[test]
fn seeded_state_is_pinned_across_machines() {
    let job = Job::default();
    let s = HostState::seeded(&job);
    let golden = |name: &str, got: &[f32], want: &[f32]| {
        assert_eq!(
            got, want,
            "{name}: the seeded initial state changed (update the pinned values only on purpose)"
        );
    };
    golden(
        "x[0..4]",
        &s.x.data[..4],
        &[0.69996077, -0.14406164, 0.30288628, -1.3745139],
    );
    golden(
        "y[0..4]",
        &s.y.data[..4],
        &[-0.023692807, 1.1009974, 0.38381794, 0.18387036],
    );
    golden(
        "w1[0..4]",
        &s.weights[0].data[..4],
        &[-0.26038456, 0.29285505, 0.35980722, 1.1410962],
    );
    golden(
        "w2[0..4]",
        &s.weights[1].data[..4],
        &[1.5270343, 0.8547532, 1.9479874, -0.18616335],
    );
    golden(
        "w2[996..]",
        &s.weights[1].data[996..],
        &[-1.5381253, -1.2661055, -1.1991746, 1.3628616],
    );
    // The README's first logged loss, 3.301393e7 (to the 1e-6 the summation order allows).
    let l0 = CpuBackend::new(&job, &s).epoch();
    assert!(
        ((l0 as f64 - 3.301393e7) / 3.301393e7).abs() < 1e-6,
        "first loss of the default job {l0:e}, README says 3.301393e7"
    );
}

/// The GPU against the CPU over `job.epochs` epochs from `state`: every loss within the
/// trajectory tolerance and the parameters at the end within 1e-4 normwise; then the GPU again in
/// the chunks `chunks` (epochs per `run`, summing to `job.epochs`), which must give the same losses
/// and parameters bit for bit (what the GPU keeps across submissions carries over). Returns the
/// CPU's losses.
fn check_gpu_against_cpu_and_chunking(
    ctx: &Arc<GpuContext>,
    job: &Job,
    state: &HostState,
    label: &str,
    chunks: &[usize],
) -> Vec<f32> {
    assert_eq!(chunks.iter().sum::<usize>(), job.epochs, "{label}: chunks");
    let mut cpu = CpuBackend::new(job, state);
    let c = cpu.run(job.epochs).unwrap();
    let cp = cpu.read_params().unwrap();
    for layout in Layout::ALL {
        let label = format!("{label} {layout:?}");
        let mut gpu = GpuBackend::with_layout(ctx.clone(), job, state, layout).unwrap();
        let g = gpu.run(job.epochs).unwrap();
        assert_within(&format!("{label}: losses"), &g, &c, |i| {
            trajectory_tol(c[i])
        });
        let gp = gpu.read_params().unwrap();
        for ((name, x), (_, y)) in gp.named().into_iter().zip(cp.named()) {
            assert_close_normwise(&format!("{label}: {name}"), &x.data, &y.data, 1e-4);
        }
        let mut pieces = GpuBackend::with_layout(ctx.clone(), job, state, layout).unwrap();
        let mut parts = Vec::new();
        for &n in chunks {
            parts.extend(pieces.run(n).unwrap());
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(
            bits(&parts),
            bits(&g),
            "{label}: chunking changed the losses"
        );
        let pp = pieces.read_params().unwrap();
        for ((name, x), (_, y)) in pp.named().into_iter().zip(gp.named()) {
            assert_eq!(
                bits(&x.data),
                bits(&y.data),
                "{label}: chunking changed {name}"
            );
        }
    }
    c
}

/// Each optimizer (with biases, on odd sizes) over several epochs on both paths: the losses of
/// every epoch and the parameters at the end, within the trajectory tolerance; and chunking the
/// epochs (the step counters live on the GPU across submissions) changes no bit.
#[test]
fn gpu_matches_cpu_every_optimizer_over_several_epochs_and_chunks() {
    let Some(ctx) = gpu_or_skip() else { return };
    let kinds = [
        (OptimizerKind::Momentum, false, 1e-3),
        (OptimizerKind::Momentum, true, 1e-3),
        (OptimizerKind::Adam, false, 1e-2),
    ];
    for (kind, nesterov, lr) in kinds {
        let job = Job {
            bias: true,
            init_scheme: InitScheme::Torch,
            optimizer: Optimizer {
                kind,
                nesterov,
                ..Optimizer::default()
            },
            ..job(&[65, 33, 7], 37, lr, 12)
        };
        let label = format!("{kind:?} nesterov {nesterov}");
        let state = HostState::seeded(&job);
        let c = check_gpu_against_cpu_and_chunking(&ctx, &job, &state, &label, &[1, 2, 4, 5]);
        eprintln!("{label}: {:e} -> {:e}", c[0], c[job.epochs - 1]);
        assert!(c[job.epochs - 1] < 0.5 * c[0], "{label}: must train: {c:?}");
    }
}

/// The `dynamic` preset's net (1000 -> 100 -> [100 -> 100 shared] -> 10, biases, torch init) for
/// one step at each number of uses of the shared layer, 0 to 3: the summed gradients, and the
/// step that leaves an unused layer alone.
#[test]
fn gpu_matches_cpu_one_step_dynamic_depth_every_number_of_uses() {
    for uses in 0..=3 {
        let mut j = job::preset("dynamic").unwrap();
        j.optimizer = Optimizer::default();
        j.dynamic = Some(DynamicDepth {
            max: 3,
            schedule: vec![uses],
        });
        check_one_step(&j);
    }
}

/// The `dynamic` preset's semantics at a small size over 16 epochs of seeded depths (0 to 3 uses,
/// drawn alike on both paths) with momentum and Adam: every loss, the parameters at the end, and
/// chunking (depths, texture parities and the shared layer's step counters carry across
/// submissions) changing no bit.
#[test]
fn gpu_matches_cpu_dynamic_depth_over_seeded_epochs_and_chunks() {
    let Some(ctx) = gpu_or_skip() else { return };
    for (kind, lr) in [(OptimizerKind::Momentum, 3e-3), (OptimizerKind::Adam, 1e-2)] {
        let job = Job {
            layers: vec![65, 33, 33, 7],
            batch: 37,
            epochs: 16,
            log_every: 0,
            lr,
            optimizer: Optimizer {
                kind,
                ..Optimizer::default()
            },
            ..job::preset("dynamic").unwrap()
        };
        let uses: Vec<usize> = (0..job.epochs).map(|e| job.uses(e)).collect();
        assert!(
            uses.contains(&0) && uses.iter().any(|&u| u >= 2),
            "{uses:?}"
        );
        let label = format!("dynamic {kind:?}, uses {uses:?}");
        let state = HostState::seeded(&job);
        let c = check_gpu_against_cpu_and_chunking(&ctx, &job, &state, &label, &[1, 2, 4, 5, 4]);
        eprintln!("{label}: {c:?}");
        // The loss of a net whose depth changes every epoch jumps about; it must still go down.
        let best = c.iter().fold(f32::INFINITY, |m, &l| m.min(l));
        assert!(best < 0.8 * c[0], "{label}: must train: {c:?}");
    }
}

/// A mini-batch job on a generated dataset.
fn minibatch_job(rows: usize, batch: usize, layers: &[usize], kind: OptimizerKind) -> Job {
    Job {
        rows: Some(rows),
        bias: true,
        loss: Loss::Mse,
        init_scheme: InitScheme::Torch,
        optimizer: Optimizer {
            kind,
            ..Optimizer::default()
        },
        ..job(layers, batch, 1e-2, 3)
    }
}

/// The CPU's mini-batch epoch is, bit for bit, a sequence of one-batch steps on the rows of the
/// epoch's order (the last batch short), each from the parameters the previous one left, and its
/// loss is the batches' losses combined by `Job::epoch_loss`.
#[test]
fn cpu_minibatch_epochs_are_steps_over_the_shuffled_batches() {
    let job = minibatch_job(203, 50, &[7, 6, 3], OptimizerKind::Sgd);
    let state = HostState::seeded(&job);
    let mut cpu = CpuBackend::new(&job, &state);
    let losses = cpu.run(2).unwrap();
    let got = cpu.read_params().unwrap();
    let (d0, dl) = (7, 3);
    let mut params = state.params();
    for (epoch, loss) in losses.iter().enumerate() {
        let order = job.order(epoch);
        let mut steps = Vec::new();
        for j in 0..job.steps_per_epoch() {
            let rows = &order[j * 50..][..job.batch_rows(j)];
            let pick = |m: &gpu_train::init::Matrix, w: usize| {
                let data = rows
                    .iter()
                    .flat_map(|&r| m.data[r as usize * w..][..w].iter().copied())
                    .collect();
                gpu_train::init::Matrix::from_vec(rows.len(), w, data)
            };
            let one = Job {
                rows: None,
                batch: rows.len(),
                epochs: 1,
                ..job.clone()
            };
            let step_state = HostState {
                x: pick(&state.x, d0),
                y: pick(&state.y, dl),
                weights: params.weights.clone(),
                biases: params.biases.clone(),
            };
            let mut single = CpuBackend::new(&one, &step_state);
            steps.push(single.run(1).unwrap()[0]);
            params = single.read_params().unwrap();
        }
        assert_eq!(steps.len(), 5);
        assert_eq!(
            loss.to_bits(),
            job.epoch_loss(&steps).to_bits(),
            "epoch {epoch}"
        );
    }
    assert_eq!(got, params);
}

/// GPU against CPU with mini-batches: shuffled, a short last batch, the dataset resident on the
/// GPU and gathered per step; once with more rows than a texture may be high (so the dataset
/// spans several texture layers). Losses, parameters, and chunking changing no bit.
#[test]
fn gpu_matches_cpu_minibatches_shuffled_with_a_short_last_batch() {
    let Some(ctx) = gpu_or_skip() else { return };
    let tall = ctx.limits.max_texture_dimension_2d as usize + 5;
    for (job, label) in [
        (
            minibatch_job(1000, 64, &[20, 16, 3], OptimizerKind::Sgd),
            "1000 rows SGD",
        ),
        (
            minibatch_job(130, 7, &[9, 5, 5, 2], OptimizerKind::Adam),
            "130 rows Adam",
        ),
        (
            minibatch_job(tall, 2000, &[5, 8, 3], OptimizerKind::Momentum),
            "tall momentum",
        ),
    ] {
        assert_ne!(job.last_batch_rows(), job.batch, "{label}: no short batch");
        let state = HostState::seeded(&job);
        let c = check_gpu_against_cpu_and_chunking(&ctx, &job, &state, label, &[1, 2]);
        assert!(c[job.epochs - 1] < c[0], "{label}: must train: {c:?}");
    }
}

/// A run stopped after some epochs, checkpointed to a file and continued in a new backend,
/// matches the uninterrupted run bit for bit, on the CPU and on the GPU: mini-batches (the order
/// of a later epoch), a dynamic-depth layer (its depths and own Adam counters) and Adam's state.
#[test]
fn resumed_runs_continue_bit_identically_on_cpu_and_gpu() {
    let ctx = gpu_or_skip();
    let job = Job {
        dynamic: Some(DynamicDepth {
            max: 2,
            schedule: Vec::new(),
        }),
        lr: 1e-3,
        epochs: 7,
        ..minibatch_job(40, 16, &[6, 5, 5, 3], OptimizerKind::Adam)
    };
    let state = HostState::seeded(&job);
    let tmp = tempfile::tempdir().unwrap();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let (job, state) = (&job, &state);
    type Make<'a> = Box<dyn Fn() -> Box<dyn Backend> + 'a>;
    let mut makers: Vec<(&str, Make)> =
        vec![("CPU", Box::new(|| Box::new(CpuBackend::new(job, state))))];
    if let Some(ctx) = ctx {
        for (name, layout) in [
            ("GPU texels", Layout::Texels),
            ("GPU buffer", Layout::Buffer),
        ] {
            let ctx = ctx.clone();
            makers.push((
                name,
                Box::new(move || {
                    Box::new(GpuBackend::with_layout(ctx.clone(), job, state, layout).unwrap())
                }),
            ));
        }
    }
    for (label, make) in makers {
        let mut whole = make();
        let all = whole.run(7).unwrap();
        let mut first = make();
        let mut losses = first.run(3).unwrap();
        let path = tmp.path().join(format!("{label}.safetensors"));
        gpu_train::io::checkpoint::save(&path, job, &first.state().unwrap(), 3).unwrap();
        let (saved, epoch) = gpu_train::io::checkpoint::load(&path, job).unwrap();
        assert_eq!((epoch, saved.step), (3, 9), "{label}");
        assert_eq!(
            saved,
            first.state().unwrap(),
            "{label}: the file holds the state"
        );
        let mut second = make();
        second.restore(&saved).unwrap();
        losses.extend(second.run(4).unwrap());
        assert_eq!(bits(&losses), bits(&all), "{label}: losses");
        assert_eq!(
            second.state().unwrap(),
            whole.state().unwrap(),
            "{label}: state"
        );
    }
}

/// A job whose per-weight buffers exceed a reduced `max_storage_buffer_binding_size` (16 KiB,
/// requested on the adapter): the optimizer's state and the shared layer's gradient sum are split
/// in bands of rows, each product that writes them runs once per band, and the history and the
/// batch rows are bounded by the limit. It must train exactly like the same job on the adapter's
/// own limits (bit for bit: banding changes no arithmetic), and so match the CPU.
#[test]
fn gpu_job_past_a_reduced_storage_binding_limit_is_split_and_matches() {
    let Some(full) = gpu_or_skip() else { return };
    let adapter = auto_adapter();
    const LIMIT: u64 = 16 << 10;
    let small = GpuContext::with_limits(&adapter.adapter, |l| {
        l.max_storage_buffer_binding_size = LIMIT;
        l.max_buffer_size = LIMIT;
    })
    .unwrap();
    assert_eq!(small.limits.max_storage_buffer_binding_size, LIMIT);
    let adam = Optimizer {
        kind: OptimizerKind::Adam,
        ..Optimizer::default()
    };
    let jobs = [
        // w1's Adam moments: 300 x 72 (padded) f32 = 86 KB each, 6 bands; mini-batches, so the
        // batch rows of a submission are bounded too.
        Job {
            layers: vec![300, 70, 5],
            batch: 64,
            rows: Some(200),
            epochs: 6,
            lr: 1e-3,
            bias: true,
            optimizer: adam,
            ..job(&[300, 70, 5], 64, 1e-3, 6)
        },
        // The shared 72x72 layer's gradient sum (20.7 KB) and its momentum, banded.
        Job {
            layers: vec![50, 72, 72, 5],
            batch: 16,
            epochs: 8,
            log_every: 0,
            lr: 1e-3,
            optimizer: Optimizer {
                kind: OptimizerKind::Momentum,
                ..Optimizer::default()
            },
            ..job::preset("dynamic").unwrap()
        },
    ];
    for job in jobs {
        job.validate().unwrap();
        let label = format!("{:?} {:?}", job.layers, job.optimizer.kind);
        let state = HostState::seeded(&job);
        // The texels layout: the buffer layout does not split matrices past the binding limit yet.
        let texels = Layout::Texels;
        let mut big = GpuBackend::with_layout(full.clone(), &job, &state, texels).unwrap();
        let mut banded = GpuBackend::with_layout(small.clone(), &job, &state, texels).unwrap();
        assert!(
            banded.stats().dispatches_per_epoch > big.stats().dispatches_per_epoch,
            "{label}: the products writing banded buffers run once per band"
        );
        let want = big.run(job.epochs).unwrap();
        let got = banded.run(job.epochs).unwrap();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&got), bits(&want), "{label}: losses");
        let (gs, ws) = (banded.state().unwrap(), big.state().unwrap());
        assert_eq!(gs, ws, "{label}: parameters and optimizer state");
        let mut cpu = CpuBackend::new(&job, &state);
        let c = cpu.run(job.epochs).unwrap();
        assert_within(&format!("{label}: against the CPU"), &got, &c, |i| {
            trajectory_tol(c[i])
        });
        // A restore writes the banded state back: the next epochs still agree.
        banded.restore(&ws).unwrap();
        big.restore(&ws).unwrap();
        assert_eq!(bits(&banded.run(2).unwrap()), bits(&big.run(2).unwrap()));
    }
}

/// A per-element buffer whose smallest band (4 rows) exceeds the limit is refused with the
/// sizes, not failed on.
#[test]
fn gpu_job_that_cannot_fit_the_limits_is_refused_with_sizes() {
    let Some(_) = gpu_or_skip() else { return };
    for layout in Layout::ALL {
        let adapter = auto_adapter();
        let small = GpuContext::with_limits(&adapter.adapter, |l| {
            l.max_storage_buffer_binding_size = 1024;
            l.max_buffer_size = 1024;
        })
        .unwrap();
        let job = Job {
            optimizer: Optimizer {
                kind: OptimizerKind::Momentum,
                ..Optimizer::default()
            },
            ..job(&[8, 100, 3], 4, 1e-3, 1)
        };
        let err = GpuBackend::with_layout(small.clone(), &job, &HostState::seeded(&job), layout)
            .err()
            .expect("must not fit")
            .to_string();
        assert!(
            err.contains("max_storage_buffer_binding_size") && err.contains("1024 bytes"),
            "{err}"
        );
    }
}
