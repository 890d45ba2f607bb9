//! Runs of any length and runs that end badly: the epoch count's bounds, a summary and history
//! that stay bounded however long a run goes, checkpoints that survive SIGKILL at any moment
//! (also mid-write), and full disks.

use crate::common;
use gpu_train::backend::Backend;
use gpu_train::cpu::CpuBackend;
use gpu_train::init::HostState;
use gpu_train::io::checkpoint;
use gpu_train::io::history::History;
use gpu_train::job::{Job, OptimizerKind};
use rand::{RngExt, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};

fn gpu_train(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
        .args(args)
        .env(
            "XDG_RUNTIME_DIR",
            std::env::var("XDG_RUNTIME_DIR").unwrap_or("/tmp".into()),
        )
        .output()
        .expect("run gpu-train");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked: {stderr}"
    );
    out
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn p(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// Names in `dir` that a write left behind (temporary files).
fn temporaries(dir: &Path) -> Vec<String> {
    (std::fs::read_dir(dir).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[test]
fn epoch_counts_past_the_maximum_exit_2_and_the_maximum_is_valid() {
    for (epochs, needle) in [
        ("18446744073709551615", "2^40"),
        ("1099511627777", "2^40"),
        ("9999999999999", "2^40"),
        ("99999999999999999999999", "too large"),
    ] {
        let out = gpu_train(&["--device", "cpu", "--epochs", epochs]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(needle),
            "{}",
            text(&out)
        );
    }
    let job = Job {
        epochs: gpu_train::job::MAX_EPOCHS,
        ..Job::default()
    };
    job.validate().expect("2^40 epochs are allowed");
    // Mini-batches of one row over 2^40 epochs are too many steps to count in 64 bits? Not
    // quite (2^40 * 2^20 < 2^64), but 2^40 epochs of 2^25 steps are.
    let job = Job {
        epochs: gpu_train::job::MAX_EPOCHS,
        rows: Some(1 << 25),
        batch: 1,
        ..Job::default()
    };
    let e = job.validate().unwrap_err().to_string();
    assert!(e.contains("--epochs") && e.contains("steps"), "{e}");
}

/// Past `thinned::CAP` epochs the summary keeps every `loss_stride`-th loss (and the final one
/// exactly), the CSV history every epoch's, and the JSON history what the summary keeps.
#[test]
fn a_run_past_the_cap_thins_the_summary_and_keeps_every_epoch_in_the_csv() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    let epochs = gpu_train::thinned::CAP * 2 + 1001;
    let e = epochs.to_string();
    let base = [
        "--device",
        "cpu",
        "--layers",
        "2,3,1",
        "--batch",
        "2",
        "--lr",
        "1e-3",
        "--epochs",
        &e,
        "--log-every",
        "0",
        "--quiet",
    ];
    let (sj, hc, hj) = (f("s.json"), f("h.csv"), f("h.json"));
    let mut args = base.to_vec();
    args.extend(["--summary-json", p(&sj), "--history", p(&hc)]);
    let out = gpu_train(&args);
    assert!(out.status.success(), "{}", text(&out));
    let mut args = base.to_vec();
    args.extend(["--history", p(&hj)]);
    assert!(gpu_train(&args).status.success());

    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(f("s.json")).unwrap()).unwrap();
    let losses: Vec<f32> = serde_json::from_value(s["losses"].clone()).unwrap();
    let stride = s["loss_stride"].as_u64().unwrap() as usize;
    assert_eq!(stride, 4, "two doublings past 2 * CAP epochs");
    assert_eq!(losses.len(), epochs.div_ceil(stride));
    assert_eq!(s["epochs_run"].as_u64(), Some(epochs as u64));
    let csv = History::read(&f("h.csv")).unwrap();
    assert_eq!(csv.loss.len(), epochs, "the CSV holds every epoch");
    for (i, &l) in losses.iter().enumerate() {
        assert_eq!(l.to_bits(), csv.loss[i * stride].to_bits(), "losses[{i}]");
    }
    let last = s["final_loss"].as_f64().unwrap() as f32;
    assert_eq!(last.to_bits(), csv.loss[epochs - 1].to_bits());
    let json = History::read(&f("h.json")).unwrap();
    assert_eq!((json.loss_stride, &json.loss), (stride, &losses));
}

/// [`adam_job`] on the command line, on the CPU, quiet.
const ADAM_FLAGS: &[&str] = &[
    "--device",
    "cpu",
    "--layers",
    "3,5,2",
    "--batch",
    "4",
    "--bias",
    "--optimizer",
    "adam",
    "--lr",
    "1e-3",
    "--quiet",
];

fn adam_job() -> Job {
    let mut job = Job {
        layers: vec![3, 5, 2],
        batch: 4,
        bias: true,
        lr: 1e-3,
        ..Job::default()
    };
    job.optimizer.kind = OptimizerKind::Adam;
    job
}

/// A save cut between its two renames (the new optimizer file in place, the model file still
/// the previous save's) loads the previous checkpoint whole, from the model file and the
/// previous optimizer file kept beside it; without that file, an optimizer file of another save
/// is refused, naming both.
#[test]
fn a_checkpoint_cut_between_its_two_files_loads_the_previous_save() {
    let dir = tempfile::tempdir().unwrap();
    let job = adam_job();
    let mut cpu = CpuBackend::new(&job, &HostState::seeded(&job));
    cpu.run(2).unwrap();
    let early = cpu.state().unwrap();
    cpu.run(3).unwrap();
    let late = cpu.state().unwrap();
    let (a, b) = (
        dir.path().join("a.safetensors"),
        dir.path().join("b.safetensors"),
    );
    checkpoint::save(&a, &job, &early, 2).unwrap();
    checkpoint::save(&b, &job, &late, 5).unwrap();
    assert!(
        !checkpoint::previous_path(&a).exists(),
        "removed once the save is whole"
    );
    assert_eq!(checkpoint::load(&a, &job).unwrap(), (early.clone(), 2));
    // What the save of `late` to `a` does up to its model file's rename.
    let (opt_a, opt_b) = (
        checkpoint::optimizer_path(&a),
        checkpoint::optimizer_path(&b),
    );
    std::fs::hard_link(&opt_a, checkpoint::previous_path(&a)).unwrap();
    let new = dir.path().join("new-optimizer-file");
    std::fs::copy(&opt_b, &new).unwrap();
    std::fs::rename(&new, &opt_a).unwrap(); // a rename, as the save's: the link keeps the old
    assert_eq!(checkpoint::load(&a, &job).unwrap(), (early.clone(), 2));
    // The next save puts things right, and keeps no previous file.
    checkpoint::save(&a, &job, &late, 5).unwrap();
    assert_eq!(checkpoint::load(&a, &job).unwrap(), (late, 5));
    assert!(!checkpoint::previous_path(&a).exists());
    // An optimizer file of another save, with no previous file, cannot be made sense of.
    std::fs::copy(&opt_b, dir.path().join("keep")).unwrap();
    checkpoint::save(&b, &job, &early, 2).unwrap();
    std::fs::copy(dir.path().join("keep"), &opt_b).unwrap();
    let e = checkpoint::load(&b, &job).unwrap_err().to_string();
    assert!(
        e.contains("another save") && e.contains("b.safetensors"),
        "{e}"
    );
}

/// What a kill between a checkpoint's two renames leaves (the new save's optimizer file in place,
/// the model file and the optimizer file kept beside it the previous save's) resumes from the
/// command line from the previous save, saying so, to the bit as a resume from that save intact
/// would: what the random kills below count when one lands there, made to happen.
#[test]
fn a_resume_after_a_kill_between_the_two_renames_takes_the_previous_save() {
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    let train = |extra: &[&str]| {
        let out = gpu_train(&[ADAM_FLAGS, extra].concat());
        assert!(out.status.success(), "{}", text(&out));
        out
    };
    let (cut, intact, later) = (
        f("cut.safetensors"),
        f("intact.safetensors"),
        f("later.safetensors"),
    );
    train(&["--epochs", "2", "--save", p(&cut)]);
    train(&["--epochs", "2", "--save", p(&intact)]);
    train(&["--epochs", "4", "--save", p(&later)]);
    // The save of `later` to `cut`, up to its model file's rename.
    let opt = checkpoint::optimizer_path(&cut);
    std::fs::hard_link(&opt, checkpoint::previous_path(&cut)).unwrap();
    let new = f("new-optimizer-file");
    std::fs::copy(checkpoint::optimizer_path(&later), &new).unwrap();
    std::fs::rename(&new, &opt).unwrap();
    let resume = |from: &Path, history: &Path| {
        train(&[
            "--epochs",
            "5",
            "--resume",
            p(from),
            "--history",
            p(history),
        ])
    };
    let (h_cut, h_intact) = (f("cut.csv"), f("intact.csv"));
    let out = resume(&cut, &h_cut);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("previous save"),
        "says it took the previous save: {}",
        text(&out)
    );
    resume(&intact, &h_intact);
    let (a, b) = (
        History::read(&h_cut).unwrap(),
        History::read(&h_intact).unwrap(),
    );
    assert_eq!((a.first_epoch, a.loss.len()), (2, 3));
    assert_eq!(a.loss, b.loss, "the previous save, whole");
}

