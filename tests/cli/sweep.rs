//! `gpu-train sweep`: every variant bit for bit its own run's (losses every epoch, final
//! parameters) on the CPU and the GPU in both layouts, mini-batches and a schedule included; a
//! diverging variant beside finishing ones; the files written; the cap, bad lists and `--out`.

use crate::common::gpu_or_skip;
use crate::*;
use std::path::Path;

/// A job with every moving part a variant's run has: mini-batches (a short last one, shuffled by
/// the variant's seed), biases, Adam, a step schedule.
const JOB: [&str; 16] = [
    "--layers",
    "30,20,4",
    "--rows",
    "40",
    "--batch",
    "9",
    "--epochs",
    "12",
    "--bias",
    "--optimizer",
    "adam",
    "--lr-schedule",
    "step:7:0.5",
    "--log-every",
    "5",
    "--quiet",
];

/// [`SMALL`] but for its learning rate, which the sweeps here list.
const SMALL_JOB: [&str; 6] = ["--layers", "30,20,4", "--batch", "9", "--epochs", "25"];

fn sweep(out: &Path, device: &str) -> Cmd {
    Cmd::default()
        .arg("sweep")
        .flag("--device", device)
        .flag("--out", p(out))
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The losses of a summary, bit for bit (NaN and infinities as JSON writes them: null).
fn losses(summary: &serde_json::Value) -> Vec<Option<u32>> {
    (summary["losses"].as_array().expect("losses").iter())
        .map(|l| l.as_f64().map(|v| (v as f32).to_bits()))
        .collect()
}

/// A checkpoint's tensors (names, shapes, bytes) and metadata, but for the random `generation`
/// that tells one save from another.
fn checkpoint(path: &Path) -> (serde_json::Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let meta = header["__metadata__"].as_object_mut().expect("metadata");
    assert!(meta.remove("generation").is_some(), "{}", path.display());
    (header, bytes[8 + n..].to_vec())
}

/// Each variant of `--lr 1e-3,3e-3 --seed 0,5` (with `extra`) against the run of its own flags
/// on `device`: the same loss bits every epoch, the same checkpoint bytes (weights, biases,
/// Adam's moments and counters).
fn variants_match_their_runs(device: &str, extra: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let r = sweep(&out, device)
        .args(JOB)
        .args(extra)
        .flag("--lr", "1e-3,3e-3")
        .flag("--seed", "0,5")
        .arg("--save")
        .run()
        .success();
    let index = json(&out.join("sweep.json"));
    let variants = index["variants"].as_array().expect("variants");
    assert_eq!(variants.len(), 4, "{index:#}");
    for (k, (lr, seed)) in [("1e-3", "0"), ("1e-3", "5"), ("3e-3", "0"), ("3e-3", "5")]
        .into_iter()
        .enumerate()
    {
        let v = &variants[k];
        assert_eq!(
            v["values"]["lr"].as_f64().map(|x| x as f32),
            lr.parse().ok(),
            "{v}"
        );
        assert_eq!(v["values"]["seed"].as_u64(), seed.parse().ok(), "{v}");
        let solo_summary = tmp.path().join(format!("{k}.json"));
        // Named as the variant's, since a checkpoint records its optimizer file's name.
        std::fs::create_dir(tmp.path().join(format!("solo{k}"))).unwrap();
        let solo_model = tmp.path().join(format!("solo{k}/model.safetensors"));
        Cmd::on(device)
            .args(JOB)
            .args(extra)
            .flag("--lr", lr)
            .flag("--seed", seed)
            .flag("--summary-json", p(&solo_summary))
            .flag("--save", p(&solo_model))
            .run()
            .success();
        let dir = out.join(k.to_string());
        let (got, want) = (json(&dir.join("summary.json")), json(&solo_summary));
        assert_eq!(losses(&got).len(), 12, "variant {k}");
        assert_eq!(
            losses(&got),
            losses(&want),
            "variant {k}: the losses of its run"
        );
        assert_eq!(got["config"], want["config"], "variant {k}: its job");
        assert_eq!(got["device"]["name"], want["device"]["name"]);
        assert_eq!(got["device"]["layout"], want["device"]["layout"]);
        for (name, solo) in [
            ("model.safetensors", solo_model.clone()),
            (
                "model.optim.safetensors",
                solo_model.with_file_name("model.optim.safetensors"),
            ),
        ] {
            let got = checkpoint(&dir.join(name));
            let want = checkpoint(&solo);
            assert!(
                got == want,
                "variant {k}: {name} differs from its run's: {}",
                r.describe()
            );
        }
    }
    // Each variant ran its own values: no two curves are alike.
    let curves: Vec<_> = (0..4)
        .map(|k| losses(&json(&out.join(format!("{k}/summary.json")))))
        .collect();
    for k in 1..4 {
        assert!(curves[..k].iter().all(|c| *c != curves[k]), "variant {k}");
    }
}

#[test]
fn sweep_variants_match_their_runs_cpu() {
    variants_match_their_runs("cpu", &[]);
}

#[test]
fn sweep_variants_match_their_runs_gpu_both_layouts() {
    if gpu_or_skip().is_none() {
        return;
    }
    for layout in ["texels", "buffer"] {
        variants_match_their_runs("0", &["--layout", layout]);
    }
}

/// On a team of more threads than variants (4 threads, 3 variants, `GPU_TRAIN_CPU_THREADS`), the
/// sweep measures both ways of running them (one to a thread, or one after another on the team)
/// and takes one, and each variant is still its lone run on the same team, bit for bit: its
/// losses, weights, biases and Adam's moments. The products are split four ways over an inner
/// dimension of 1537, so a variant made of other parts than its lone run's would differ.
#[test]
fn sweep_cpu_variants_fewer_than_threads_match_their_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("sweep");
    let env = [("GPU_TRAIN_CPU_THREADS", "4")];
    let job = [
        "--layers",
        "1537,100,10",
        "--rows",
        "150",
        "--epochs",
        "4",
        "--bias",
        "--optimizer",
        "adam",
        "--quiet",
    ];
    let lrs = ["1e-4", "2e-4", "3e-4"];
    sweep(&out, "cpu")
        .args(job)
        .flag("--lr", lrs.join(","))
        .arg("--save")
        .run_env(&env)
        .success();
    let index = json(&out.join("sweep.json"));
    let batching = index["batching"].as_str().unwrap_or_default();
    assert!(batching.contains("measured"), "{index:#}");
    for (k, lr) in lrs.iter().enumerate() {
        let solo = tmp.path().join(format!("solo{k}"));
        std::fs::create_dir(&solo).unwrap();
        Cmd::cpu()
            .args(job)
            .flag("--lr", lr)
            .flag("--summary-json", p(&solo.join("summary.json")))
            .flag("--save", p(&solo.join("model.safetensors")))
            .run_env(&env)
            .success();
        let dir = out.join(k.to_string());
        let (got, want) = (
            json(&dir.join("summary.json")),
            json(&solo.join("summary.json")),
        );
        assert_eq!(losses(&got).len(), 4, "variant {k}");
        assert_eq!(losses(&got), losses(&want), "variant {k}: {batching}");
        for name in ["model.safetensors", "model.optim.safetensors"] {
            let same = checkpoint(&dir.join(name)) == checkpoint(&solo.join(name));
            assert!(
                same,
                "variant {k}: {name} differs from its run's ({batching})"
            );
        }
    }
}

