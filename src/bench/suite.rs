//! The bench's suite: its cases (training jobs of the size sweep, matmul shapes with the naive
//! reference) and the time budget of each.

use super::*;

/// One case of the suite.
#[derive(Debug, Clone)]
pub(super) enum Case {
    Train {
        name: String,
        job: Box<Job>,
        /// Epochs per sample; 0: calibrated to about `target_s`.
        epochs: usize,
    },
    /// `variants` models of `job` (seeds 0, 1, ...) trained together as `gpu-train sweep` trains
    /// them; a sample is `epochs` epochs of every one (0: calibrated).
    Sweep {
        name: String,
        job: Box<Job>,
        variants: usize,
        epochs: usize,
    },
    Matmul {
        name: String,
        trans: (bool, bool),
        dims: (usize, usize, usize),
        naive: bool,
    },
}

impl Case {
    pub(super) fn name(&self) -> &str {
        match self {
            Case::Train { name, .. } | Case::Sweep { name, .. } | Case::Matmul { name, .. } => name,
        }
    }
}

/// The `1000 -> hidden -> 10` net at `batch`, with an lr scaled so every size trains stably.
pub(super) fn sweep_job(hidden: usize, batch: usize) -> Job {
    let base = Job::default();
    Job {
        layers: vec![1000, hidden, 10],
        batch,
        lr: base.lr * (64.0 * 100.0) / (batch * hidden) as f32,
        log_every: 0,
        ..base
    }
}

pub(super) fn matmul_case(
    trans: (bool, bool),
    (m, n, k): (usize, usize, usize),
    naive: bool,
) -> Case {
    let t = match trans {
        (false, false) => "",
        (true, false) => "/Aᵀ",
        (false, true) => "/Bᵀ",
        (true, true) => "/AᵀBᵀ",
    };
    let kernel = if naive { "naive" } else { "tuned" };
    Case::Matmul {
        name: format!("matmul/{m}x{n}x{k}{t}/{kernel}"),
        trans,
        dims: (m, n, k),
        naive,
    }
}

pub(super) fn suite(quick: bool) -> Vec<Case> {
    let mut cases = vec![Case::Train {
        name: "train/default".into(),
        job: Box::new(Job {
            log_every: 0,
            ..Job::default()
        }),
        epochs: 500,
    }];
    // Many small models at once: what a big GPU can do with this tool's nets (models·epochs/s).
    let variants: &[usize] = if quick { &[8] } else { &[8, 32, 64, 128] };
    for &n in variants {
        cases.push(Case::Sweep {
            name: format!("train/sweep-{n}"),
            job: Box::new(Job {
                log_every: 0,
                ..Job::default()
            }),
            variants: n,
            epochs: 0,
        });
    }
    let (hidden, batch): (&[usize], &[usize]) = if quick {
        (&[1024], &[1024])
    } else {
        (&[256, 1024, 4096], &[256, 1024, 4096])
    };
    for &h in hidden {
        cases.push(Case::Train {
            name: format!("train/h{h}-b64"),
            job: Box::new(sweep_job(h, 64)),
            epochs: 0,
        });
    }
    for &b in batch {
        cases.push(Case::Train {
            name: format!("train/h100-b{b}"),
            job: Box::new(sweep_job(100, b)),
            epochs: 0,
        });
    }
    let nn = (false, false);
    // The naive kernel is ~100x slower than the tuned one on a software adapter (16 s for one
    // 1024³ product on lavapipe), so --quick compares the two at 512³.
    let (square, reference): (&[usize], usize) = if quick {
        (&[256, 512], 512)
    } else {
        (&[256, 1024, 2048], 1024)
    };
    for &s in square {
        cases.push(matmul_case(nn, (s, s, s), false));
    }
    cases.push(matmul_case(nn, (reference, reference, reference), true));
    // Skinny: the default job's forward and weight-gradient products, and those of hidden 4096.
    let mut skinny = vec![(nn, (64, 100, 1000)), ((true, false), (1000, 100, 64))];
    if !quick {
        skinny.extend([
            (nn, (64, 4096, 1000)),
            ((true, false), (1000, 4096, 64)),
            ((false, true), (64, 1000, 4096)),
        ]);
    }
    for (t, dims) in skinny {
        cases.push(matmul_case(t, dims, false));
    }
    cases
}

/// Samples and warm-up runs per case, and the time a calibrated sample aims at.
pub(super) struct Budget {
    pub(super) samples: usize,
    pub(super) warmup: usize,
    pub(super) target_s: f64,
}

impl Budget {
    pub(super) fn of(quick: bool) -> Self {
        if quick {
            Budget {
                samples: 3,
                warmup: 1,
                target_s: 0.15,
            }
        } else {
            Budget {
                samples: 7,
                warmup: 2,
                target_s: 0.5,
            }
        }
    }
}

impl Budget {
    /// Extra warm-up runs and samples of a case whose sample takes about `sample_s`: one far
    /// longer than the target (the naive kernel at 1024³ takes 16 s on lavapipe) gets no warm-up
    /// beyond the run that measured it and at most 3 samples.
    pub(super) fn runs(&self, sample_s: f64) -> (usize, usize) {
        if sample_s > 4.0 * self.target_s {
            (0, self.samples.min(3))
        } else {
            (self.warmup.saturating_sub(1), self.samples)
        }
    }
}
