//! The kernels fit a browser: every preset trains under WebGPU's default limits
//! (`--limits webgpu`: 8 storage buffers and 4 storage textures per stage, 128 MiB per binding,
//! 8192 texture side), in both memory layouts, and matches the CPU; and the layouts refuse, naming
//! what is missing, where the limits do not allow them.

use crate::common;

use common::{assert_within, auto_adapter, gpu_or_skip, trajectory_tol};
use gpu_train::backend::Backend;
use gpu_train::check::train_step::follow;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::{GpuBackend, GpuContext, LimitsChoice};
use gpu_train::init::HostState;
use gpu_train::job::{self, InitScheme, Job, Loss};
use gpu_train::wait::block_on;

#[test]
fn every_preset_trains_under_webgpu_default_limits_in_both_layouts() {
    let Some(_) = gpu_or_skip() else { return };
    let ctx = GpuContext::open(&auto_adapter().adapter, LimitsChoice::Webgpu).unwrap();
    let webgpu = wgpu::Limits::default();
    assert_eq!(ctx.limits.max_storage_buffers_per_shader_stage, 8);
    assert_eq!(ctx.limits.max_storage_textures_per_shader_stage, 4);
    assert_eq!(
        ctx.limits.max_storage_buffer_binding_size,
        webgpu.max_storage_buffer_binding_size
    );
    assert_eq!(ctx.limits.max_texture_dimension_2d, 8192);
    for preset in job::PRESETS {
        let job = Job {
            epochs: 20,
            log_every: 0,
            ..job::preset(preset.name).unwrap()
        };
        let state = HostState::seeded(&job);
        let c = CpuBackend::new(&job, &state).run(job.epochs).unwrap();
        for layout in Layout::ALL {
            let label = format!("{} {layout:?} under WebGPU's limits", preset.name);
            let mut gpu = GpuBackend::with_layout(ctx.clone(), &job, &state, layout)
                .unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(gpu.layout(), layout);
            let g = gpu.run(job.epochs).unwrap();
            assert_within(&label, &g, &c, |i| trajectory_tol(c[i]));
            ctx.check().unwrap();
        }
    }
}

#[test]
fn a_layout_the_limits_do_not_allow_is_refused_naming_what_is_missing() {
    let Some(_) = gpu_or_skip() else { return };
    let adapter = auto_adapter();
    let job = Job {
        epochs: 1,
        ..Job::default()
    };
    let state = HostState::seeded(&job);
    let few_buffers = GpuContext::with_limits(&adapter.adapter, |l| {
        l.max_storage_buffers_per_shader_stage = 7
    })
    .unwrap();
    let err = GpuBackend::with_layout(few_buffers.clone(), &job, &state, Layout::Buffer)
        .err()
        .expect("7 storage buffers cannot run the buffer layout")
        .to_string();
    assert!(
        err.contains("buffer layout") && err.contains("8 storage buffers per shader stage"),
        "{err}"
    );
    assert_eq!(few_buffers.auto_layout(), Layout::Texels);
    GpuBackend::with_layout(few_buffers, &job, &state, Layout::Texels).unwrap();
    let few_textures = GpuContext::with_limits(&adapter.adapter, |l| {
        l.max_storage_textures_per_shader_stage = 3
    })
    .unwrap();
    let err = GpuBackend::with_layout(few_textures.clone(), &job, &state, Layout::Texels)
        .err()
        .expect("3 storage textures cannot run the texels layout")
        .to_string();
    assert!(
        err.contains("texels layout") && err.contains("4 storage textures per shader stage"),
        "{err}"
    );
    assert_eq!(
        few_textures.auto_layout(),
        Layout::Buffer,
        "auto falls back to the layout the adapter can run"
    );
}

/// The buffer layout has no texture-size ceiling: a batch of 20,000 rows (more than lavapipe's
/// 16,384-texel texture side) trains in it and matches the CPU, where the texels layout refuses
/// the job naming the limit.
#[test]
fn a_batch_past_the_texture_side_trains_in_the_buffer_layout() {
    let Some(ctx) = gpu_or_skip() else { return };
    let side = ctx.limits.max_texture_dimension_2d as usize;
    let batch = 20_000.max(side + 4);
    let job = Job {
        layers: vec![30, 20, 3],
        batch,
        epochs: 3,
        lr: 0.5,
        loss: Loss::Mse,
        init_scheme: InitScheme::Torch,
        log_every: 0,
        ..Job::default()
    };
    job.validate().unwrap();
    let state = HostState::seeded(&job);
    let err = GpuBackend::with_layout(ctx.clone(), &job, &state, Layout::Texels)
        .err()
        .expect("the texels layout cannot hold the batch")
        .to_string();
    assert!(err.contains("max_texture_dimension_2d"), "{err}");
    let c = CpuBackend::new(&job, &state).run(job.epochs).unwrap();
    let mut gpu = GpuBackend::with_layout(ctx.clone(), &job, &state, Layout::Buffer).unwrap();
    let g = gpu.run(job.epochs).unwrap();
    assert!(c[2] < c[0], "the job must train: {c:?}");
    assert_within(&format!("batch {batch}, buffer layout"), &g, &c, |i| {
        trajectory_tol(c[i])
    });
}

