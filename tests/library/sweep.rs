//! A sweep's models on the GPU ([`gpu_train::gpu::GpuModels`]): 1, 3 and 65 models in one
//! submission, in both layouts in the same dispatches (all 65 in one set, and in stacks of 8, the
//! last of one), each bit for bit its lone run, one sitting out half the epochs
//! ([`gpu_train::check::sweep::check_sweep`]); models of one seed on one resident dataset.

use crate::common::gpu_or_skip;
use gpu_train::gpu::layout::Layout;
use gpu_train::gpu::GpuModels;
use gpu_train::init::HostState;
use gpu_train::job::{Job, Optimizer, OptimizerKind};
use gpu_train::sweep::Models;
use gpu_train::wait::block_on;

#[test]
fn gpu_sweep_models_match_their_lone_runs() {
    let Some(ctx) = gpu_or_skip() else { return };
    // Odd widths and a short last mini-batch (3 steps an epoch: an odd number, so that the
    // texels layout's weight pairs end a chunk on either texture); momentum, so the state has a
    // buffer to compare.
    let base = Job {
        layers: vec![7, 5, 3],
        batch: 4,
        rows: Some(9),
        epochs: 3,
        bias: true,
        log_every: 0,
        optimizer: Optimizer {
            kind: OptimizerKind::Momentum,
            ..Optimizer::default()
        },
        ..Job::default()
    };
    for layout in [Layout::Texels, Layout::Buffer] {
        for (models, per_stack) in [(1u64, None), (3, None), (65, None), (65, Some(8))] {
            let jobs: Vec<Job> = (0..models)
                .map(|seed| Job {
                    seed,
                    lr: 1e-3 * (1 + seed % 5) as f32,
                    ..base.clone()
                })
                .collect();
            let check = gpu_train::check::sweep::check_sweep(&ctx, (layout, per_stack), &jobs);
            let diff = block_on(check)
                .unwrap_or_else(|e| panic!("{layout}, {models} models by {per_stack:?}: {e}"));
            assert_eq!(diff, None, "{layout}, {models} models by {per_stack:?}");
        }
        // Models of one seed share one resident dataset (read by the gather of each); models of
        // other seeds have their own. The bits above are the check that sharing changes nothing.
        let jobs: Vec<Job> = [(0, 1e-3), (0, 2e-3), (1, 1e-3), (0, 3e-3)]
            .into_iter()
            .map(|(seed, lr)| Job {
                seed,
                lr,
                ..base.clone()
            })
            .collect();
        let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
        let models = block_on(GpuModels::create(ctx.clone(), &jobs, &states, layout)).unwrap();
        assert_eq!(models.datasets(), 2, "{layout}: seeds 0 and 1");
        // The models share their dispatches, in both layouts.
        let shared = models.per_model_dispatches();
        assert_eq!(shared, None, "{layout}");
        // Two datasets: each model's own in the stack (no one dataset read by all).
        assert!(!models.batching().contains("read by all"), "{layout}");
        let check = gpu_train::check::sweep::check_sweep(&ctx, (layout, None), &jobs);
        let diff = block_on(check).unwrap();
        assert_eq!(diff, None, "{layout}, a shared dataset");
        // Models of one seed alone: their one resident dataset bound once, read by all.
        let one_seed: Vec<Job> = jobs.into_iter().filter(|j| j.seed == 0).collect();
        let states: Vec<HostState> = one_seed.iter().map(HostState::seeded).collect();
        let models = block_on(GpuModels::create(ctx.clone(), &one_seed, &states, layout)).unwrap();
        let read_by_all = models
            .batching()
            .contains("one resident dataset read by all");
        assert!(read_by_all, "{layout}: {}", models.batching());
        let check = gpu_train::check::sweep::check_sweep(&ctx, (layout, None), &one_seed);
        assert_eq!(
            block_on(check).unwrap(),
            None,
            "{layout}, one resident dataset"
        );
        // One batch of one seed: one x and one y read by every model of the stack.
        let jobs: Vec<Job> = (1..4)
            .map(|i| Job {
                batch: 7,
                rows: None,
                lr: 1e-3 * i as f32,
                ..base.clone()
            })
            .collect();
        let states: Vec<HostState> = jobs.iter().map(HostState::seeded).collect();
        let models = block_on(GpuModels::create(ctx.clone(), &jobs, &states, layout)).unwrap();
        let one = models.batching().contains("one batch read by all");
        assert!(one, "{layout}: {}", models.batching());
        let check = gpu_train::check::sweep::check_sweep(&ctx, (layout, None), &jobs);
        assert_eq!(block_on(check).unwrap(), None, "{layout}, one batch");
    }
}

/// A sweep's models on the CPU ([`gpu_train::cpu::CpuModels`]): 1, 2, 3 and 5 models (on a team
/// of two: none, all, two and four of them one to a thread, the rest on the whole team), each bit
/// for bit its lone run on the whole team, one sitting out half the epochs. The products are big
/// enough to be split over the team (mini-batches of 64 rows and a last one of 22, an inner
/// dimension of 1537 split in ranges), so a model on one thread that made its products from other
/// parts than the team's differs: made in one gemm each, the check fails at epoch 1 (tried; at
/// the default job's 1000, gemm's own blocks of the inner dimension happen to fall where the
/// team's ranges do, and the same mutant passes).
#[test]
fn cpu_sweep_models_match_their_lone_runs() {
    let base = Job {
        layers: vec![1537, 100, 10],
        rows: Some(150),
        epochs: 4,
        bias: true,
        log_every: 0,
        lr_schedule: gpu_train::job::LrSchedule::parse(Some("step:2:0.5"), Some("3:0.2")).unwrap(),
        optimizer: Optimizer {
            kind: OptimizerKind::Adam,
            weight_decay: 1e-2,
            ..Optimizer::default()
        },
        ..Job::default()
    };
    for models in [1u64, 2, 3, 5] {
        let jobs: Vec<Job> = (0..models)
            .map(|seed| Job {
                seed,
                lr: 1e-4 * (1 + seed % 3) as f32,
                ..base.clone()
            })
            .collect();
        let check = gpu_train::check::sweep::check_cpu_sweep(&jobs);
        let diff = block_on(check).unwrap_or_else(|e| panic!("{models} models: {e}"));
        assert_eq!(diff, None, "{models} models");
    }
}
