//! The commands besides training: bench, verify, tune, eval, predict, plot.

use super::{check_width, load_data};
use crate::cli::{EvalArgs, PlotArgs, Predict, PredictArgs};
use crate::error::{Error, Result};
use crate::gpu::layout::Layout;
use crate::gpu::{context, DeviceChoice, GpuContext};
use crate::io::history::{self, History};
use crate::io::{checkpoint, data, npy};
use crate::job::Job;
use crate::wait::block_on;

pub(super) fn bench_command(args: &crate::cli::BenchArgs) -> Result<()> {
    use crate::bench::results::{compare_plot, compare_table, Results, Status};
    if let Some(crate::cli::BenchAction::Compare(c)) = &args.action {
        if let Some(p) = &c.plot {
            crate::io::check_writable(p)?;
        }
        let files = (c.files.iter())
            .map(|p| Results::load(p).map(|r| (p.clone(), r)))
            .collect::<Result<Vec<_>>>()?;
        print!("{}", compare_table(&files));
        if let Some(p) = &c.plot {
            compare_plot(p, &files)?;
            println!("plot written to {}", p.display());
        }
        return Ok(());
    }
    if let Some(p) = &args.out {
        crate::io::check_writable(p)?;
    }
    let gpu = args.gpu.options();
    let options = crate::bench::Options {
        quick: args.quick,
        devices: args.devices.clone(),
        layout: gpu.layout,
        limits: gpu.limits,
    };
    let r = crate::bench::run(&options, false)?;
    for (d, shape, ratio) in crate::bench::tuned_over_naive(&r) {
        println!(
            "{}: tuned matmul at {shape} is {ratio:.1}x the naive kernel",
            r.devices[d].label()
        );
    }
    for row in r.rows.iter().filter(|row| row.case == "train/default") {
        if let Some(h) = row.host_overhead {
            println!(
                "{}: default job host overhead: {} submit(s) and {} readback(s) per 500 epochs, \
                 {:.1} µs encoding per epoch",
                r.devices[row.device].label(),
                h.submits_per_sample,
                h.readbacks_per_sample,
                h.encode_s_per_epoch * 1e6
            );
        }
    }
    if let Some(p) = &args.out {
        r.save(p)?;
        println!("results written to {}", p.display());
    }
    let failed = r.rows.iter().filter(|x| x.status == Status::Failed).count();
    let errors = r.rows.iter().filter(|x| x.status == Status::Error).count();
    let unusable = r.devices.iter().filter(|d| d.error.is_some()).count();
    if failed + errors + unusable > 0 {
        return Err(Error::Bench(format!(
            "bench: {failed} row(s) failed their parity check, {errors} could not run, \
             {unusable} device(s) could not be opened (see above)"
        )));
    }
    Ok(())
}

pub(super) fn verify_command(args: &crate::cli::VerifyArgs) -> Result<()> {
    use crate::verify;
    if let Some(p) = &args.json {
        crate::io::check_writable(p)?;
    }
    let gpu = args.gpu.options();
    let options = verify::Options {
        devices: args.devices.clone(),
        layout: gpu.layout,
        limits: gpu.limits,
        quick: args.quick,
        fail_fast: args.fail_fast,
        only: args.only.clone(),
    };
    let mut last = None;
    let report = verify::run(&options, &mut |devices, check| {
        if last != Some(check.device) {
            last = Some(check.device);
            println!("\n{}", devices[check.device].label());
            println!("{}", verify::header());
        }
        println!("{}", verify::line(check));
    })?;
    let failed: Vec<_> = report.failed().collect();
    println!(
        "\n{} checks, {} passed, {} failed",
        report.checks.len(),
        report.checks.len() - failed.len(),
        failed.len()
    );
    if let Some(p) = &args.json {
        report.save(p)?;
        println!("results written to {}", p.display());
    }
    if failed.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = (failed.iter().take(5))
        .map(|c| format!("{} {} {} {}", c.kernel, c.variant, c.layout, c.shape))
        .collect();
    Err(Error::Verify(format!(
        "verify: {} check(s) failed: {}{}",
        failed.len(),
        named.join("; "),
        if failed.len() > 5 { "; ..." } else { "" }
    )))
}

