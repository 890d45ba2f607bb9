//! The matmul kernel alone on the GPU: the five products of a default-job epoch (with the
//! epilogues and block sizes training uses) and a 1024x1024x1024 product of each block variant.
//! Throughput is reported as elements = floating-point operations (2·m·n·k), so criterion's
//! "Gelem/s" reads as GFLOP/s. Each sample is many back-to-back dispatches in one submission,
//! timed until the GPU is idle.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use gpu_train::gpu::{time_matmul, Acc, Act, Block, GpuContext, MatmulKey, Mode, Opt, Update};
use gpu_train::wait::block_on;
use std::time::Duration;

fn benches(c: &mut Criterion) {
    let Some(ctx) = GpuContext::auto().expect("opening the GPU failed") else {
        eprintln!("no GPU adapter: matmul benches skipped");
        return;
    };
    let dev = ctx.info.device_type;
    let layout = ctx.auto_layout();
    let key = |trans_a, trans_b, mode, dims| MatmulKey {
        trans_a,
        trans_b,
        mode,
        block: Block::for_product(dev, layout, dims),
        bias: false,
        opt: Opt::Sgd,
        acc: Acc::default(),
        update: Update::default(),
        act: Act::default(),
        layout,
    };
    let training = [
        (
            "x.w1_relu_64x100x1000",
            (false, false, Mode::Activate),
            (64, 100, 1000),
        ),
        (
            "a1.w2_sse_64x10x100",
            (false, false, Mode::SquaredError),
            (64, 10, 100),
        ),
        (
            "g2.w2T_mask_64x100x10",
            (false, true, Mode::ActivationGrad),
            (64, 100, 10),
        ),
        (
            "a1T.g2_sgd_100x10x64",
            (true, false, Mode::Update),
            (100, 10, 64),
        ),
        (
            "xT.g1_sgd_1000x100x64",
            (true, false, Mode::Update),
            (1000, 100, 64),
        ),
    ];
    let mut g = c.benchmark_group("matmul_default_job");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for (name, (ta, tb, mode), dims) in training {
        let (m, n, k) = dims;
        g.throughput(Throughput::Elements(2 * (m * n * k) as u64));
        let key = key(ta, tb, mode, dims);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let per =
                    block_on(time_matmul(&ctx, key, dims, iters as usize)).expect("matmul failed");
                Duration::from_secs_f64(per * iters as f64)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("matmul_1024");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    let dims = (1024, 1024, 1024);
    g.throughput(Throughput::Elements(2 * 1024 * 1024 * 1024));
    for block in Block::of_layout(layout) {
        let key = MatmulKey {
            trans_a: false,
            trans_b: false,
            mode: Mode::Store,
            block,
            bias: false,
            opt: Opt::Sgd,
            acc: Acc::default(),
            update: Update::default(),
            act: Act::default(),
            layout,
        };
        g.bench_function(block.entry_point(), |b| {
            b.iter_custom(|iters| {
                let per =
                    block_on(time_matmul(&ctx, key, dims, iters as usize)).expect("matmul failed");
                Duration::from_secs_f64(per * iters as f64)
            })
        });
    }
    g.finish();
}

criterion_group!(matmul_benches, benches);
criterion_main!(matmul_benches);