/// A learning rate that blows up stops alone: marked with its epoch, NaN-free curves for the
/// others, exit 0; the table, the index, the curves and the summaries say so. All diverged: 3.
#[test]
fn sweep_a_diverging_variant_stops_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let r = sweep(&out, "cpu")
        .args(SMALL_JOB)
        .flag("--lr", "1e-4,10")
        .flag("--seed", "0,1")
        .run()
        .success();
    let index = json(&out.join("sweep.json"));
    let v = index["variants"].as_array().expect("variants");
    for (k, v) in v.iter().enumerate() {
        let diverged = v["diverged_at"].as_u64();
        let summary = json(&out.join(format!("{k}/summary.json")));
        assert_eq!(summary["diverged_at"].as_u64(), diverged, "variant {k}");
        if k < 2 {
            assert_eq!(diverged, None, "lr 1e-4 trains: {index:#}");
            assert_eq!(summary["epochs_run"], 25);
            let l = losses(&summary);
            assert!(l
                .iter()
                .all(|b| b.is_some_and(|b| f32::from_bits(b).is_finite())));
        } else {
            let e = diverged.expect("lr 10 diverges") as usize;
            assert!(e < 25);
            assert_eq!(
                summary["epochs_run"],
                e + 1,
                "run up to the first non-finite loss"
            );
            assert!(losses(&summary)
                .last()
                .unwrap()
                .is_none_or(|b| !f32::from_bits(b).is_finite()));
        }
    }
    // The others are unaffected: variant 0 is the lone run of lr 1e-4, seed 0.
    let solo = tmp.path().join("solo.json");
    Cmd::cpu()
        .small()
        .quiet()
        .flag("--summary-json", p(&solo))
        .run()
        .success();
    assert_eq!(
        losses(&json(&out.join("0/summary.json"))),
        losses(&json(&solo))
    );
    let table: Vec<&str> = r
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with('#'))
        .collect();
    assert!(
        r.stdout
            .contains("variant 3 (lr=10 seed=1) diverged at epoch"),
        "{}",
        r.stdout
    );
    assert!(
        table[0].contains("lr") && table[0].contains("diverged at"),
        "{}",
        r.stdout
    );
    assert_eq!(table.len(), 5, "a header and four rows: {}", r.stdout);
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert!(
        svg.contains("lr=1e-4 seed=1") && svg.contains("lr=10 seed=0 (diverged at"),
        "labels"
    );

    let all = tmp.path().join("all");
    let r = sweep(&all, "cpu")
        .args(SMALL_JOB)
        .flag("--lr", "10,20")
        .run();
    assert_eq!(r.code, Some(3), "every variant diverged: {}", r.describe());
    assert!(
        r.stderr.contains("every variant diverged (2 of 2)"),
        "{}",
        r.describe()
    );
    assert!(all.join("sweep.json").exists() && all.join("1/summary.json").exists());
}