pub(super) fn tune_command(args: &crate::cli::TuneArgs) -> Result<()> {
    let mut job = Job::default();
    if let Some(l) = &args.layers {
        job.layers = l.0.clone();
    }
    if let Some(b) = &args.batch {
        job.batch = *b;
    }
    let mut shapes = crate::bench::products(&job);
    let squares = if args.shapes.is_empty() {
        vec![(1024, 1024, 1024)]
    } else {
        args.shapes.clone()
    };
    shapes.extend(squares.into_iter().map(|d| ((false, false), d)));
    let choice = args.device.clone();
    if choice == DeviceChoice::Cpu {
        return Err(Error::arg(
            "--device",
            "the CPU path has no kernel variants to tune; pick a GPU adapter",
        ));
    }
    let entry = context::choose(&choice, context::list_adapters())?.ok_or_else(|| {
        Error::Device(
            "gpu-train tune: no GPU adapter to tune (see `gpu-train devices`)".to_string(),
        )
    })?;
    let gpu = args.gpu.options();
    let ctx = GpuContext::open(&entry.adapter, gpu.limits)?;
    // `--layout auto`: every layout the adapter runs, and the faster one for training cached.
    let layouts: Vec<Layout> = match gpu.layout {
        Some(l) => {
            ctx.kernels.layout(l)?;
            vec![l]
        }
        None => (Layout::ALL.into_iter())
            .filter(|&l| ctx.kernels.supports(l))
            .collect(),
    };
    let choose_layout = gpu.layout.is_none();
    let mut print = |line: &str| println!("{line}");
    let tuning = crate::bench::tuning::run(
        &ctx,
        &layouts,
        &job,
        &shapes,
        0.1,
        choose_layout,
        &mut print,
    );
    let tuning = block_on(tuning)?;
    let path = crate::gpu::tune::save(&ctx.info, &tuning.entries, tuning.layout)?;
    println!("cached in {}", path.display());
    Ok(())
}

/// A checkpoint's net and parameters, for `eval` and `predict`.
fn load_net(path: &std::path::Path) -> Result<(Job, crate::init::Params)> {
    let job = checkpoint::job_of(path)?;
    let (state, _) = checkpoint::load(path, &job)?;
    Ok((job, state.params))
}

/// `gpu-train eval`: the loss (and accuracy) of a checkpoint on a dataset.
pub(super) fn eval_command(args: &EvalArgs) -> Result<()> {
    let (job, params) = load_net(&args.checkpoint)?;
    let Some((x, y, _)) = load_data(&args.dataset, Some(job.layers[job.depth()]), job.loss)? else {
        return Err(Error::arg(
            "--x",
            "give the dataset as --x FILE.npy --y FILE.npy, or as --data FILE.csv --targets K",
        ));
    };
    let depth = job.depth();
    check_width("--x", &x, job.layers[0], "inputs")?;
    check_width("--y", &y, job.layers[depth], "outputs")?;
    let s = crate::eval::score(&job, &params, &x, &y);
    let acc = s
        .accuracy
        .map_or_else(String::new, |a| format!(" | accuracy {a:.4}"));
    println!(
        "rows {} | loss {:.6e} ({}){acc}",
        x.rows,
        s.loss,
        job.loss.describe()
    );
    Ok(())
}

/// `gpu-train predict`: a checkpoint's outputs for the rows of --x, as .npy.
pub(super) fn predict_command(args: &PredictArgs) -> Result<()> {
    crate::io::check_writable(&args.output)?;
    let (job, params) = load_net(&args.checkpoint)?;
    let x = npy::read_matrix(&args.x)?;
    data::check_finite(&args.x, &x)?;
    check_width("--x", &x, job.layers[0], "inputs")?;
    let pred = crate::eval::predict(&job, &params, &x);
    match args.kind {
        Predict::Outputs => npy::write_matrix(&args.output, &pred)?,
        Predict::Probabilities => {
            npy::write_matrix(&args.output, &crate::eval::softmax_rows(&pred))?
        }
        Predict::Classes => {
            let classes: Vec<usize> = pred
                .data
                .chunks(pred.cols)
                .map(crate::eval::argmax)
                .collect();
            npy::write_classes(&args.output, &classes)?;
            println!(
                "wrote {} ({} class indices)",
                args.output.display(),
                classes.len()
            );
            return Ok(());
        }
    }
    println!(
        "wrote {} ({} x {})",
        args.output.display(),
        pred.rows,
        pred.cols
    );
    Ok(())
}

/// `gpu-train plot`: every history's curve in one plot, labelled by file name (and device).
pub(super) fn plot_command(args: &PlotArgs) -> Result<()> {
    crate::io::check_writable(&args.output)?;
    let runs = (args.histories.iter())
        .map(|p| History::read(p).map(|h| (p, h)))
        .collect::<Result<Vec<_>>>()?;
    let labelled: Vec<(String, &History)> = (runs.iter())
        .map(|(p, h)| {
            let stem = p
                .file_stem()
                .map_or_else(String::new, |s| s.to_string_lossy().into());
            let label = if h.device.is_empty() || h.device == stem {
                stem
            } else {
                format!("{stem} ({})", h.device)
            };
            (label, h)
        })
        .collect();
    let title = args.title.as_deref().unwrap_or("loss");
    history::plot(&args.output, title, &labelled)?;
    println!("wrote {}", args.output.display());
    Ok(())
}
