//! A fixed team of threads for the CPU path's products: `run(f)` calls `f(0)` on the calling
//! thread and `f(1) .. f(size - 1)` on the team's workers, and returns when all are done.
//!
//! Each product of the default job is about 0.1 ms of work, so what a fork-join costs matters:
//! rayon's `join` put its idle worker to sleep between products, and waking it (a futex, the
//! scheduler, a `sched_yield` loop) took a fifth of an epoch. The team's workers instead spin on a
//! generation counter for a while after each job ([`SPIN`]) and only then sleep on a condition
//! variable, so that a job that follows within the spin costs a cache line or two to start. A
//! team that is idle longer than that costs nothing.
//!
//! Which part runs where is fixed by the part's index, never by timing, so the results are the
//! same bits from run to run for a given team size. Two callers of one team at once: the second
//! runs all the parts itself, in order (the same parts, so the same bits). So does a part that
//! calls `run` again: a sweep's model trained on one thread of the team ([`super::CpuModels`])
//! makes each of its products from the parts the whole team would make it from.

use std::cell::UnsafeCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, TryLockError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a worker spins for the next job before it sleeps.
pub const SPIN: Duration = Duration::from_micros(200);

/// A job: part `i` of it is `f(i)`.
type Task<'a> = dyn Fn(usize) + Sync + 'a;

