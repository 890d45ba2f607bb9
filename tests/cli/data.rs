//! Datasets from .npy and CSV in mini-batches, their faults, generated rows.

use crate::common::{self};
use crate::*;
use gpu_train::init::Matrix;
use gpu_train::io::npy;
use std::path::Path;

/// A small dataset (150 rows, 6 inputs, 2 targets) as x.npy/y.npy (y in f64) and as one CSV with
/// a header, the same numbers in both.
fn dataset_files(dir: &Path) -> (Matrix, Matrix) {
    let mut r = common::rng(77);
    let x = Matrix::from_vec(150, 6, common::randn(&mut r, 900));
    let y = Matrix::from_vec(150, 2, common::randn(&mut r, 300));
    npy::write_matrix(&dir.join("x.npy"), &x).unwrap();
    let y64: Vec<u8> = y
        .data
        .iter()
        .flat_map(|&v| (v as f64).to_le_bytes())
        .collect();
    write_npy(&dir.join("y.npy"), "<f8", &[150, 2], &y64);
    let mut csv = String::from("a,b,c,d,e,f,t1,t2\n");
    for i in 0..150 {
        let row: Vec<String> = (x.data[i * 6..][..6].iter().chain(&y.data[i * 2..][..2]))
            .map(|v| v.to_string())
            .collect();
        csv.push_str(&row.join(","));
        csv.push('\n');
    }
    std::fs::write(dir.join("d.csv"), csv).unwrap();
    (x, y)
}

/// `--x/--y` and `--data --targets` train the same net on the same rows in mini-batches (the
/// summary records the dataset), with the widths taken from the files.
#[test]
fn cli_dataset_from_npy_and_csv_trains_in_minibatches_alike() {
    let tmp = tempfile::tempdir().unwrap();
    dataset_files(tmp.path());
    let common = [
        "--device",
        "cpu",
        "--batch",
        "32",
        "--epochs",
        "4",
        "--lr",
        "1e-3",
        "--init-scheme",
        "torch",
    ];
    let j = tmp.path().join("run.json");
    let (x, y) = (tmp.path().join("x.npy"), tmp.path().join("y.npy"));
    let a = run(common
        .iter()
        .chain(&["--x", p(&x), "--y", p(&y), "--summary-json", p(&j)]))
    .success();
    assert!(
        a.stdout
            .contains("150 rows in batches of 32 (shuffled) x [6 -> 100 -> 2]"),
        "{}",
        a.describe()
    );
    let csv = tmp.path().join("d.csv");
    let b = run(common.iter().chain(&["--data", p(&csv), "--targets", "2"])).success();
    assert_eq!(
        a.summary().2,
        b.summary().2,
        "{}\n{}",
        a.describe(),
        b.describe()
    );
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&j).unwrap()).unwrap();
    assert_eq!(v["config"]["rows"], 150, "{v:#}");
    assert_eq!(v["config"]["batch"], 32);
    assert!(v["config"]["data"]["x_file"]
        .as_str()
        .unwrap()
        .ends_with("x.npy"));
    // --no-shuffle changes the order, so the trajectory.
    let c = run(common
        .iter()
        .chain(&["--x", p(&x), "--y", p(&y), "--no-shuffle"]))
    .success();
    assert_ne!(a.summary().2, c.summary().2);
    assert!(c.stdout.contains("(in order)"), "{}", c.describe());
}

/// Every kind of bad dataset: exit 2, a message naming the file and what is wrong with it.
#[test]
fn cli_bad_datasets_exit_2_naming_the_file_and_the_fault() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    dataset_files(dir);
    let (x, y) = (dir.join("x.npy"), dir.join("y.npy"));
    let train = |extra: &[&str]| {
        let base = ["--device", "cpu", "--epochs", "1"];
        run(base.iter().chain(extra))
    };
    let xy = |xf: &Path, yf: &Path| train(&["--x", p(xf), "--y", p(yf)]);
    let bad = dir.join("bad.npy");
    std::fs::write(&bad, b"hello, not numpy").unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "not a valid .npy"]);
    write_npy(&bad, "<i4", &[150, 6], &[0u8; 150 * 6 * 4]);
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "dtype"]);
    write_npy(&bad, "<f4", &[150, 6, 1], &[0u8; 150 * 6 * 4]);
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "2-D"]);
    write_npy(&bad, "<f4", &[150, 6], &[0u8; 150 * 6 * 4]);
    let mut bytes = std::fs::read(&bad).unwrap();
    let at = bytes.windows(5).position(|w| w == b"False").unwrap();
    bytes[at..at + 5].copy_from_slice(b"True ");
    std::fs::write(&bad, bytes).unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "Fortran"]);
    write_npy(&bad, "<f4", &[149, 2], &[0u8; 149 * 2 * 4]);
    assert_bad_input(&xy(&x, &bad), &["bad.npy", "149 rows", "150"]);
    let mut nan = vec![0f32; 150 * 6];
    nan[2 * 6 + 1] = f32::NAN;
    npy::write_matrix(&bad, &Matrix::from_vec(150, 6, nan)).unwrap();
    assert_bad_input(&xy(&bad, &y), &["bad.npy", "row 2, column 1", "NaN"]);
    assert_bad_input(&xy(&dir.join("missing.npy"), &y), &["missing.npy"]);
    assert_bad_input(&train(&["--x", p(&x)]), &["--x", "--y"]);
    assert_bad_input(&train(&["--y", p(&y)]), &["--y", "--x"]);
    assert_bad_input(
        &train(&["--x", p(&x), "--y", p(&y), "--layers", "5,100,2"]),
        &["--layers", "x.npy", "6 inputs"],
    );
    assert_bad_input(
        &train(&["--x", p(&x), "--y", p(&y), "--rows", "10"]),
        &["--rows"],
    );
    let csv = dir.join("bad.csv");
    std::fs::write(&csv, "1,2,3\n4,5,6\n7,8\n").unwrap();
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1"]),
        &["bad.csv", "line 3"],
    );
    std::fs::write(&csv, "1,2,3\n4,five,6\n").unwrap();
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1"]),
        &["bad.csv", "line 2, column 2", "five"],
    );
    assert_bad_input(&train(&["--data", p(&csv)]), &["--targets"]);
    assert_bad_input(&train(&["--targets", "1"]), &["--targets", "--data"]);
    assert_bad_input(
        &train(&["--data", p(&csv), "--targets", "1", "--x", p(&x)]),
        &["--data", "--x"],
    );
}

/// `--rows` generates a dataset of that many rows, trained in mini-batches.
#[test]
fn cli_rows_trains_a_generated_dataset_in_minibatches() {
    let r = Cmd::cpu()
        .flag("--rows", "100")
        .flag("--batch", "30")
        .flag("--layers", "8,4,2")
        .epochs(3)
        .run()
        .success();
    assert!(
        r.stdout.contains("100 rows in batches of 30"),
        "{}",
        r.describe()
    );
    let r = Cmd::cpu()
        .flag("--rows", "10")
        .flag("--batch", "30")
        .epochs(1)
        .run();
    assert_bad_input(&r, &["--batch", "30", "10 rows"]);
}
