//! Scoring a net on held-out data: the forward pass of the CPU reference over every row, the
//! job's loss over them (its definition over the whole set: summed for sse and half-sse, the
//! mean for mse and l1), and the accuracy when the targets are one-hot (every row one 1 and
//! zeros). Used for the validation loss during training (on the parameters read back at each log
//! point, from either device), by `gpu-train eval`, and by `gpu-train predict`.

use crate::cpu::{activation_forward, bias_forward, loss_forward, matmul, Epilogue};
use crate::init::{Matrix, Params};
use crate::job::{Activation, Job};

/// A held-out set's score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub loss: f32,
    /// The fraction of rows whose largest output is at the target's 1, for one-hot targets.
    pub accuracy: Option<f32>,
}

/// The net's outputs `[rows, dL]` for the inputs `x` `[rows, d0]`. A dynamic-depth net runs its
/// shared layer once.
pub fn predict(job: &Job, params: &Params, x: &Matrix) -> Matrix {
    let rows = x.rows;
    let product_layers = job.applications(1);
    let mut input = x.data.clone();
    for (j, &l) in product_layers.iter().enumerate() {
        let (k, n) = (job.layers[l], job.layers[l + 1]);
        let mut out = vec![0.0f32; rows * n];
        let w = &params.weights[l].data;
        matmul(
            &mut out,
            &input,
            w,
            rows,
            n,
            k,
            false,
            false,
            Epilogue::Store,
        );
        if let Some(b) = params.biases.get(l) {
            bias_forward(&mut out, &b.data);
        }
        if j + 1 < product_layers.len() && job.activation != Activation::None {
            activation_forward(&mut out, &mut [], job.activation);
        }
        input = out;
    }
    Matrix::from_vec(rows, job.layers[job.depth()], input)
}

/// Whether every row of `y` is one-hot (one 1, zeros elsewhere) over at least two columns.
pub fn one_hot(y: &Matrix) -> bool {
    y.cols >= 2
        && y.data.chunks(y.cols).all(|row| {
            row.iter().filter(|&&v| v == 1.0).count() == 1
                && row.iter().all(|&v| v == 0.0 || v == 1.0)
        })
}

/// The loss of the net on (`x`, `y`) and, for one-hot targets, its accuracy.
pub fn score(job: &Job, params: &Params, x: &Matrix, y: &Matrix) -> Score {
    let pred = predict(job, params, x);
    let n = pred.data.len();
    let (mut g, mut vals) = (vec![0.0f32; n], vec![0.0f32; n]);
    let loss = loss_forward(&mut g, &mut vals, &pred.data, &y.data, y.cols, job.loss);
    let accuracy = one_hot(y).then(|| accuracy(&pred, y));
    Score { loss, accuracy }
}

/// The index of a row's largest value (the first of equal ones): its predicted class.
pub fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

/// The fraction of rows of `pred` whose largest output is at the 1 of the one-hot row of `y`.
pub fn accuracy(pred: &Matrix, y: &Matrix) -> f32 {
    let hits = (pred.data.chunks(pred.cols).zip(y.data.chunks(y.cols)))
        .filter(|(p, t)| argmax(p) == argmax(t))
        .count();
    hits as f32 / y.rows as f32
}

/// Softmax over each row (the max subtracted): the class probabilities of a cross-entropy net's
/// outputs.
pub fn softmax_rows(m: &Matrix) -> Matrix {
    let mut out = m.clone();
    for row in out.data.chunks_mut(m.cols) {
        let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        row.iter_mut().for_each(|v| *v = (*v - max).exp());
        let sum: f32 = row.iter().sum();
        row.iter_mut().for_each(|v| *v /= sum);
    }
    out
}