/// The cap, lists that cannot be, shape flags with lists, a list in a training run, and
/// `--out`: each exits 2 naming the flag (and the item), and writes nothing.
#[test]
fn sweep_bad_lists_and_out_are_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("never");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--lr", "1e-3,,2"],
            &["--lr", "item 2 of `1e-3,,2` is empty"],
        ),
        (&["--seed", "a"], &["--seed", "`a` is not a whole number"]),
        (
            &["--seed", "1,a"],
            &["--seed", "item 2 of `1,a`: `a` is not a whole number"],
        ),
        (
            &["--lr", "1e-3,x"],
            &["--lr", "item 2 of `1e-3,x`: `x` is not a number"],
        ),
        (&["--lr", ""], &["--lr", "no value given"]),
        (&["--lr", "1e-3,-1"], &["--lr"]),
        (&["--lr", "1e-3,1e-3"], &["--lr", "`0.001` twice"]),
        (
            &["--init-scheme", "normal,bogus"],
            &["--init-scheme", "bogus"],
        ),
        (&["--lr-schedule", "step:5:0.5,step:0"], &["--lr-schedule"]),
        (&["--rows", "40,80"], &["--rows", "cannot vary in a sweep"]),
        (
            &["--loss", "sse,mse"],
            &["--loss", "cannot vary in a sweep"],
        ),
        (
            &["--optimizer", "sgd,adam"],
            &["--optimizer", "cannot vary in a sweep"],
        ),
        (
            &["--activation", "relu,tanh"],
            &["--activation", "cannot vary in a sweep"],
        ),
        (
            &["--lr", "1,2,3", "--seed", "0,1", "--max-variants", "5"],
            &["--max-variants", "6 variants", "--lr 3 x --seed 2"],
        ),
    ];
    for (flags, needles) in cases {
        let r = sweep(&out, "cpu").args(SMALL_JOB).args(*flags).run();
        assert_bad_input(&r, needles);
        assert!(!out.exists(), "{flags:?}: nothing written on bad input");
    }
    // More variants than the host memory holds (4096 of a 4096x4096 net: 0.5 TB, their
    // parameters held twice), refused before any is trained or written, naming the sizes.
    let seeds: Vec<String> = (0..4096).map(|s| s.to_string()).collect();
    let r = sweep(&out, "cpu")
        .args(["--layers", "4096,4096,10", "--epochs", "1"])
        .flag("--seed", seeds.join(","))
        .run();
    assert_bad_input(
        &r,
        &["--max-variants", "4096 variants", "GiB of host memory"],
    );
    assert!(!out.exists(), "nothing written past the host memory");
    // A training run takes one value of each.
    let r = Cmd::cpu().args(SMALL_JOB).flag("--lr", "1e-3,1e-4").run();
    assert_bad_input(&r, &["--lr", "gpu-train sweep"]);
    // A directory with files in it is refused unless --force.
    let used = tmp.path().join("used");
    std::fs::create_dir(&used).unwrap();
    std::fs::write(used.join("keep.txt"), "mine").unwrap();
    let r = sweep(&used, "cpu").small().flag("--seed", "0,1").run();
    assert_bad_input(&r, &["--out", "--force"]);
    sweep(&used, "cpu")
        .small()
        .flag("--seed", "0,1")
        .arg("--force")
        .run()
        .success();
    assert_eq!(
        std::fs::read_to_string(used.join("keep.txt")).unwrap(),
        "mine"
    );
    assert!(used.join("1/summary.json").exists());
}

