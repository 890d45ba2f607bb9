//! Datasets from files: inputs and targets as two .npy arrays (f32 or f64, 2-D, C order), or one
//! CSV file whose last K columns are the targets. Every value must be finite; the error names the
//! first one that is not.

use crate::error::{Error, Result};
use crate::init::Matrix;
use crate::job::Loss;
use std::path::Path;

fn bad(path: &Path, msg: String) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        msg,
    }
}

/// The first NaN or infinite value of `m`, read from `path`, as an error naming its row and
/// column (counted from 0, as numpy indexes).
pub fn check_finite(path: &Path, m: &Matrix) -> Result<()> {
    match m.data.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(bad(
            path,
            format!(
                "value at row {}, column {} (counted from 0) is {}; the data must be finite",
                i / m.cols,
                i % m.cols,
                m.data[i]
            ),
        )),
    }
}

/// How far a row of probability targets for cross-entropy may sum from 1: f32 rounding of
/// written probabilities is ~1e-7 per row, a row that does not describe a distribution is off by
/// far more.
pub const PROBABILITY_SUM_TOLERANCE: f32 = 1e-4;

/// Cross-entropy's targets from `path`: a single column of class indices (whole numbers, as an
/// integer CSV column or a float array holding them) becomes one-hot rows over `classes` classes
/// (default: the largest index + 1); wider rows must be probabilities: non-negative, each row
/// summing to 1 within [`PROBABILITY_SUM_TOLERANCE`] (one-hot rows from integer .npy indices
/// are). Errors name the file and the row (counted from 0, a CSV header not counted).
pub fn classification_targets(path: &Path, y: Matrix, classes: Option<usize>) -> Result<Matrix> {
    if y.cols == 1 && classes != Some(1) {
        if let Some(r) = (y.data.iter()).position(|&v| v.fract() != 0.0 || v < 0.0) {
            return Err(bad(
                path,
                format!(
                    "row {r}: `{}` is not a class index: cross-entropy's targets are whole \
                     numbers >= 0, one per row, or rows of probabilities",
                    y.data[r]
                ),
            ));
        }
        let most = y.data.iter().fold(0.0f32, |m, &v| m.max(v)) as f64 + 1.0;
        let k = match classes {
            Some(k) => k,
            None => super::npy::inferred_classes(path, most)?,
        };
        if let Some(r) = y.data.iter().position(|&c| c as usize >= k) {
            return Err(bad(
                path,
                format!(
                    "row {r}: class index {} is out of range for a net with {k} outputs",
                    y.data[r]
                ),
            ));
        }
        let mut m = Matrix::zeros(y.rows, k);
        for (r, &c) in y.data.iter().enumerate() {
            m.data[r * k + c as usize] = 1.0;
        }
        return Ok(m);
    }
    for (r, row) in y.data.chunks(y.cols).enumerate() {
        if let Some(c) = row.iter().position(|&v| v < 0.0) {
            return Err(bad(
                path,
                format!(
                    "row {r}, column {c}: probability {} is negative; cross-entropy's targets \
                     are class indices or rows of probabilities",
                    row[c]
                ),
            ));
        }
        let sum: f32 = row.iter().sum();
        if (sum - 1.0).abs() > PROBABILITY_SUM_TOLERANCE {
            return Err(bad(
                path,
                format!(
                    "row {r}: the probabilities sum to {sum}, not 1 (within \
                     {PROBABILITY_SUM_TOLERANCE}); cross-entropy's targets are class indices or \
                     rows of probabilities"
                ),
            ));
        }
    }
    Ok(y)
}

/// `y` read from `path` as the targets of `loss`: [`classification_targets`] for cross-entropy,
/// as it is for the element losses.
pub fn targets_for(loss: Loss, path: &Path, y: Matrix, classes: Option<usize>) -> Result<Matrix> {
    match loss.is_classification() {
        true => classification_targets(path, y, classes),
        false => Ok(y),
    }
}

/// `x` (`[rows, d0]`) and `y` (`[rows, dL]`) from two .npy files with the same number of rows;
/// integer class indices in `y` become one-hot rows over `classes` classes (see
/// [`super::npy::read_targets`]).
pub fn load_npy_pair(
    x_path: &Path,
    y_path: &Path,
    classes: Option<usize>,
) -> Result<(Matrix, Matrix)> {
    let x = super::npy::read_matrix(x_path)?;
    let y = super::npy::read_targets(y_path, classes)?;
    check_pair(x_path, y_path, x, y)
}

/// [`load_npy_pair`] of the files' bytes (the paths name them in errors): what the browser page
/// does with the files a user picked.
pub fn parse_npy_pair(
    (x_path, x_bytes): (&Path, &[u8]),
    (y_path, y_bytes): (&Path, &[u8]),
    classes: Option<usize>,
) -> Result<(Matrix, Matrix)> {
    let x = super::npy::parse_matrix(x_path, x_bytes)?;
    let y = super::npy::parse_targets(y_path, y_bytes, classes)?;
    check_pair(x_path, y_path, x, y)
}

