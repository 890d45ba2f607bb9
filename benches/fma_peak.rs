//! The machine's FMA peak, which the CPU path's GFLOP/s are a share of: `cargo bench --bench
//! fma_peak` prints it for one thread and for every core at once (see `gpu_train::bench::peak`).

use gpu_train::bench::peak;

fn main() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut counts = vec![1];
    if cores > 1 {
        counts.push(cores);
    }
    for threads in counts {
        let p = peak::measure_with(threads, 9, std::time::Duration::from_millis(100));
        println!(
            "fma peak: {:>2} thread(s), {}, {} chains: {:.1} GFLOP/s ({:.1} per thread)",
            p.threads,
            p.isa,
            peak::CHAINS,
            p.gflops,
            p.gflops / p.threads as f64
        );
    }
}
