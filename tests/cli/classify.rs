//! Classification: held-out sets, `eval` and `predict`, class-index targets, cross-entropy's
//! accuracy, and the new flags' bad values.

use crate::common::{self};
use crate::*;
use gpu_train::init::Matrix;
use gpu_train::io::npy;
use std::path::Path;

/// One-hot classes from a seeded linear rule: 300 rows, 6 inputs, 3 classes.
fn classes(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut r = common::rng(91);
    let x = Matrix::from_vec(300, 6, common::randn(&mut r, 1800));
    let w = common::randn(&mut r, 18);
    let mut y = Matrix::zeros(300, 3);
    for i in 0..300 {
        let s: Vec<f32> = (0..3)
            .map(|c| (0..6).map(|k| x.data[i * 6 + k] * w[k * 3 + c]).sum())
            .collect();
        let best = (0..3).fold(0, |b, c| if s[c] > s[b] { c } else { b });
        y.data[i * 3 + best] = 1.0;
    }
    let (xp, yp) = (dir.join("cx.npy"), dir.join("cy.npy"));
    npy::write_matrix(&xp, &x).unwrap();
    npy::write_matrix(&yp, &y).unwrap();
    (xp, yp)
}

/// `--val-split` holds out rows and reports their loss and accuracy on the log lines, in the
/// history and at the end; `eval` scores the saved checkpoint on the whole set, `predict` writes
/// its outputs, which agree with `eval`'s accuracy; bad input to both exits 2.
#[test]
fn cli_validation_eval_and_predict() {
    let tmp = tempfile::tempdir().unwrap();
    let f = |name: &str| tmp.path().join(name);
    let (x, y) = classes(tmp.path());
    let r = Cmd::cpu()
        .flag("--x", p(&x))
        .flag("--y", p(&y))
        .flag("--layers", "6,16,3")
        .flag("--batch", "20")
        .epochs(40)
        .flag("--log-every", "10")
        .flag("--loss", "mse")
        .flag("--optimizer", "adam")
        .flag("--lr", "1e-2")
        .arg("--bias")
        .flag("--init-scheme", "torch")
        .flag("--val-split", "0.25")
        .flag("--save", p(&f("ck.safetensors")))
        .flag("--history", p(&f("h.csv")))
        .run()
        .success();
    assert!(
        r.stdout.contains("225 rows in batches of 20"),
        "{}",
        r.describe()
    );
    let logged: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("epoch"))
        .collect();
    assert_eq!(logged.len(), 4);
    assert!(
        logged
            .iter()
            .all(|l| l.contains("val_loss") && l.contains("val_acc")),
        "{logged:?}"
    );
    let last = r
        .stdout
        .lines()
        .find(|l| l.starts_with("held-out loss"))
        .unwrap();
    let acc: f64 = last
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(acc > 0.8, "the classes are linear: {last}");
    let h = std::fs::read_to_string(f("h.csv")).unwrap();
    // One-hot targets: the training accuracy too, at the same epochs.
    assert!(
        h.starts_with("epoch,loss,accuracy,val_loss,val_accuracy\n0,"),
        "{h}"
    );
    assert_eq!(
        h.lines().filter(|l| !l.ends_with(",,,")).count(),
        5,
        "header + 4 scored: {h}"
    );
    let e = Cmd::default()
        .arg("eval")
        .flag("--checkpoint", p(&f("ck.safetensors")))
        .flag("--x", p(&x))
        .flag("--y", p(&y))
        .run()
        .success();
    assert!(
        e.stdout.contains("rows 300 | loss") && e.stdout.contains("accuracy"),
        "{}",
        e.describe()
    );
    Cmd::default()
        .arg("predict")
        .flag("--checkpoint", p(&f("ck.safetensors")))
        .flag("--x", p(&x))
        .flag("-o", p(&f("pred.npy")))
        .run()
        .success();
    let pred = npy::read_matrix(&f("pred.npy")).unwrap();
    assert_eq!(pred.shape(), [300, 3]);
    let labels = npy::read_matrix(&y).unwrap();
    let argmax = |r: &[f32]| (0..3).fold(0, |b, c| if r[c] > r[b] { c } else { b });
    let hits = (pred.data.chunks(3).zip(labels.data.chunks(3)))
        .filter(|(p, t)| argmax(p) == argmax(t))
        .count();
    let eval_acc: f64 = e
        .stdout
        .split("accuracy ")
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        (hits as f64 / 300.0 - eval_acc).abs() < 1e-4,
        "{hits} vs {}",
        e.stdout
    );
    // Bad input.
    let r = Cmd::cpu().flag("--val-split", "1.5").epochs(1).run();
    assert_bad_input(&r, &["--val-split", "1.5"]);
    let r = Cmd::cpu().flag("--val-x", p(&x)).epochs(1).run();
    assert_bad_input(&r, &["--val-x", "--val-y"]);
    let r = Cmd::default()
        .arg("eval")
        .flag("--checkpoint", p(&f("ck.safetensors")))
        .flag("--x", p(&y))
        .flag("--y", p(&y))
        .run();
    assert_bad_input(&r, &["--x", "3 columns", "6 inputs"]);
    let r = Cmd::default()
        .arg("eval")
        .flag("--checkpoint", p(&x))
        .flag("--x", p(&x))
        .flag("--y", p(&y))
        .run();
    assert_bad_input(&r, &["cx.npy"]);
    let r = Cmd::default()
        .arg("predict")
        .flag("--checkpoint", p(&f("ck.safetensors")))
        .flag("--x", p(&x))
        .flag("-o", p(&f("no/dir/p.npy")))
        .run();
    assert_bad_input(&r, &["p.npy", "does not exist"]);
}