struct Shared {
    /// Bumped once per job (and once to stop).
    generation: AtomicU64,
    /// The current job, valid while `pending > 0` (a lifetime-erased borrow of the caller's
    /// closure: `run` does not return before every worker has finished with it).
    job: UnsafeCell<Option<&'static Task<'static>>>,
    /// Workers still running the current job.
    pending: AtomicUsize,
    /// A worker's part panicked.
    panicked: AtomicBool,
    stop: AtomicBool,
    /// Workers asleep (or about to be) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the thread that holds `busy` in `Team::run`, before the
// generation bump that publishes it (release) and while no worker reads it (pending == 0); the
// workers read it after seeing the bump (acquire) and before decrementing `pending`.
unsafe impl Sync for Shared {}

/// A fixed team of `size` threads: the caller and `size - 1` workers.
pub struct Team {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Held by the caller of `run` while its job is out.
    busy: Mutex<()>,
}

impl Team {
    /// A team of `size` threads (at least one: the caller alone, no workers). A worker that
    /// cannot be spawned leaves the team smaller; the parts are then run by the caller in turn.
    pub fn new(size: usize) -> Team {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
        });
        let mut workers = Vec::new();
        for index in 1..size.max(1) {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("gpu-train cpu {index}"))
                .spawn(move || work(&s, index));
            match spawned {
                Ok(h) => workers.push(h),
                Err(_) => break,
            }
        }
        Team {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    }

    /// Threads that run parts at once (the caller included).
    pub fn size(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f(i)` for every part `i < parts`: part `i` on thread `i % size` (0 the caller), and
    /// returns when all are done. A panic in a worker's part is raised here.
    pub fn run(&self, parts: usize, f: &Task<'_>) {
        let busy = match self.busy.try_lock() {
            Ok(g) => Some(g),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        };
        if busy.is_none() || self.workers.is_empty() || parts <= 1 {
            (0..parts).for_each(f);
            return;
        }
        let size = self.size();
        let s = &self.shared;
        let mine = |i: usize| (i..parts).step_by(size).for_each(f);
        // Each worker runs the parts of its index (`index`, `index + size`, ...).
        let each = move |index: usize| mine(index);
        let task: &Task<'_> = &each;
        // SAFETY: see `Shared`; the borrow outlives its use because we wait below for
        // `pending == 0` before returning (or unwinding: the wait is in a guard's drop).
        unsafe {
            *s.job.get() = Some(std::mem::transmute::<&Task<'_>, &'static Task<'static>>(
                task,
            ));
        }
        s.panicked.store(false, Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        s.generation.fetch_add(1, Ordering::SeqCst);
        if s.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        struct Wait<'a>(&'a Shared);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                let mut spins = 0u32;
                while self.0.pending.load(Ordering::Acquire) > 0 {
                    spins = spins.saturating_add(1);
                    if spins < 1 << 16 {
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
                // SAFETY: every worker is done with the job.
                unsafe { *self.0.job.get() = None };
            }
        }
        let wait = Wait(s);
        mine(0);
        drop(wait);
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a CPU worker thread panicked");
        }
        drop(busy);
    }
}

impl Drop for Team {
    fn drop(&mut self) {
        let s = &self.shared;
        s.stop.store(true, Ordering::SeqCst);
        s.generation.fetch_add(1, Ordering::SeqCst);
        {
            let _g = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.wake.notify_all();
        }
        for h in self.workers.drain(..) {
            // A worker only ends by returning; its panics are caught in `work`.
            let _ = h.join();
        }
    }
}

/// A worker's loop: wait for a new generation (spinning for [`SPIN`], then asleep), run its
/// parts of the job, report done.
fn work(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(64) || start.elapsed() < SPIN {
                std::hint::spin_loop();
                continue;
            }
            let guard = s.lock.lock().unwrap_or_else(|p| p.into_inner());
            s.sleepers.fetch_add(1, Ordering::SeqCst);
            let mut guard = guard;
            while s.generation.load(Ordering::SeqCst) == seen {
                guard = s.wake.wait(guard).unwrap_or_else(|p| p.into_inner());
            }
            s.sleepers.fetch_sub(1, Ordering::SeqCst);
        }
        if s.stop.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: see `Shared`: the job was published before the generation we saw.
        if let Some(job) = unsafe { *s.job.get() } {
            if catch_unwind(AssertUnwindSafe(|| job(index))).is_err() {
                s.panicked.store(true, Ordering::Relaxed);
            }
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_part_runs_once_on_its_thread_for_any_team_and_part_count() {
        for size in [1, 2, 3, 5] {
            let team = Team::new(size);
            for parts in [0, 1, 2, 3, 7, 16] {
                for _ in 0..50 {
                    let hits: Vec<AtomicU32> = (0..parts).map(|_| AtomicU32::new(0)).collect();
                    let caller = std::thread::current().id();
                    let on_caller: Vec<AtomicBool> =
                        (0..parts).map(|_| AtomicBool::new(false)).collect();
                    team.run(parts, &|i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                        on_caller[i]
                            .store(std::thread::current().id() == caller, Ordering::Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                    for (i, c) in on_caller.iter().enumerate() {
                        let want = parts <= 1 || i % team.size() == 0;
                        assert_eq!(c.load(Ordering::Relaxed), want, "size {size} part {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn workers_wake_after_sleeping_and_a_shared_team_serves_two_callers() {
        let team = Team::new(2);
        std::thread::sleep(SPIN * 5);
        let n = AtomicU32::new(0);
        team.run(2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
        let team = Arc::new(team);
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let t = Arc::clone(&team);
                std::thread::spawn(move || {
                    let n = AtomicU32::new(0);
                    for _ in 0..1000 {
                        t.run(4, &|_| {
                            n.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                    n.load(Ordering::Relaxed)
                })
            })
            .collect();
        for c in callers {
            assert_eq!(c.join().expect("a caller"), 4000);
        }
    }

    #[test]
    fn a_part_that_runs_a_job_runs_its_parts_itself_in_order() {
        let team = Team::new(2);
        for outer in [1, 2, 3, 4] {
            let seen: Vec<Mutex<Vec<usize>>> = (0..outer).map(|_| Mutex::new(Vec::new())).collect();
            team.run(outer, &|i| {
                let me = std::thread::current().id();
                let ran = Mutex::new(Vec::new());
                team.run(5, &|j| {
                    assert_eq!(std::thread::current().id(), me, "part {j} of part {i}");
                    ran.lock().unwrap().push(j);
                });
                *seen[i].lock().unwrap() = ran.into_inner().unwrap();
            });
            for s in &seen {
                assert_eq!(*s.lock().unwrap(), vec![0, 1, 2, 3, 4], "{outer} parts");
            }
        }
        // And the team still runs jobs on all its threads after.
        let callers = Mutex::new(std::collections::HashSet::new());
        team.run(2, &|_| {
            callers.lock().unwrap().insert(std::thread::current().id());
        });
        assert_eq!(callers.into_inner().unwrap().len(), 2);
    }

    #[test]
    fn a_worker_panic_is_raised_in_the_caller_and_the_team_goes_on() {
        let team = Team::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            team.run(2, &|i| assert!(i != 1, "part one fails"));
        }));
        assert!(r.is_err());
        let n = AtomicU32::new(0);
        team.run(2, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