/// Split `(x, y)` into a training part and the held-out `fraction` of its rows (at least one of
/// each), chosen by a seeded shuffle (`Stream::Holdout`): `(train, held out)`.
pub fn split(
    x: &Matrix,
    y: &Matrix,
    fraction: f64,
    seed: u64,
) -> Option<((Matrix, Matrix), (Matrix, Matrix))> {
    let rows = x.rows;
    let held = ((rows as f64 * fraction).round() as usize).max(1);
    if held >= rows {
        return None;
    }
    let mut order: Vec<usize> = (0..rows).collect();
    let mut rng = crate::job::seeded_stream(seed, crate::job::Stream::Holdout);
    rand::seq::SliceRandom::shuffle(&mut order[..], &mut rng);
    let pick = |m: &Matrix, rows: &[usize]| {
        let data = rows
            .iter()
            .flat_map(|&r| m.data[r * m.cols..(r + 1) * m.cols].iter().copied())
            .collect();
        Matrix::from_vec(rows.len(), m.cols, data)
    };
    let (train, val) = order.split_at(rows - held);
    Some((
        (pick(x, train), pick(y, train)),
        (pick(x, val), pick(y, val)),
    ))
}

/// Hold out `fraction` of the rows of `state`'s dataset (drawn by [`split`] from the job's seed)
/// and train `job` on the rest: its rows become theirs, and its batch at most their number unless
/// `batch_given`. Returns the held-out (x, y); `name` is the argument errors name (`--val-split`,
/// `val_split`).
pub fn hold_out(
    job: &mut Job,
    state: &mut crate::init::HostState,
    fraction: f64,
    batch_given: bool,
    name: &'static str,
) -> crate::Result<(Matrix, Matrix)> {
    let Some(((tx, ty), val)) = split(&state.x, &state.y, fraction, job.seed) else {
        return Err(crate::Error::InvalidArg {
            flag: name,
            msg: format!(
                "{fraction} of {} rows leaves none to train on",
                state.x.rows
            ),
        });
    };
    (state.x, state.y) = (tx, ty);
    job.rows = Some(state.x.rows);
    if !batch_given {
        job.batch = job.batch.min(state.x.rows);
    }
    job.validate()?;
    Ok(val)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::CpuBackend;
    use crate::init::HostState;
    use crate::job::Loss;

    #[test]
    fn score_is_the_training_loss_and_accuracy_counts_argmax_hits() {
        let job = Job {
            layers: vec![5, 4, 3],
            batch: 7,
            bias: true,
            loss: Loss::Mse,
            ..Job::default()
        };
        let state = HostState::seeded(&job);
        let (loss, _) = CpuBackend::new(&job, &state).gradients();
        let s = score(&job, &state.params(), &state.x, &state.y);
        assert_eq!(s.loss, loss, "the same forward pass and loss as training");
        assert_eq!(s.accuracy, None, "normal targets are not one-hot");
        let pred = predict(&job, &state.params(), &state.x);
        let mut y = Matrix::zeros(7, 3);
        for r in 0..7 {
            let row = &pred.data[r * 3..r * 3 + 3];
            let best = (0..3).fold(0, |b, i| if row[i] > row[b] { i } else { b });
            // Rows 0..4 labelled with the prediction's argmax, the rest with another class.
            y.data[r * 3 + if r < 4 { best } else { (best + 1) % 3 }] = 1.0;
        }
        assert!(one_hot(&y));
        let s = score(&job, &state.params(), &state.x, &y);
        assert_eq!(s.accuracy, Some(4.0 / 7.0));
    }

    #[test]
    fn split_holds_out_a_seeded_fraction_and_keeps_every_row_once() {
        let x = Matrix::from_vec(10, 1, (0..10).map(|v| v as f32).collect());
        let y = x.clone();
        let ((tx, ty), (vx, vy)) = split(&x, &y, 0.2, 3).unwrap();
        assert_eq!((tx.rows, vx.rows), (8, 2));
        assert_eq!(
            (tx.data.clone(), vx.data.clone()),
            (ty.data, vy.data),
            "rows stay paired"
        );
        let mut all: Vec<f32> = tx.data.iter().chain(&vx.data).copied().collect();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, x.data);
        assert_eq!(split(&x, &y, 0.2, 3).unwrap().1 .0, vx, "seeded");
        assert!(split(&x, &y, 0.99, 3).is_none(), "nothing left to train on");
    }
}