/// Targets given as integer class indices (1-D, as numpy's `np.int64` labels) train as one-hot
/// rows over the classes, and report accuracy; out-of-range or 2-D integer labels exit 2.
#[test]
fn cli_class_index_targets_become_one_hot() {
    let tmp = tempfile::tempdir().unwrap();
    let (x, y) = classes(tmp.path());
    let onehot = npy::read_matrix(&y).unwrap();
    let labels: Vec<u8> = (onehot.data.chunks(3))
        .flat_map(|r| ((0..3).position(|c| r[c] == 1.0).unwrap() as i64).to_le_bytes())
        .collect();
    let lp = tmp.path().join("labels.npy");
    write_npy(&lp, "<i8", &[300], &labels);
    let args = |y: &Path| {
        Cmd::cpu()
            .flag("--x", p(&x))
            .flag("--y", p(y))
            .flag("--batch", "30")
            .epochs(20)
            .flag("--loss", "mse")
            .flag("--optimizer", "adam")
            .flag("--lr", "1e-2")
            .arg("--bias")
            .flag("--init-scheme", "torch")
            .flag("--val-split", "0.2")
            .quiet()
            .run()
    };
    let a = args(&lp).success();
    let b = args(&y).success();
    let held = |r: &Run| {
        r.stdout
            .lines()
            .find(|l| l.starts_with("held-out"))
            .map(String::from)
    };
    assert_eq!(
        a.summary().2,
        b.summary().2,
        "labels train exactly as their one-hot rows"
    );
    assert_eq!(held(&a), held(&b));
    assert!(a.stdout.contains("accuracy"), "{}", a.describe());
    let r = Cmd::cpu()
        .flag("--x", p(&x))
        .flag("--y", p(&lp))
        .flag("--layers", "6,8,2")
        .run();
    assert_bad_input(&r, &["labels.npy", "class index 2", "2 outputs"]);
    write_npy(&lp, "<i8", &[100, 3], &[0u8; 2400]);
    let r = Cmd::cpu().flag("--x", p(&x)).flag("--y", p(&lp)).run();
    assert_bad_input(&r, &["labels.npy", "[100, 3]"]);
}

// ---------------------------------------------------------------------------------------------
// Classification and the options past the core: bad values of the new flags, class targets from
// files (and their faults), accuracy in the outputs, `predict --as`.

