//! The history as JSON, plots, checkpoints, `--resume`, bad checkpoints, and Ctrl-C (exit 130).

use crate::common::read_history_csv;
use crate::*;

/// `--history` in JSON, `--plot` as SVG and PNG, and `gpu-train plot` overlaying a CSV and a JSON
/// history: valid files, one curve per run.
#[test]
fn cli_history_json_plots_and_the_plot_command() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let small = [
        "--device", "cpu", "--quiet", "--layers", "12,7,3", "--batch", "5",
    ];
    run(small.iter().chain(&[
        "--epochs",
        "30",
        "--history",
        p(&f("a.json")),
        "--plot",
        p(&f("a.svg")),
    ]))
    .success();
    run(small.iter().chain(&[
        "--epochs",
        "20",
        "--lr",
        "1e-3",
        "--history",
        p(&f("b.csv")),
        "--plot",
        p(&f("b.png")),
    ]))
    .success();
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f("a.json")).unwrap()).unwrap();
    assert_eq!(v["loss"].as_array().unwrap().len(), 30, "{v:#}");
    assert_eq!(v["device"], "cpu");
    assert_eq!(read_history_csv(&f("b.csv")).len(), 20);
    let svg = std::fs::read_to_string(f("a.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    let png = std::fs::read(f("b.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG signature");
    let r = Cmd::default()
        .arg("plot")
        .arg(p(&f("a.json")))
        .arg(p(&f("b.csv")))
        .flag("-o", p(&f("both.svg")))
        .run()
        .success();
    assert!(r.stdout.contains("both.svg"), "{}", r.describe());
    let both = std::fs::read_to_string(f("both.svg")).unwrap();
    assert_eq!(
        both.matches(r#"stroke-width="2" points="#).count(),
        4,
        "two curves, two legend marks"
    );
    assert!(
        both.contains("a (cpu)") && both.contains(">\nb\n<"),
        "labelled by file"
    );
    // Bad input: a file that is not a history, an output in a missing directory.
    std::fs::write(f("junk.csv"), "hello\n").unwrap();
    let r = Cmd::default()
        .arg("plot")
        .arg(p(&f("junk.csv")))
        .flag("-o", p(&f("x.svg")))
        .run();
    assert_bad_input(&r, &["junk.csv", "epoch,loss"]);
    let r = run(small
        .iter()
        .chain(&["--epochs", "2", "--plot", p(&f("no/such/dir/p.svg"))]));
    assert_bad_input(&r, &["p.svg", "does not exist"]);
}

/// `--save` then `--resume` with the same flags continues the run: the resumed history numbers
/// its epochs on, and its losses are those of an uninterrupted run, bit for bit;
/// `--checkpoint-every` leaves a checkpoint of the last multiple.
#[test]
fn cli_save_resume_and_checkpoint_every() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let job = [
        "--device",
        "cpu",
        "--quiet",
        "--layers",
        "12,7,3",
        "--rows",
        "30",
        "--batch",
        "8",
        "--optimizer",
        "momentum",
        "--lr",
        "1e-3",
        "--init-scheme",
        "torch",
    ];
    let with = |extra: &[&str]| run(job.iter().chain(extra)).success();
    with(&["--epochs", "9", "--history", p(&f("whole.csv"))]);
    with(&["--epochs", "4", "--save", p(&f("ck.safetensors"))]);
    assert!(
        f("ck.optim.safetensors").exists(),
        "momentum's state beside the model"
    );
    with(&[
        "--epochs",
        "9",
        "--resume",
        p(&f("ck.safetensors")),
        "--history",
        p(&f("rest.csv")),
        "--checkpoint-every",
        "2",
        "--save",
        p(&f("ck2.safetensors")),
    ]);
    let whole = std::fs::read_to_string(f("whole.csv")).unwrap();
    let rest = std::fs::read_to_string(f("rest.csv")).unwrap();
    let tail: Vec<&str> = whole.lines().skip(5).collect();
    assert_eq!(rest.lines().skip(1).collect::<Vec<_>>(), tail, "{rest}");
    assert!(rest.lines().nth(1).unwrap().starts_with("4,"), "{rest}");
    // Resuming a finished checkpoint, or with another optimizer, or without --save for
    // --checkpoint-every: exit 2.
    let r = run(job
        .iter()
        .chain(&["--epochs", "9", "--resume", p(&f("ck2.safetensors"))]));
    assert_bad_input(&r, &["--epochs", "already trained 9 epochs"]);
    let mut adam = job.to_vec();
    adam[10] = "adam";
    let r = run(adam
        .iter()
        .chain(&["--epochs", "9", "--resume", p(&f("ck.safetensors"))]));
    assert_bad_input(&r, &["--optimizer", "momentum"]);
    // Or with another activation or loss.
    for (flag, other, saved) in [("--activation", "tanh", "relu"), ("--loss", "mse", "sse")] {
        let r = run(job.iter().chain(&[
            "--epochs",
            "9",
            flag,
            other,
            "--resume",
            p(&f("ck.safetensors")),
        ]));
        assert_bad_input(&r, &[flag, saved, other]);
    }
    let r = run(job
        .iter()
        .chain(&["--epochs", "9", "--checkpoint-every", "2"]));
    assert_bad_input(&r, &["--checkpoint-every", "--save"]);
}

/// Checkpoints that do not fit the flags, or are not checkpoints at all: exit 2 naming the file
/// and, for a shape, the tensor.
#[test]
fn cli_bad_checkpoints_exit_2_naming_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("ck.safetensors");
    let job = ["--device", "cpu", "--quiet", "--batch", "5"];
    let layers = ["--layers", "12,7,3"];
    let first = job.iter().chain(&layers);
    run(first.chain(&["--epochs", "2", "--bias", "--save", p(&ck)])).success();
    let resume_with = |layers: &str, extra: &[&str]| {
        let base = ["--epochs", "4", "--layers", layers, "--resume", p(&ck)];
        run(job.iter().chain(&base).chain(extra))
    };
    let resume = |extra: &[&str]| resume_with("12,7,3", extra);
    let r = resume_with("12,8,3", &["--bias"]);
    assert_bad_input(&r, &["ck.safetensors", "0.weight", "[8, 12]", "[7, 12]"]);
    let r = resume(&[]);
    assert_bad_input(&r, &["ck.safetensors", "0.bias"]);
    // Another activation: refused before the tensors are looked at (their names would differ
    // too: "1.weight" without the ReLU modules).
    let r = resume(&["--bias", "--activation", "none"]);
    assert_bad_input(&r, &["ck.safetensors", "--activation", "`relu`"]);
    let bytes = std::fs::read(&ck).unwrap();
    std::fs::write(&ck, &bytes[..bytes.len() - 10]).unwrap();
    let r = resume(&["--bias"]);
    assert_bad_input(&r, &["ck.safetensors", "truncated or corrupt"]);
    std::fs::write(&ck, b"not a checkpoint").unwrap();
    assert_bad_input(&resume(&["--bias"]), &["ck.safetensors"]);
    assert_bad_input(&resume(&["--bias", "--resume"]), &["--resume"]);
}

