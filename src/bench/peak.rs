//! The machine's fused multiply-add peak: what the CPU path's GFLOP/s are measured against.
//!
//! Each thread runs `CHAINS` independent chains of vector FMAs (`acc = acc·m + a`, no loads, no
//! stores), enough of them to cover the FMA latency times the number of FMA units on any core of
//! today, with the widest vectors the CPU has (AVX-512F, else AVX2 + FMA on x86-64; NEON on
//! aarch64; else plain scalar multiply-adds, which the compiler may vectorise). All threads start
//! together on a barrier and the time is that of the slowest, so the figure for two threads is
//! two cores busy at once (with whatever clock the chip gives two busy cores), not twice one. The
//! best of a few rounds is the peak. `cargo bench --bench fma_peak` prints it for one thread and
//! for every core; `gpu-train bench` measures it before its CPU rows and prints each row's share
//! of it.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Independent FMA chains per thread: latency 4 cycles × 2 FMA units needs 8; 12 leaves room
/// for 5-cycle latencies and keeps clear of spilling (12 of 16 or 32 vector registers).
pub const CHAINS: usize = 12;

/// The measured peak.
#[derive(Debug, Clone, PartialEq)]
pub struct Peak {
    /// Threads that ran at once.
    pub threads: usize,
    /// The instruction set the chains used: `avx512f`, `avx2+fma`, `neon` or `scalar`.
    pub isa: &'static str,
    /// Floating-point operations per second of all threads together (an FMA counts two), in
    /// GFLOP/s.
    pub gflops: f64,
}

/// One thread's inner loop: `iters` rounds of `CHAINS` FMAs of `lanes` f32 each. Returns a value
/// derived from the accumulators, so that nothing is optimised away.
type Kernel = fn(iters: u64) -> f32;

/// The FMA kernel of the width gemm's kernels run here ([`crate::cpu::kernels`]), its name and its
/// f32 lanes.
fn kernel() -> (Kernel, &'static str, usize) {
    let isa = crate::cpu::kernels();
    match isa {
        // SAFETY (of the calls inside): `kernels` names an ISA only where its features were
        // detected.
        #[cfg(target_arch = "x86_64")]
        "avx512f" => (|n| unsafe { x86::fma512(n) }, isa, 16),
        #[cfg(target_arch = "x86_64")]
        "avx2+fma" => (|n| unsafe { x86::fma256(n) }, isa, 8),
        #[cfg(target_arch = "aarch64")]
        "neon" => (|n| unsafe { arm::fma128(n) }, isa, 4),
        _ => (scalar, "scalar", 1),
    }
}

/// `CHAINS` chains of plain multiply-adds on f32, for a CPU with none of the above.
fn scalar(iters: u64) -> f32 {
    let mut acc = [0.0f32; CHAINS];
    for (i, a) in acc.iter_mut().enumerate() {
        *a = i as f32 * 1e-3;
    }
    let (m, c) = (
        std::hint::black_box(0.999_999f32),
        std::hint::black_box(1e-7f32),
    );
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * m + c;
        }
    }
    acc.iter().sum()
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::CHAINS;
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512F.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn fma512(iters: u64) -> f32 {
        let m = _mm512_set1_ps(std::hint::black_box(0.999_999));
        let c = _mm512_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm512_set1_ps(i as f32 * 1e-3);
        }
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm512_fmadd_ps(*a, m, c);
            }
        }
        let mut s = _mm512_setzero_ps();
        for a in acc {
            s = _mm512_add_ps(s, a);
        }
        _mm512_reduce_add_ps(s)
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn fma256(iters: u64) -> f32 {
        let m = _mm256_set1_ps(std::hint::black_box(0.999_999));
        let c = _mm256_set1_ps(std::hint::black_box(1e-7));
        let mut acc = [_mm256_setzero_ps(); CHAINS];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = _mm256_set1_ps(i as f32 * 1e-3);
        }
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = _mm256_fmadd_ps(*a, m, c);
            }
        }
        let mut s = _mm256_setzero_ps();
        for a in acc {
            s = _mm256_add_ps(s, a);
        }
        let mut lanes = [0.0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        lanes.iter().sum()
    }
}

#[cfg(target_arch = "aarch64")]
mod arm {
    use super::CHAINS;
    use std::arch::aarch64::*;

    /// # Safety
    /// The CPU must have NEON.
    #[target_feature(enable = "neon")]
    pub unsafe fn fma128(iters: u64) -> f32 {
        let m = vdupq_n_f32(std::hint::black_box(0.999_999));
        let c = vdupq_n_f32(std::hint::black_box(1e-7));
        let mut acc = [vdupq_n_f32(0.0); CHAINS];
        for (i, a) in acc.iter_mut().enumerate() {
            *a = vdupq_n_f32(i as f32 * 1e-3);
        }
        for _ in 0..iters {
            for a in acc.iter_mut() {
                *a = vfmaq_f32(c, *a, m);
            }
        }
        let mut s = vdupq_n_f32(0.0);
        for a in acc {
            s = vaddq_f32(s, a);
        }
        vaddvq_f32(s)
    }
}

/// Seconds for `threads` threads to run `iters` rounds each, all started together.
fn round(k: Kernel, threads: usize, iters: u64) -> f64 {
    if threads <= 1 {
        let t = Instant::now();
        std::hint::black_box(k(iters));
        return t.elapsed().as_secs_f64();
    }
    let start = Arc::new(Barrier::new(threads + 1));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let t = Instant::now();
                std::hint::black_box(k(iters));
                t
            })
        })
        .collect();
    let t0 = Instant::now();
    start.wait();
    for h in handles {
        // A probe thread only panics if the machine cannot spawn: report no time then.
        if h.join().is_err() {
            return f64::INFINITY;
        }
    }
    t0.elapsed().as_secs_f64()
}

/// The FMA peak of `threads` threads at once: the best of `rounds` rounds of about `round_time`
/// each (after one calibrating round).
pub fn measure_with(threads: usize, rounds: usize, round_time: Duration) -> Peak {
    let threads = threads.max(1);
    let (k, isa, lanes) = kernel();
    let flops_per_iter = (2 * CHAINS * lanes) as f64;
    // Calibrate: a short round on one thread gives the iterations per second.
    let probe = 200_000u64;
    let t = round(k, 1, probe).max(1e-6);
    let iters = ((probe as f64 / t) * round_time.as_secs_f64()).max(1000.0) as u64;
    let best = (0..rounds.max(1))
        .map(|_| round(k, threads, iters))
        .fold(f64::INFINITY, f64::min);
    Peak {
        threads,
        isa,
        gflops: flops_per_iter * iters as f64 * threads as f64 / best / 1e9,
    }
}

/// The FMA peak of `threads` threads: the best of 5 rounds of 40 ms (about a quarter second).
pub fn measure(threads: usize) -> Peak {
    measure_with(threads, 5, Duration::from_millis(40))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels compute what they claim: `CHAINS` chains of `a·m + c` (checked against the
    /// scalar loop, which every machine runs), and the probe reports a positive, finite rate.
    #[test]
    fn probe_runs_the_chains_it_counts() {
        let (k, _, lanes) = kernel();
        let got = k(1000);
        let want = scalar(1000) * lanes as f32;
        assert!(
            ((got - want) / want).abs() < 1e-3,
            "{got} vs {want} (lanes {lanes})"
        );
        let p = measure_with(2, 1, Duration::from_millis(2));
        assert_eq!(p.threads, 2);
        assert!(p.gflops.is_finite() && p.gflops > 0.0, "{p:?}");
    }
}
