//! The run summary (one JSON object that scripts and benchmarks read).

pub use crate::backend::DeviceInfo;
use crate::error::{Error, Result};
use crate::job::Job;
use serde::Serialize;
use std::path::Path;

/// Timings of a run, in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Timings {
    /// Device set-up, pipeline creation and upload.
    pub setup_s: f64,
    /// Training, from the first epoch to the last loss read back.
    pub train_s: f64,
    pub epochs_per_s: f64,
    /// Achieved throughput of the products, from the job's FLOP count.
    pub gflops: f64,
    /// Host time spent recording and submitting GPU work, per epoch (0 on the CPU).
    pub encode_s_per_epoch: f64,
}

/// Everything a script needs about one run.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub tool: &'static str,
    pub version: &'static str,
    pub device: DeviceInfo,
    pub config: Job,
    /// Epochs actually run (fewer than `config.epochs` if the run diverged).
    pub epochs_run: usize,
    pub final_loss: Option<f32>,
    /// The loss of every epoch, computed before that epoch's update, for runs of up to
    /// [`crate::thinned::CAP`] epochs; in a longer run, evenly thinned: `losses[i]` is the loss of
    /// epoch `first_epoch + i * loss_stride`.
    pub losses: Vec<f32>,
    /// The epoch of `losses[0]`: 0, or the checkpoint's epoch in a resumed run.
    pub first_epoch: usize,
    /// 1, or the spacing in epochs of `losses` (a power of two) past the cap.
    pub loss_stride: usize,
    pub timings: Timings,
    /// Compute dispatches recorded per epoch (GPU), 0 on the CPU.
    pub dispatches_per_epoch: usize,
    /// Queue submissions over the whole training (GPU), 0 on the CPU.
    pub submits: usize,
    /// `Some(epoch)` if the loss became NaN or infinite there.
    pub diverged_at: Option<usize>,
    /// The held-out score at the start of each logged epoch and at the end (with a held-out set).
    pub validation: Vec<super::history::ValPoint>,
    /// For class targets, the accuracy on the training rows at the start of each logged epoch
    /// and at the end.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub accuracy: Vec<super::history::AccPoint>,
    /// With `--profile`: the GPU time of each kernel over the steps timed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
}

/// The per-kernel breakdown of `--profile`.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Steps whose kernels were timed (the first of each submission that fit the query set).
    pub steps_timed: usize,
    pub kernels: Vec<crate::backend::KernelTime>,
}

impl Summary {
    /// The summary of a run of `job` on `device` that took `setup_s` to set up, from its report
    /// and the device's counters (no held-out scores or accuracy: the caller adds those).
    pub fn new(
        device: DeviceInfo,
        job: &Job,
        report: &crate::train::Outcome,
        setup_s: f64,
        stats: crate::backend::Stats,
    ) -> Self {
        let epochs_run = report.epochs_run;
        let train_s = report.train_s.max(1e-12);
        Summary {
            tool: "gpu-train",
            version: env!("CARGO_PKG_VERSION"),
            device,
            config: job.clone(),
            epochs_run,
            final_loss: report.final_loss(),
            losses: report.losses.clone(),
            loss_stride: report.loss_stride,
            first_epoch: report.first_epoch,
            timings: Timings {
                setup_s,
                train_s: report.train_s,
                epochs_per_s: epochs_run as f64 / train_s,
                gflops: job.flops_of_epochs(epochs_run) / train_s / 1e9,
                encode_s_per_epoch: stats.encode_s / epochs_run.max(1) as f64,
            },
            dispatches_per_epoch: stats.dispatches_per_epoch,
            submits: stats.submits,
            diverged_at: report.diverged.map(|(e, _)| e),
            validation: Vec::new(),
            accuracy: Vec::new(),
            profile: match stats.steps_timed {
                0 => None,
                steps_timed => Some(Profile {
                    steps_timed,
                    kernels: stats.kernels,
                }),
            },
        }
    }

    /// The one line a run ends with: device, epochs, final loss, time and throughput.
    pub fn line(&self) -> String {
        let loss = (self.final_loss).map_or_else(|| "-".to_string(), |l| format!("{l:.6e}"));
        let accuracy = (self.accuracy.last())
            .map_or_else(String::new, |a| format!(" | accuracy {:.4}", a.accuracy));
        format!(
            "device {} | epochs {} | final loss {}{accuracy} | train {:.3} s | {:.1} epochs/s | \
             {:.2} GFLOP/s",
            self.device.name,
            self.epochs_run,
            loss,
            self.timings.train_s,
            self.timings.epochs_per_s,
            self.timings.gflops
        )
    }
}

pub fn write_summary(path: &Path, summary: &Summary) -> Result<()> {
    let json = serde_json::to_vec_pretty(summary)
        .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    super::atomic_write(path, |w| {
        w.write_all(&json)?;
        w.write_all(b"\n")
    })
}