/// SIGINT in the middle of a run: the epochs in flight finish, the checkpoint and the history are
/// written (complete, no temporary files left), and the exit code is 130; the checkpoint resumes.
#[cfg(unix)]
#[test]
fn cli_sigint_writes_a_checkpoint_and_the_history_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let args = [
        "--device",
        "cpu",
        "--layers",
        "50,40,3",
        "--rows",
        "200",
        "--batch",
        "20",
        "--epochs",
        "100000000",
        "--log-every",
        "100",
        "--lr",
        "1e-4",
        "--init-scheme",
        "torch",
    ];
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_gpu-train"));
    cmd.args(args).args([
        "--save",
        p(&f("ck.safetensors")),
        "--history",
        p(&f("h.csv")),
    ]);
    // Once it trains (a few logged epochs).
    let (code, stderr, rest) = interrupt_after_epochs(&mut cmd, 3);
    assert_eq!(code, Some(130), "{stderr}\n{rest:?}");
    assert!(
        stderr.contains("interrupted after epoch") && stderr.contains("--resume"),
        "{stderr}"
    );
    let history = read_history_csv(&f("h.csv"));
    assert!(
        history.len() >= 201,
        "{} epochs in the history",
        history.len()
    );
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The checkpoint is at the interrupted epoch and resumes.
    let epochs = history.len().to_string();
    let more = (history.len() + 3).to_string();
    let mut resume: Vec<&str> = args.to_vec();
    resume[9] = &more;
    let r = run(resume
        .iter()
        .chain(&["--quiet", "--resume", p(&f("ck.safetensors"))]))
    .success();
    assert_eq!(r.summary().1, 3, "{} then 3 more: {}", epochs, r.describe());
}