bad_flag!(
    bad_activation_lists_the_valid_ones,
    ["--activation", "swish"],
    [
        "--activation",
        "swish",
        "leaky-relu[:SLOPE]",
        "gelu",
        "sigmoid"
    ]
);
bad_flag!(
    bad_leaky_relu_slope_names_the_field,
    ["--activation", "leaky-relu:-0.5"],
    ["--activation", "SLOPE"]
);
bad_flag!(
    activation_parameter_on_tanh_exits_2,
    ["--activation", "tanh:2"],
    ["--activation", "no parameter"]
);
bad_flag!(
    bad_schedule_lists_the_valid_ones,
    ["--lr-schedule", "linear"],
    ["--lr-schedule", "step:EVERY:GAMMA", "cosine:T_MAX[:MIN_LR]"]
);
bad_flag!(
    schedule_without_gamma_names_the_field,
    ["--lr-schedule", "step:10"],
    ["--lr-schedule", "GAMMA"]
);
bad_flag!(
    schedule_with_a_bad_t_max_names_the_field,
    ["--lr-schedule", "cosine:ten"],
    ["--lr-schedule", "T_MAX", "ten"]
);
bad_flag!(
    zero_warmup_names_the_field,
    ["--warmup", "0"],
    ["--warmup", "STEPS"]
);
bad_flag!(
    negative_weight_decay_exits_2,
    ["--weight-decay", "-0.1"],
    ["--weight-decay", "-0.1"]
);
bad_flag!(
    weight_decay_not_a_number_exits_2,
    ["--weight-decay", "lots"],
    ["--weight-decay", "lots"]
);
bad_flag!(
    cross_entropy_with_one_output_exits_2,
    ["--loss", "cross-entropy", "--layers", "10,5,1"],
    ["--loss", "2 outputs"]
);
bad_flag!(
    bad_loss_lists_cross_entropy,
    ["--loss", "nll"],
    ["--loss", "cross-entropy"]
);

#[test]
fn predict_with_an_unknown_kind_exits_2_listing_the_kinds() {
    let r = Cmd::default()
        .arg("predict")
        .flag("--checkpoint", "none.safetensors")
        .flag("--x", "none.npy")
        .flag("-o", "out.npy")
        .flag("--as", "logits")
        .run();
    assert_bad_input(&r, &["--as", "probabilities", "classes"]);
}

