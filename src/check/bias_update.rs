//! The check of `bias_update` (`check_<op>`, one home for `verify` and the kernel tests): the
//! bias gradient (the column sums of a gradient, over the batch rows in row order) bit for bit
//! against the CPU's, and every optimizer step on it within the step's own rounding (the sums
//! being the CPU's bits, nothing else may differ), the optimizer's moments included.

use super::matmul::{compare, expected, seeded, step_state, Compared, Epi, Extra, BASE_LR};
use super::worst_ratio;
use crate::cpu::{self, Epilogue};
use crate::error::Result;
use crate::gpu::layout::Layout;
use crate::gpu::{run_bias, BiasRun, GpuContext, Opt, Update};
use crate::init::Matrix;

/// `bias_update` on a seeded `[rows, cols]` gradient: with `step` None the column sums alone
/// (bit for bit), else the bias stepped by them (at [`BASE_LR`], from seeded moments); the worst
/// ratio to the bound.
pub async fn check_bias_update(
    ctx: &GpuContext,
    layout: Layout,
    (rows, cols): (usize, usize),
    step: Option<(Opt, Update)>,
    seed: u64,
) -> Result<f64> {
    let mut r = seeded(seed);
    let g = Matrix::randn(rows, cols, &mut r).data;
    let b = &Matrix::randn(1, cols, &mut r).data[..];
    let mut db = b.to_vec();
    cpu::bias_update(&mut db, &g, Epilogue::Store);
    let (opt, update) = step.unwrap_or_default();
    let state = step_state(opt, (1, cols), &mut r);
    let run = BiasRun {
        lr: BASE_LR,
        store: step.is_none(),
        opt,
        update,
        state: step.is_some().then_some(&state),
        ..BiasRun::default()
    };
    let (got, _, moments) = run_bias(ctx, layout, &g, (rows, cols), b, run).await?;
    Ok(match step {
        None => {
            let want: Vec<f64> = db.iter().map(|&x| x as f64).collect();
            worst_ratio(&got, &want, &vec![f64::MIN_POSITIVE; cols])
        }
        Some((o, u)) => {
            let extra = Extra {
                aux: b.to_vec(),
                bias: Vec::new(),
                coef: 0.0,
                state,
            };
            let wanted = expected(Epi::Update(o, u), &db, &vec![0.0; cols], &extra);
            let mut got = vec![got, Vec::new()];
            got.extend(moments);
            (compare(got, wanted).iter())
                .map(Compared::ratio)
                .fold(0.0, f64::max)
        }
    })
}