/// SIGKILL a checkpointing run at random moments (many of them inside a checkpoint write, which
/// is most of what a tiny net's run with a checkpoint every epoch does); after each, whatever
/// is there loads: the checkpoint resumes, the history and the summary (where written) read
/// back, and the temporary files left are removed by the next run's writes.
#[cfg(unix)]
#[test]
fn runs_killed_at_random_moments_leave_loadable_outputs() {
    let seed: u64 = std::env::var("GPU_TRAIN_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(14);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let f = |n: &str| dir.path().join(n);
    let (mut kills, mut resumes, mut with_checkpoint) = (0, 0, 0);
    let (mut mid_write, mut took_optimizer_file) = (0, 0);
    for round in 0..40 {
        let every = if round % 2 == 0 { "1" } else { "7" };
        let (ck, h, s) = (f("ck.safetensors"), f("h.csv"), f("s.json"));
        let flags = [ADAM_FLAGS, &["--log-every", "5"]].concat();
        let mut args: Vec<&str> = flags.clone();
        args.extend([
            "--epochs",
            "100000000",
            "--save",
            p(&ck),
            "--checkpoint-every",
            every,
        ]);
        args.extend(["--history", p(&h), "--summary-json", p(&s)]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_gpu-train"))
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let delay = rng.random_range(5..250u64);
        std::thread::sleep(std::time::Duration::from_millis(delay));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
        let note = format!("round {round} (seed {seed}, killed after {delay} ms)");
        if h.exists() {
            let hist = History::read(&h).unwrap_or_else(|e| panic!("{note}: history: {e}"));
            assert!(hist.loss.iter().all(|l| l.is_finite()), "{note}");
        }
        if s.exists() {
            let text = std::fs::read(&s).unwrap();
            serde_json::from_slice::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("{note}: summary: {e}"));
        }
        if !ck.exists() {
            continue;
        }
        with_checkpoint += 1;
        if !temporaries(dir.path()).is_empty() {
            mid_write += 1; // killed inside a write: its temporary file is still there
        }
        let job = adam_job();
        let (_, epoch) = checkpoint::load(
            &ck,
            &Job {
                layers: vec![3, 5, 2],
                ..job
            },
        )
        .unwrap_or_else(|e| panic!("{note}: checkpoint: {e}"));
        let more = (epoch + 2).to_string();
        let mut resume: Vec<&str> = flags.clone();
        resume.extend(["--epochs", &more, "--resume", p(&ck), "--save", p(&ck)]);
        resume.extend(["--history", p(&h), "--summary-json", p(&s)]);
        let out = gpu_train(&resume);
        assert!(
            out.status.success(),
            "{note}: resume from epoch {epoch}: {}",
            text(&out)
        );
        resumes += 1;
        // Counted, not asserted: whether a kill lands between the two renames is timing
        // (the test above makes it happen).
        if String::from_utf8_lossy(&out.stderr).contains("previous save") {
            took_optimizer_file += 1;
        }
        let hist = History::read(&h).unwrap();
        assert_eq!((hist.first_epoch, hist.loss.len()), (epoch, 2), "{note}");
        assert!(
            temporaries(dir.path()).is_empty(),
            "{note}: {:?}",
            temporaries(dir.path())
        );
    }
    eprintln!(
        "{kills} kills: {with_checkpoint} left a checkpoint, {mid_write} landed inside a write, \
         {took_optimizer_file} between a checkpoint's two files; {resumes} resumed"
    );
    assert!(mid_write > 0, "no kill landed inside a write");
    assert!(
        with_checkpoint >= 20,
        "{with_checkpoint} of {kills} kills left a checkpoint"
    );
}

/// A full filesystem (a 64 KiB tmpfs where this machine lets one be mounted, else a file-size
/// limit): the output that does not fit fails with a clear message, exit 1, and no partial or
/// temporary file; the outputs that fit are still written.
#[cfg(unix)]
#[test]
fn a_full_disk_fails_the_output_that_does_not_fit_and_writes_the_others() {
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small");
    std::fs::create_dir(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs", p(&small)])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let (ck, sj, hc) = (
        small.join("ck.safetensors"),
        small.join("s.json"),
        small.join("h.csv"),
    );
    // A checkpoint of about 200 KB (Adam's state is twice the weights) and outputs of a few KB.
    let args = [
        "--device",
        "cpu",
        "--layers",
        "100,100,10",
        "--batch",
        "8",
        "--epochs",
        "20",
        "--optimizer",
        "adam",
        "--lr",
        "1e-4",
        "--quiet",
        "--save",
        p(&ck),
        "--summary-json",
        p(&sj),
        "--history",
        p(&hc),
    ];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    cmd.args(args).env("XDG_RUNTIME_DIR", "/tmp");
    if !mounted {
        use std::os::unix::process::CommandExt;
        // SAFETY: only setrlimit between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let limit = libc::rlimit {
                    rlim_cur: 64 << 10,
                    rlim_max: 64 << 10,
                };
                if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let out = cmd.output().unwrap();
    let listing: Vec<String> = (std::fs::read_dir(&small).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if mounted {
        let _ = Command::new("umount").arg(p(&small)).status();
    }
    let how = if mounted { "tmpfs" } else { "file-size limit" };
    eprintln!("the disk filled: a 64 KiB {how}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{how}: {}", text(&out));
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("could not be written")
            && stderr.contains("ck.optim.safetensors")
            && (stderr.contains("No space left") || stderr.contains("File too large")),
        "{how}: {stderr}"
    );
    let mut names = listing.clone();
    names.sort();
    assert_eq!(
        names,
        ["h.csv", "s.json"],
        "{how}: what is left in the full directory"
    );
}

/// An SGD save removes an optimizer file left beside its path by an earlier run with state; a
/// checkpoint resumed with other batches than it was trained with is refused.
#[test]
fn stale_optimizer_files_and_changed_batches() {
    let dir = tempfile::tempdir().unwrap();
    let job = adam_job();
    let mut cpu = CpuBackend::new(&job, &HostState::seeded(&job));
    cpu.run(3).unwrap();
    let state = cpu.state().unwrap();
    let path = dir.path().join("ck.safetensors");
    checkpoint::save(&path, &job, &state, 3).unwrap();
    assert!(checkpoint::optimizer_path(&path).exists());

    let sgd = Job {
        optimizer: gpu_train::job::Optimizer::default(),
        ..job.clone()
    };
    let mut cpu = CpuBackend::new(&sgd, &HostState::seeded(&sgd));
    cpu.run(1).unwrap();
    checkpoint::save(&path, &sgd, &cpu.state().unwrap(), 1).unwrap();
    assert!(!checkpoint::optimizer_path(&path).exists());

    // Trained in one batch of 4 rows, resumed as mini-batches of 2: refused, naming --batch.
    let ck = dir.path().join("ck2.safetensors");
    let flags = [
        "--device",
        "cpu",
        "--layers",
        "3,5,2",
        "--quiet",
        "--save",
        p(&ck),
    ];
    let out = gpu_train(&[&flags[..], &["--batch", "4", "--epochs", "2"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let resume = [
        "--batch",
        "2",
        "--rows",
        "4",
        "--epochs",
        "4",
        "--resume",
        p(&ck),
    ];
    let out = gpu_train(&[&flags[..], &resume].concat());
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--batch"),
        "{}",
        text(&out)
    );
}

/// A CSV history's last line without its newline is a row cut short by a kill: dropped, even
/// where what is left of it parses. A JSON history written mid-run holds every score so far.
#[test]
fn histories_read_back_as_a_killed_run_left_them() {
    use gpu_train::io::history::{AccPoint, Columns, HistoryWriter};
    let h = History::parse(Path::new("h.csv"), "epoch,loss\n0,1.5\n1,1.2345").unwrap();
    assert_eq!(h.loss, [1.5]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("h.json");
    let columns = Columns {
        accuracy: true,
        validation: false,
    };
    let mut w = HistoryWriter::create(&path, "cpu", 0, columns).unwrap();
    for chunk in 0..3 {
        let a = AccPoint {
            epoch: chunk * 2,
            accuracy: 0.5,
        };
        w.append(chunk * 2, &[1.0, 0.5], None, Some(a));
        std::thread::sleep(std::time::Duration::from_millis(1100)); // past the once-a-second
    }
    let h = History::read(&path).unwrap();
    assert_eq!(h.loss.len(), 6);
    let epochs: Vec<usize> = h.accuracy.iter().map(|a| a.epoch).collect();
    assert_eq!(epochs, [0, 2, 4]);
}

/// Past 2^32 - 1 optimizer steps the step counter holds (rather than wrapping to 0 and starting
/// a schedule over, or overflowing): a state restored one step short of the maximum and trained
/// three more steps, with a cosine schedule and Adam, on both paths.
#[test]
fn the_step_counter_holds_at_its_maximum_on_both_paths() {
    let mut job = adam_job();
    job.lr_schedule =
        gpu_train::schedule::LrSchedule::parse(Some("cosine:1000:1e-5"), None).unwrap();
    let host = HostState::seeded(&job);
    let mut cpu = CpuBackend::new(&job, &host);
    let mut start = cpu.state().unwrap();
    start.counters.t = u32::MAX - 1;
    cpu.restore(&start).unwrap();
    cpu.run(3).unwrap();
    let after = cpu.state().unwrap();
    assert_eq!(after.counters.t, u32::MAX);
    let Some(ctx) = common::gpu_or_skip() else {
        return;
    };
    let mut gpu = gpu_train::gpu::GpuBackend::new(ctx, &job, &host).unwrap();
    gpu.restore(&start).unwrap();
    // Each epoch from the GPU's state on both paths: every weight, bias and moment within the
    // radii of check::train_step (the rate of a held counter included).
    let data = (&host.x, &host.y);
    let (ratio, at) = gpu_train::wait::block_on(gpu_train::check::train_step::follow(
        &job, data, &mut gpu, &mut cpu, 3,
    ))
    .unwrap();
    assert!(ratio <= 1.0, "{ratio:.2} of the bound at {at}");
    let g = gpu.state().unwrap();
    assert_eq!(g.counters.t, u32::MAX);
}