/// Class targets (int64 .npy; an integer CSV column) whose faults are named with the file and
/// the row; probability rows that are negative or do not sum to 1.
#[test]
fn cli_bad_class_targets_exit_2_naming_the_file_and_row() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let x = Matrix::from_vec(6, 3, common::randn(&mut common::rng(5), 18));
    npy::write_matrix(&dir.join("x.npy"), &x).unwrap();
    let labels = |name: &str, v: &[i64]| {
        let bytes: Vec<u8> = v.iter().flat_map(|c| c.to_le_bytes()).collect();
        let path = dir.join(name);
        write_npy(&path, "<i8", &[v.len()], &bytes);
        path
    };
    let ce = |y: &Path, extra: &[&str]| {
        let xs = dir.join("x.npy");
        let mut args = vec![
            "--device",
            "cpu",
            "--loss",
            "cross-entropy",
            "--epochs",
            "2",
            "--x",
            p(&xs),
            "--y",
            p(y),
        ];
        args.extend(extra);
        run(args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let y = labels("big.npy", &[0, 1, 2, 3, 4, 9]);
    assert_bad_input(
        &ce(&y, &["--layers", "3,8,4"]),
        &["big.npy", "row 4", "out of range", "4 outputs"],
    );
    let y = labels("neg.npy", &[0, 1, -1, 0, 1, 0]);
    assert_bad_input(&ce(&y, &[]), &["neg.npy", "row 2", "negative"]);
    // A stray huge index would make a one-hot matrix that wide: refused unless --layers says so.
    let y = labels("huge.npy", &[0, 1, 2, 3_000_000_000, 1, 0]);
    assert_bad_input(&ce(&y, &[]), &["huge.npy", "65536 classes", "--layers"]);
    // Probability rows.
    let rows = |name: &str, v: &[f32]| {
        let path = dir.join(name);
        npy::write_matrix(&path, &Matrix::from_vec(6, 2, v.to_vec())).unwrap();
        path
    };
    let good = [
        0.5f32, 0.5, 1.0, 0.0, 0.25, 0.75, 0.0, 1.0, 0.9, 0.1, 0.3, 0.7,
    ];
    let mut bad = good;
    bad[7] = 0.5;
    let y = rows("sum.npy", &bad);
    assert_bad_input(&ce(&y, &[]), &["sum.npy", "row 3", "sum to 0.5"]);
    let mut bad = good;
    (bad[4], bad[5]) = (-0.25, 1.25);
    let y = rows("negp.npy", &bad);
    assert_bad_input(&ce(&y, &[]), &["negp.npy", "row 2", "negative"]);
    ce(&rows("ok.npy", &good), &[]).success();
    // A CSV target column of class indices, and one that is not.
    let mut csv = String::from("a,b,c,label\n");
    for (i, row) in x.data.chunks(3).enumerate() {
        csv.push_str(&format!("{},{},{},{}\n", row[0], row[1], row[2], i % 3));
    }
    std::fs::write(dir.join("ok.csv"), &csv).unwrap();
    let fit = |csv: &str| {
        Cmd::cpu()
            .flag("--loss", "cross-entropy")
            .epochs(2)
            .flag("--data", format!("{}/{csv}", p(dir)))
            .flag("--targets", "1")
            .run()
    };
    let r = fit("ok.csv").success();
    assert!(r.stdout.contains("[3 -> 100 -> 3]"), "{}", r.describe());
    std::fs::write(dir.join("half.csv"), csv.replacen(",1\n", ",1.5\n", 1)).unwrap();
    assert_bad_input(
        &fit("half.csv"),
        &["half.csv", "row 1", "1.5", "class index"],
    );
}

/// A cross-entropy run on class indices reports the accuracy in the log lines, the summary line,
/// the summary JSON and the history (a column), `eval` prints it, and `predict` writes the
/// outputs, the probabilities (rows summing to 1) or the classes (int64, the rows' argmax).
#[test]
fn cli_cross_entropy_reports_accuracy_everywhere_and_predict_writes_each_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let digits = |f: &str| common::fixture_path(&format!("digits/{f}"));
    let (hist, json, ckpt) = (
        dir.join("h.csv"),
        dir.join("s.json"),
        dir.join("m.safetensors"),
    );
    let r = Cmd::cpu()
        .flag("--preset", "digits")
        .epochs(10)
        .flag("--x", p(&digits("train_x.npy")))
        .flag("--y", p(&digits("train_y.npy")))
        .flag("--history", p(&hist))
        .flag("--summary-json", p(&json))
        .flag("--save", p(&ckpt))
        .run()
        .success();
    assert!(r.stdout.contains("  acc 0."), "{}", r.describe());
    assert!(r.stdout.contains("| accuracy 0.9"), "{}", r.describe());
    let csv = std::fs::read_to_string(&hist).unwrap();
    assert!(csv.starts_with("epoch,loss,accuracy\n"), "{csv}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let acc = v["accuracy"].as_array().unwrap();
    assert_eq!(acc.first().unwrap()["epoch"], 0);
    assert_eq!(acc.last().unwrap()["epoch"], 10);
    assert!(
        acc.last().unwrap()["accuracy"].as_f64().unwrap() > 0.9,
        "{v:#}"
    );
    assert_eq!(v["config"]["loss"], "cross-entropy");
    let e = Cmd::default()
        .arg("eval")
        .flag("--checkpoint", p(&ckpt))
        .flag("--x", p(&digits("test_x.npy")))
        .flag("--y", p(&digits("test_y.npy")))
        .run()
        .success();
    assert!(e.stdout.contains("accuracy 0.9"), "{}", e.describe());
    let predict = |kind: &str| {
        let out = dir.join(format!("{kind}.npy"));
        Cmd::default()
            .arg("predict")
            .flag("--checkpoint", p(&ckpt))
            .flag("--x", p(&digits("test_x.npy")))
            .flag("-o", p(&out))
            .flag("--as", kind)
            .run()
            .success();
        out
    };
    let outputs = npy::read_matrix(&predict("outputs")).unwrap();
    let probs = npy::read_matrix(&predict("probabilities")).unwrap();
    assert_eq!((probs.rows, probs.cols), (360, 10));
    for row in probs.data.chunks(10) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let classes = npy::read_targets(&predict("classes"), Some(10)).unwrap();
    for (c, o) in classes.data.chunks(10).zip(outputs.data.chunks(10)) {
        assert_eq!(
            gpu_train::eval::argmax(c),
            gpu_train::eval::argmax(o),
            "a class is its row's largest output"
        );
    }
}