/// A dataset's inputs and targets agree in rows, are not empty and are finite.
fn check_pair(x_path: &Path, y_path: &Path, x: Matrix, y: Matrix) -> Result<(Matrix, Matrix)> {
    if x.rows != y.rows {
        return Err(bad(
            y_path,
            format!(
                "has {} rows, but {} has {}: every input row needs its target row",
                y.rows,
                x_path.display(),
                x.rows
            ),
        ));
    }
    if x.rows == 0 || x.cols == 0 || y.cols == 0 {
        return Err(bad(
            x_path,
            format!(
                "empty dataset: x is {:?} and y is {:?}",
                x.shape(),
                y.shape()
            ),
        ));
    }
    check_finite(x_path, &x)?;
    check_finite(y_path, &y)?;
    Ok((x, y))
}

/// `x` and `y` from a CSV file of numbers, one row per line, the last `targets` columns being the
/// targets. A first line that holds no number at all is taken as a header; anything else that is
/// not a finite number, and rows of different lengths, are errors naming the line and column
/// (counted from 1, as editors do).
pub fn load_csv(path: &Path, targets: usize) -> Result<(Matrix, Matrix)> {
    let file = std::fs::File::open(path).map_err(|e| bad(path, format!("cannot read: {e}")))?;
    parse_csv(path, std::io::BufReader::new(file), targets)
}

/// [`load_csv`] of any reader (`path` names it in errors).
pub fn parse_csv(
    path: &Path,
    input: impl std::io::Read,
    targets: usize,
) -> Result<(Matrix, Matrix)> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // ragged rows are reported below, with their line
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut values: Vec<f32> = Vec::new();
    let mut cols = None;
    let mut rows = 0usize;
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| csv_error(path, e))?;
        let line = record.position().map_or(i as u64 + 1, |p| p.line());
        let parsed: Vec<Option<f32>> = record.iter().map(|f| f.parse::<f32>().ok()).collect();
        if i == 0 && parsed.iter().all(Option::is_none) {
            continue; // a header
        }
        match cols {
            None => cols = Some(record.len()),
            Some(c) if c != record.len() => {
                return Err(bad(
                    path,
                    format!(
                        "line {line} has {} columns, the lines before it {c}",
                        record.len()
                    ),
                ))
            }
            Some(_) => {}
        }
        for (c, (field, v)) in record.iter().zip(&parsed).enumerate() {
            match v {
                Some(v) if v.is_finite() => values.push(*v),
                _ => {
                    return Err(bad(
                        path,
                        format!(
                            "line {line}, column {}: `{field}` is not a finite number",
                            c + 1
                        ),
                    ))
                }
            }
        }
        rows += 1;
    }
    let cols = cols.unwrap_or(0);
    if rows == 0 {
        return Err(bad(path, "no data rows".into()));
    }
    if targets == 0 || targets >= cols {
        return Err(Error::arg(
            "--targets",
            format!(
                "{targets}: must be at least 1 and leave at least one input column of the {cols} in {}",
                path.display()
            ),
        ));
    }
    let d0 = cols - targets;
    let (mut x, mut y) = (
        Vec::with_capacity(rows * d0),
        Vec::with_capacity(rows * targets),
    );
    for row in values.chunks(cols) {
        x.extend_from_slice(&row[..d0]);
        y.extend_from_slice(&row[d0..]);
    }
    Ok((
        Matrix::from_vec(rows, d0, x),
        Matrix::from_vec(rows, targets, y),
    ))
}

fn csv_error(path: &Path, e: csv::Error) -> Error {
    match e.kind() {
        csv::ErrorKind::Io(_) => bad(path, format!("cannot read: {e}")),
        _ => bad(path, format!("not a valid CSV file: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn csv_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn csv_splits_inputs_and_targets_and_skips_a_header() {
        let f = csv_file("a,b,t\n1,2,3\n4, 5 ,6\n");
        let (x, y) = load_csv(f.path(), 1).unwrap();
        assert_eq!((x.shape(), x.data), ([2, 2], vec![1.0, 2.0, 4.0, 5.0]));
        assert_eq!((y.shape(), y.data), ([2, 1], vec![3.0, 6.0]));
    }

    #[test]
    fn csv_errors_name_the_line_and_column() {
        let e = load_csv(csv_file("1,2,3\n4,x,6\n").path(), 1).unwrap_err();
        assert!(e.to_string().contains("line 2, column 2: `x`"), "{e}");
        let e = load_csv(csv_file("1,2,3\n4,5\n").path(), 1).unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
        let e = load_csv(csv_file("1,2,3\n4,nan,6\n").path(), 1).unwrap_err();
        assert!(e.to_string().contains("line 2, column 2"), "{e}");
        let e = load_csv(csv_file("1,2,3\n").path(), 3).unwrap_err();
        assert!(e.to_string().contains("--targets"), "{e}");
        let e = load_csv(csv_file("a,b\n").path(), 1).unwrap_err();
        assert!(e.to_string().contains("no data rows"), "{e}");
    }

    #[test]
    fn non_finite_values_are_located() {
        let m = Matrix::from_vec(2, 3, vec![0.0, 1.0, 2.0, 3.0, f32::INFINITY, 5.0]);
        let e = check_finite(Path::new("x.npy"), &m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("row 1, column 1") && e.contains("inf"), "{e}");
    }
}