/// Past one storage binding in the buffer layout: with `max_storage_buffer_binding_size` reduced
/// (16 and 32 KiB, requested on the adapter; `max_buffer_size` untouched), the batch's matrices
/// are bound in bands of 64 rows, each product over the batch runs once per band, the weight and
/// bias gradients are summed over the bands in order and the loss from per-band sums. It trains
/// like the unbanded job (the sums differ only in their order) and the CPU, bit for bit the same
/// from run to run, with cross-entropy and GELU, with a shared layer too: every epoch's loss, and
/// every parameter and optimizer state element within the radii of `check::train_step`;
/// mini-batches gathered on the GPU are refused.
#[test]
fn a_batch_past_one_storage_binding_is_banded_in_the_buffer_layout() {
    let Some(full) = gpu_or_skip() else { return };
    let adapter = auto_adapter();
    let adam = gpu_train::job::Optimizer {
        kind: gpu_train::job::OptimizerKind::Adam,
        ..Default::default()
    };
    let banded_moments = Job {
        layers: vec![72, 72, 7],
        epochs: 3,
        lr: 1e-2,
        bias: true,
        init_scheme: InitScheme::Torch,
        optimizer: adam,
        log_every: 0,
        ..Job::default()
    };
    let jobs = [
        (
            16u64 << 10,
            Job {
                layers: vec![40, 24, 5],
                batch: 300,
                epochs: 5,
                lr: 1e-2,
                loss: Loss::Mse,
                bias: true,
                init_scheme: InitScheme::Torch,
                optimizer: adam,
                log_every: 0,
                ..Job::default()
            },
        ),
        // Cross-entropy (each band's softmax, gradient and partial sum in its own dispatch) with
        // GELU (its input kept per band) and a schedule.
        (
            16 << 10,
            Job {
                layers: vec![40, 24, 7],
                batch: 300,
                epochs: 5,
                lr: 1e-2,
                loss: Loss::CrossEntropy,
                activation: gpu_train::job::Activation::Gelu,
                bias: true,
                init_scheme: InitScheme::Torch,
                optimizer: adam,
                lr_schedule: gpu_train::job::LrSchedule::parse(Some("step:2:0.5"), None).unwrap(),
                log_every: 0,
                ..Job::default()
            },
        ),
        // Adam's moments of w1 (72x72, two copies) past the binding: split into bands of
        // rows, the step one dispatch per band; with the batch within one binding, then past it
        // too (the gradient summed over the batch's bands, then stepped band by band).
        (
            32 << 10,
            Job {
                batch: 40,
                ..banded_moments.clone()
            },
        ),
        (
            32 << 10,
            Job {
                batch: 300,
                ..banded_moments
            },
        ),
        (
            32 << 10,
            Job {
                layers: vec![50, 72, 72, 5],
                batch: 200,
                epochs: 6,
                log_every: 0,
                lr: 1e-4,
                // Adam: the shared weight's two moments banded, its gradient sum banded alike.
                optimizer: adam,
                ..job::preset("dynamic").unwrap()
            },
        ),
    ];
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for (limit, job) in jobs {
        job.validate().unwrap();
        let label = format!("{:?} batch {} under {limit} bytes", job.layers, job.batch);
        let small = GpuContext::with_limits(&adapter.adapter, |l| {
            l.max_storage_buffer_binding_size = limit
        })
        .unwrap();
        let state = HostState::seeded(&job);
        let buffer = Layout::Buffer;
        let mut whole = GpuBackend::with_layout(full.clone(), &job, &state, buffer).unwrap();
        let mut banded = GpuBackend::with_layout(small.clone(), &job, &state, buffer).unwrap();
        assert!(
            banded.stats().dispatches_per_epoch > whole.stats().dispatches_per_epoch,
            "{label}: each product over the batch runs once per band"
        );
        let want = whole.run(job.epochs).unwrap();
        let got = banded.run(job.epochs).unwrap();
        small.check().unwrap();
        assert_within(&format!("{label}: against unbanded"), &got, &want, |i| {
            trajectory_tol(want[i])
        });
        let c = CpuBackend::new(&job, &state).run(job.epochs).unwrap();
        assert_within(&format!("{label}: against the CPU"), &got, &c, |i| {
            trajectory_tol(c[i])
        });
        let mut again = GpuBackend::with_layout(small.clone(), &job, &state, buffer).unwrap();
        assert_eq!(
            bits(&again.run(job.epochs).unwrap()),
            bits(&got),
            "{label}: rerun"
        );
        let (a, b) = (again.read_params().unwrap(), banded.read_params().unwrap());
        for ((name, x), (_, y)) in a.named().into_iter().zip(b.named()) {
            assert_eq!(bits(&x.data), bits(&y.data), "{label}: rerun {name}");
        }
        // Every weight, bias and optimizer state element, each epoch from the banded run's
        // state, against the unbanded run's and the CPU's within the radii of one epoch.
        let mut cpu = CpuBackend::new(&job, &state);
        for (other, b) in [
            ("unbanded", &mut whole as &mut dyn Backend),
            ("the CPU", &mut cpu),
        ] {
            let mut banded = GpuBackend::with_layout(small.clone(), &job, &state, buffer).unwrap();
            let data = (&state.x, &state.y);
            let (ratio, at) = block_on(follow(&job, data, &mut banded, b, job.epochs)).unwrap();
            assert!(
                ratio <= 1.0,
                "{label}: against {other}: {ratio:.2} of the bound at {at}"
            );
        }
    }
    // Mini-batches are gathered into the batch matrices whole: refused, naming the limit.
    let small = GpuContext::with_limits(&adapter.adapter, |l| {
        l.max_storage_buffer_binding_size = 16 << 10
    })
    .unwrap();
    let job = Job {
        layers: vec![40, 24, 5],
        batch: 300,
        rows: Some(600),
        epochs: 1,
        ..Job::default()
    };
    let err = GpuBackend::with_layout(small, &job, &HostState::seeded(&job), Layout::Buffer)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("mini-batch") && err.contains("max_storage_buffer_binding_size"),
        "{err}"
    );
}