/// SIGINT in the middle of a sweep: the chunk in flight finishes, every variant's summary (and
/// checkpoint, with --save), the index and the curves are written for the epochs done, and the
/// exit code is 130.
#[cfg(unix)]
#[test]
fn sweep_sigint_writes_what_finished_and_exits_130() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let mut cmd = crate::common::run::bin();
    cmd.args([
        "sweep", "--device", "cpu", "--layers", "30,20,4", "--batch", "9",
    ])
    .args([
        "--epochs",
        "100000000",
        "--log-every",
        "100",
        "--lr",
        "1e-4,2e-4",
    ])
    .args(["--save", "--out", p(&out)]);
    let (code, stderr, rest) = interrupt_after_epochs(&mut cmd, 3);
    assert_eq!(code, Some(130), "{stderr}\n{rest:?}");
    assert!(stderr.contains("interrupted after epoch"), "{stderr}");
    let index = json(&out.join("sweep.json"));
    for k in 0..2 {
        let s = json(&out.join(format!("{k}/summary.json")));
        let run = s["epochs_run"].as_u64().unwrap();
        assert!(
            (200..100_000_000).contains(&run),
            "variant {k}: {run} epochs"
        );
        assert_eq!(index["variants"][k]["epochs_run"], run);
        assert!(out.join(format!("{k}/model.safetensors")).exists());
    }
    assert!(out.join("curves.svg").exists());
}

/// A held-out set per variant (`--val-split`, drawn with the variant's seed) on class targets:
/// the table's held-out columns, the index's figures, and each variant's held-out scores those of
/// its lone run, bit for bit.
#[test]
fn sweep_scores_each_variant_on_its_own_held_out_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("s");
    let x = crate::common::fixture_path("digits/train_x.npy");
    let y = crate::common::fixture_path("digits/train_y.npy");
    let job = [
        "--preset",
        "digits",
        "--x",
        p(&x),
        "--y",
        p(&y),
        "--val-split",
        "0.2",
        "--epochs",
        "4",
        "--quiet",
    ];
    let r = sweep(&out, "cpu")
        .args(job)
        .flag("--lr", "1e-3,1e-2")
        .flag("--seed", "0,1")
        .run()
        .success();
    let head = r.stdout.lines().next().unwrap_or_default();
    assert!(
        head.contains("held-out loss") && head.contains("held-out accuracy"),
        "{}",
        r.stdout
    );
    let index = json(&out.join("sweep.json"));
    for (k, (lr, seed)) in [("1e-3", "0"), ("1e-3", "1"), ("1e-2", "0"), ("1e-2", "1")]
        .into_iter()
        .enumerate()
    {
        let v = &index["variants"][k];
        assert!(
            v["validation_loss"].as_f64().is_some() && v["accuracy"].as_f64().is_some(),
            "{v}"
        );
        let solo = tmp.path().join(format!("{k}.json"));
        Cmd::cpu()
            .args(job)
            .flag("--lr", lr)
            .flag("--seed", seed)
            .flag("--summary-json", p(&solo))
            .run()
            .success();
        let (got, want) = (json(&out.join(format!("{k}/summary.json"))), json(&solo));
        assert_eq!(got["validation"], want["validation"], "variant {k}");
        assert_eq!(got["accuracy"], want["accuracy"], "variant {k}");
        assert_eq!(losses(&got), losses(&want), "variant {k}");
    }
}
