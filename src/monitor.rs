//! What a run measures besides its loss, at the start, at every log point and at the end, from the
//! parameters read back then: the held-out score (a validation set) and, with class targets, the
//! accuracy on the training rows (a forward pass over them on the host). The command line and the
//! browser page drive it between a [`crate::train::Session`]'s chunks.

use crate::backend::Backend;
use crate::error::Result;
use crate::eval;
use crate::init::{HostState, Matrix};
use crate::io::history::{AccPoint, ValPoint};
use crate::io::summary::Summary;
use crate::job::Job;
use crate::thinned::Thinned;

/// The scores of one run so far.
pub struct Monitor<'a> {
    job: &'a Job,
    train: &'a HostState,
    val: Option<(Matrix, Matrix)>,
    classes: bool,
    scores: Thinned<ValPoint>,
    accuracy: Thinned<AccPoint>,
}

impl<'a> Monitor<'a> {
    /// A monitor of `job` trained on `train`'s rows, scoring `val` (x, y) if given.
    pub fn new(job: &'a Job, train: &'a HostState, val: Option<(Matrix, Matrix)>) -> Self {
        Monitor {
            job,
            train,
            val,
            classes: eval::one_hot(&train.y),
            scores: Thinned::default(),
            accuracy: Thinned::default(),
        }
    }

    /// Whether there is anything to measure (a held-out set or class targets).
    pub fn active(&self) -> bool {
        self.val.is_some() || self.classes
    }

    /// Whether the targets are classes (one-hot rows): the accuracy is measured.
    pub fn classes(&self) -> bool {
        self.classes
    }

    /// Whether a held-out set is scored.
    pub fn validates(&self) -> bool {
        self.val.is_some()
    }

    /// Whether the scores are due after `done` epochs: at every log point and at the end.
    pub fn due(&self, done: usize) -> bool {
        let every = self.job.log_every;
        (every > 0 && done.is_multiple_of(every)) || done == self.job.epochs
    }

    /// Score the parameters `backend` holds at the start of `epoch` (nothing is read back when
    /// there is nothing to measure).
    pub async fn measure(&mut self, backend: &mut dyn Backend, epoch: usize) -> Result<()> {
        if !self.active() {
            return Ok(());
        }
        let params = backend.read_params_async().await?;
        if let Some((x, y)) = &self.val {
            let s = eval::score(self.job, &params, x, y);
            self.scores.push(ValPoint {
                epoch,
                loss: s.loss,
                accuracy: s.accuracy,
            });
        }
        if self.classes {
            let pred = eval::predict(self.job, &params, &self.train.x);
            self.accuracy.push(AccPoint {
                epoch,
                accuracy: eval::accuracy(&pred, &self.train.y),
            });
        }
        Ok(())
    }

    /// The latest held-out score.
    pub fn last_score(&self) -> Option<ValPoint> {
        self.scores.last().copied()
    }

    /// The latest training accuracy.
    pub fn last_accuracy(&self) -> Option<AccPoint> {
        self.accuracy.last().copied()
    }

    /// What a log line of `epoch` adds after its loss: `  acc A  val_loss L  val_acc V`, each
    /// only where measured at that epoch.
    pub fn text(&self, epoch: usize) -> String {
        let train = (self.accuracy.last().filter(|a| a.epoch == epoch))
            .map_or_else(String::new, |a| format!("  acc {:.4}", a.accuracy));
        let val = (self.scores.last().filter(|v| v.epoch == epoch)).map_or_else(String::new, |v| {
            let acc = v
                .accuracy
                .map_or_else(String::new, |a| format!("  val_acc {a:.4}"));
            format!("  val_loss {:.6e}{acc}", v.loss)
        });
        format!("{train}{val}")
    }

    /// Put the scores into the run's summary.
    pub fn fill(&self, summary: &mut Summary) {
        summary.validation = self.scores.with_last();
        summary.accuracy = self.accuracy.with_last();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::wait::block_on;

    fn digits() -> (Job, HostState) {
        let mut job = crate::job::preset("digits").unwrap();
        job.epochs = 4;
        job.log_every = 2;
        let state = HostState::seeded(&job);
        (job, state)
    }

    #[test]
    fn scores_the_held_out_set_and_the_training_accuracy_at_log_points() {
        let (job, state) = digits();
        let val = (state.x.clone(), state.y.clone());
        let mut backend = CpuBackend::new(&job, &state);
        let mut m = Monitor::new(&job, &state, Some(val));
        assert!(m.classes() && m.validates());
        assert_eq!(
            (0..=4).map(|d| m.due(d)).collect::<Vec<_>>(),
            [true, false, true, false, true]
        );
        block_on(m.measure(&mut backend, 0)).unwrap();
        // The held-out set is the training set here: the two agree with eval's own score.
        let params = backend.read_params().unwrap();
        let want = eval::score(&job, &params, &state.x, &state.y);
        let v = m.last_score().unwrap();
        assert_eq!((v.epoch, v.loss, v.accuracy), (0, want.loss, want.accuracy));
        assert_eq!(m.last_accuracy().unwrap().accuracy, want.accuracy.unwrap());
        let text = m.text(0);
        assert!(
            text.contains("  acc ") && text.contains("val_loss"),
            "{text}"
        );
        assert_eq!(m.text(2), "");
    }

    #[test]
    fn reads_nothing_back_without_a_held_out_set_or_classes() {
        let job = Job::default();
        let state = HostState::seeded(&job);
        let mut backend = CpuBackend::new(&job, &state);
        let mut m = Monitor::new(&job, &state, None);
        assert!(!m.active());
        block_on(m.measure(&mut backend, 0)).unwrap();
        assert!(m.last_score().is_none() && m.last_accuracy().is_none());
    }
}
