//! Training speed: one epoch and the whole 500-epoch default job, on the CPU and on the GPU (the
//! best adapter; skipped with a message when there is none). Each measured iteration starts from a
//! freshly uploaded state, so only training is timed, as in the summary line's `train` figure.
//! The GPU figures include the readbacks (one per 50 epochs, as the CLI does by default), so they
//! measure host overhead too.

use criterion::{criterion_group, criterion_main, Criterion};
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::gpu::{GpuBackend, GpuContext};
use gpu_train::init::HostState;
use gpu_train::job::Job;
use gpu_train::train;
use std::time::{Duration, Instant};

fn time_runs(iters: u64, epochs: usize, mut make: impl FnMut() -> Box<dyn Backend>) -> Duration {
    let job = Job {
        epochs,
        ..Job::default()
    };
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let mut backend = make();
        let start = Instant::now();
        let report = train::train(&job, backend.as_mut(), |_, _| {}).expect("training failed");
        total += start.elapsed();
        assert!(report.diverged.is_none());
    }
    total
}

fn benches(c: &mut Criterion) {
    let job = Job::default();
    let state = HostState::seeded(&job);
    let gpu = GpuContext::auto().expect("opening the GPU failed");
    if gpu.is_none() {
        eprintln!("no GPU adapter: GPU benches skipped");
    }

    let mut g = c.benchmark_group("default_job_500_epochs");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("cpu", |b| {
        b.iter_custom(|n| time_runs(n, 500, || Box::new(CpuBackend::new(&job, &state))))
    });
    if let Some(ctx) = &gpu {
        g.measurement_time(Duration::from_secs(60));
        g.bench_function("gpu", |b| {
            b.iter_custom(|n| {
                time_runs(n, 500, || {
                    Box::new(GpuBackend::new(ctx.clone(), &job, &state).expect("GPU setup failed"))
                })
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("one_epoch");
    g.bench_function("cpu", |b| {
        let mut backend = CpuBackend::new(&job, &state);
        b.iter(|| backend.epoch())
    });
    if let Some(ctx) = &gpu {
        // One epoch per submission and readback: the latency of a single step.
        g.bench_function("gpu", |b| {
            let mut backend = GpuBackend::new(ctx.clone(), &job, &state).expect("GPU setup failed");
            b.iter(|| backend.run(1).expect("GPU run failed"))
        });
    }
    g.finish();
}

criterion_group!(train_benches, benches);
criterion_main!(train_benches);
