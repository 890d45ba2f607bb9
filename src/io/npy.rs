//! .npy arrays in numpy's own layout (C order; matrices 2-D, biases 1-D as PyTorch keeps them):
//! saving the state of a run and loading one.

use crate::error::{Error, Result};
use crate::init::{HostState, Matrix, Params};
use npyz::{DType, TypeChar, WriterBuilder};
use std::path::{Path, PathBuf};

/// Write a matrix as a 2-D little-endian f32 .npy file, atomically.
pub fn write_matrix(path: &Path, m: &Matrix) -> Result<()> {
    super::atomic_write(path, |w| encode(w, &matrix_shape(m), &m.data))
}

/// Write a `[1, n]` bias as a 1-D little-endian f32 .npy file of shape `[n]`, atomically.
pub fn write_vector(path: &Path, m: &Matrix) -> Result<()> {
    super::atomic_write(path, |w| encode(w, &[m.data.len() as u64], &m.data))
}

/// Write class indices as a 1-D little-endian int64 .npy file (numpy's default integer, what
/// `--y` reads back as classes), atomically.
pub fn write_classes(path: &Path, classes: &[usize]) -> Result<()> {
    let classes: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    super::atomic_write(path, |w| encode(w, &[classes.len() as u64], &classes))
}

/// The bytes of [`write_matrix`]'s file, for a caller without a file system (the browser page
/// offers them as a download); `name` names it in errors.
pub fn to_bytes(name: &Path, m: &Matrix) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    encode(&mut bytes, &matrix_shape(m), &m.data).map_err(|e| Error::io(name, e))?;
    Ok(bytes)
}

/// The bytes of [`write_classes`]'s file.
pub fn classes_to_bytes(name: &Path, classes: &[usize]) -> Result<Vec<u8>> {
    let classes: Vec<i64> = classes.iter().map(|&c| c as i64).collect();
    let mut bytes = Vec::new();
    encode(&mut bytes, &[classes.len() as u64], &classes).map_err(|e| Error::io(name, e))?;
    Ok(bytes)
}

fn matrix_shape(m: &Matrix) -> [u64; 2] {
    [m.rows as u64, m.cols as u64]
}

/// One .npy array of `shape` in numpy's default dtype for `T` (little-endian), into `w`.
fn encode<T: npyz::AutoSerialize + Copy>(
    w: &mut dyn std::io::Write,
    shape: &[u64],
    data: &[T],
) -> std::io::Result<()> {
    let mut npy = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(shape)
        .writer(w)
        .begin_nd()?;
    npy.extend(data.iter().copied())?;
    npy.finish()
}

/// Read a 1-D f32 or f64 .npy file of shape `[n]` as a `[1, n]` bias.
pub fn read_vector(path: &Path) -> Result<Matrix> {
    let (shape, data) = read_array(path, 1)?;
    Ok(Matrix::from_vec(1, shape[0], data))
}

/// Read a 2-D f32 or f64 C-order .npy file as an f32 matrix.
pub fn read_matrix(path: &Path) -> Result<Matrix> {
    parse_matrix(path, &read_bytes(path)?)
}

/// [`read_matrix`] of a file's bytes (`path` names it in errors).
pub fn parse_matrix(path: &Path, bytes: &[u8]) -> Result<Matrix> {
    let (shape, data) = float_array(path, parse_any(path, bytes, &[2])?)?;
    Ok(Matrix::from_vec(shape[0], shape[1], data))
}

/// An f32 or f64 C-order array of `ndim` dimensions, as its shape and f32 values.
fn read_array(path: &Path, ndim: usize) -> Result<(Vec<usize>, Vec<f32>)> {
    float_array(path, read_any(path, &[ndim])?)
}

/// The float values of an array read, refusing integers.
fn float_array(path: &Path, array: (Vec<usize>, Values)) -> Result<(Vec<usize>, Vec<f32>)> {
    match array {
        (shape, Values::Float(v)) => Ok((shape, v)),
        (_, Values::Int(_)) => Err(Error::BadFile {
            path: path.to_path_buf(),
            msg: "dtype is an integer type; expected f32 or f64".into(),
        }),
    }
}

/// The values of an array: floats (as f32), or integers (class labels).
enum Values {
    Float(Vec<f32>),
    Int(Vec<i64>),
}

/// A C-order array of one of the dimension counts `ndims`: f32, f64, or any integer type.
fn read_any(path: &Path, ndims: &[usize]) -> Result<(Vec<usize>, Values)> {
    parse_any(path, &read_bytes(path)?, ndims)
}

/// A file's bytes; one that cannot be read is bad input (exit 2), like one that cannot be parsed.
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        msg: format!("cannot read: {e}"),
    })
}

/// [`read_any`] of a file's bytes (`path` names it in errors). Nothing is allocated for the
/// values before the header's shape is checked against the bytes that follow it, so a header
/// announcing a huge array in a small file is refused, not trusted.
fn parse_any(path: &Path, bytes: &[u8], ndims: &[usize]) -> Result<(Vec<usize>, Values)> {
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    check_header(bytes).map_err(bad)?;
    let mut data = bytes;
    let header = npyz::NpyHeader::from_reader(&mut data)
        .map_err(|e| bad(format!("not a valid .npy file ({e})")))?;
    let npy = npyz::NpyFile::with_header(header, data);
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    if !ndims.contains(&shape.len()) {
        let want: Vec<String> = ndims.iter().map(|d| format!("{d}-D")).collect();
        return Err(bad(format!(
            "expected a {} array, found {} dimension(s) with shape {shape:?}",
            want.join(" or "),
            shape.len()
        )));
    }
    if npy.order() != npyz::Order::C {
        return Err(bad(
            "array is in Fortran order; save it with np.ascontiguousarray(a) first".into(),
        ));
    }
    let dtype = npy.dtype();
    let unsupported = || {
        bad(format!(
            "dtype {} is not f32, f64 or an integer type",
            dtype.descr()
        ))
    };
    let (kind, size) = match &dtype {
        DType::Plain(ts) => (ts.type_char(), ts.size_field()),
        _ => return Err(unsupported()),
    };
    // The bytes the shape needs, against those there are (with overflow taken as too many).
    let needed = (npy.shape().iter())
        .try_fold(size, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= usize::MAX as u64);
    match needed {
        Some(n) if n <= data.len() as u64 => {}
        _ => {
            return Err(bad(format!(
                "truncated: its shape {:?} of {} needs {} bytes of data, but the file holds {}",
                npy.shape(),
                dtype.descr(),
                needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
                data.len()
            )))
        }
    }
    let unreadable = |e: std::io::Error| bad(format!("truncated or unreadable data ({e})"));
    let values = match (kind, size) {
        (TypeChar::Float, 4) => Values::Float(npy.into_vec::<f32>().map_err(unreadable)?),
        (TypeChar::Float, 8) => Values::Float(
            (npy.into_vec::<f64>().map_err(unreadable)?)
                .into_iter()
                .map(|x| x as f32)
                .collect(),
        ),
        (TypeChar::Int, 1) => Values::Int(widen::<i8>(npy).map_err(unreadable)?),
        (TypeChar::Int, 2) => Values::Int(widen::<i16>(npy).map_err(unreadable)?),
        (TypeChar::Int, 4) => Values::Int(widen::<i32>(npy).map_err(unreadable)?),
        (TypeChar::Int, 8) => Values::Int(widen::<i64>(npy).map_err(unreadable)?),
        (TypeChar::Uint, 1) => Values::Int(widen::<u8>(npy).map_err(unreadable)?),
        (TypeChar::Uint, 2) => Values::Int(widen::<u16>(npy).map_err(unreadable)?),
        (TypeChar::Uint, 4) => Values::Int(widen::<u32>(npy).map_err(unreadable)?),
        _ => return Err(unsupported()),
    };
    let len = match &values {
        Values::Float(v) => v.len(),
        Values::Int(v) => v.len(),
    };
    if len != shape.iter().product::<usize>() {
        return Err(bad(format!(
            "holds {len} values, but its shape {shape:?} needs {}",
            shape.iter().product::<usize>()
        )));
    }
    Ok((shape, values))
}

/// Deepest nesting of brackets taken in a .npy header.
const MAX_HEADER_NESTING: usize = 8;

/// What must hold of a header before npyz reads it, which trusts it: the header length it
/// announces is in the file (npyz allocates that much first), and every shape in it multiplies
/// out within 64 bits (npyz multiplies unchecked). Anything else wrong is left to npyz to report.
fn check_header(bytes: &[u8]) -> std::result::Result<(), String> {
    let (len, start): (usize, usize) = match bytes {
        [0x93, b'N', b'U', b'M', b'P', b'Y', 1, _, a, b, ..] => {
            (u16::from_le_bytes([*a, *b]) as usize, 10)
        }
        [0x93, b'N', b'U', b'M', b'P', b'Y', 2 | 3, _, a, b, c, d, ..] => {
            (u32::from_le_bytes([*a, *b, *c, *d]) as usize, 12)
        }
        _ => return Ok(()),
    };
    let Some(text) = bytes.get(start..start.saturating_add(len)) else {
        return Err(format!(
            "truncated: its header announces {len} bytes, but the file holds {}",
            bytes.len() - start.min(bytes.len())
        ));
    };
    let text = String::from_utf8_lossy(text);
    // An escape could spell a key that the search below does not see; numpy writes none.
    if text.contains('\\') {
        return Err("its header has a backslash escape, which numpy never writes".into());
    }
    // npyz's parser takes time exponential in the nesting of brackets; numpy's own headers
    // nest a handful deep (a structured dtype's fields add two levels each).
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        if depth > MAX_HEADER_NESTING {
            return Err(format!(
                "its header nests brackets more than {MAX_HEADER_NESTING} deep"
            ));
        }
    }
    for key in ["'shape'", "\"shape\""] {
        for (at, _) in text.match_indices(key) {
            let rest = text[at + key.len()..].trim_start();
            let Some(rest) = rest.strip_prefix(':').map(str::trim_start) else {
                continue;
            };
            let close = match rest.chars().next() {
                Some('(') => ')',
                Some('[') => ']',
                _ => continue,
            };
            let Some(end) = rest.find(close) else {
                return Err("its header's shape is not closed".into());
            };
            // npyz multiplies the dimensions in either order (for the strides), so the product
            // of the non-zero ones must fit: a 0 does not make the others harmless.
            let mut n: u64 = 1;
            for part in rest[1..end]
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
            {
                let d: u64 = (part.trim_end_matches(['L', 'l']).parse())
                    .map_err(|_| format!("its header's shape has `{part}`, not a whole number"))?;
                n = n.checked_mul(d.max(1)).ok_or_else(|| {
                    format!(
                        "its header's shape {} has more than 2^64 elements",
                        &rest[..=end]
                    )
                })?;
            }
        }
    }
    Ok(())
}

/// An integer array's values, widened to i64.
fn widen<T: npyz::Deserialize + Into<i64>>(npy: npyz::NpyFile<&[u8]>) -> std::io::Result<Vec<i64>> {
    Ok(npy.into_vec::<T>()?.into_iter().map(Into::into).collect())
}

/// Most classes taken from the largest class index when the net's width is not given.
pub const MAX_INFERRED_CLASSES: usize = 1 << 16;

/// The number of classes `most` (the largest index + 1) implies, refused past
/// [`MAX_INFERRED_CLASSES`] (a stray huge index would otherwise allocate a one-hot matrix that
/// wide): `--layers` sets the output width explicitly.
pub fn inferred_classes(path: &Path, most: f64) -> Result<usize> {
    if most > MAX_INFERRED_CLASSES as f64 {
        return Err(Error::BadFile {
            path: path.to_path_buf(),
            msg: format!(
                "the largest class index, {}, implies more than {MAX_INFERRED_CLASSES} classes; \
                 give --layers to set the number of outputs",
                most - 1.0
            ),
        });
    }
    Ok(most as usize)
}

/// Targets from a .npy file: a 2-D float array as it is, or class indices (an integer array of
/// shape `[rows]` or `[rows, 1]`) as one-hot rows over `classes` classes (default: the largest
/// index + 1).
pub fn read_targets(path: &Path, classes: Option<usize>) -> Result<Matrix> {
    parse_targets(path, &read_bytes(path)?, classes)
}

/// [`read_targets`] of a file's bytes (`path` names it in errors).
pub fn parse_targets(path: &Path, bytes: &[u8], classes: Option<usize>) -> Result<Matrix> {
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    match parse_any(path, bytes, &[1, 2])? {
        (shape, Values::Float(v)) if shape.len() == 2 => {
            Ok(Matrix::from_vec(shape[0], shape[1], v))
        }
        (shape, Values::Float(_)) => Err(bad(format!(
            "a 1-D float array {shape:?}: targets are 2-D floats, or 1-D integer class indices"
        ))),
        (shape, Values::Int(labels)) => one_hot_indices(path, &labels, &shape, classes),
    }
}

/// Class indices (integers of shape `[rows]` or `[rows, 1]`, read from `path`) as one-hot rows
/// over `classes` classes (default: the largest index + 1): a file's integer targets, or a
/// caller's integer array.
pub fn one_hot_indices(
    path: &Path,
    labels: &[i64],
    shape: &[usize],
    classes: Option<usize>,
) -> Result<Matrix> {
    let bad = |msg: String| Error::BadFile {
        path: path.to_path_buf(),
        msg,
    };
    if shape.len() > 2 || (shape.len() == 2 && shape[1] != 1) {
        return Err(bad(format!(
            "integer targets of shape {shape:?}: class indices are [rows] or [rows, 1]"
        )));
    }
    if let Some(i) = labels.iter().position(|&c| c < 0) {
        return Err(bad(format!(
            "class index {} at row {i} is negative",
            labels[i]
        )));
    }
    let most = labels.iter().max().map_or(0.0, |&m| m as f64 + 1.0);
    let k = match classes {
        Some(k) => k,
        None => inferred_classes(path, most)?,
    };
    if let Some(i) = labels.iter().position(|&c| c as usize >= k) {
        return Err(bad(format!(
            "class index {} at row {i} is out of range for a net with {k} outputs",
            labels[i]
        )));
    }
    let mut m = Matrix::zeros(labels.len(), k);
    for (r, &c) in labels.iter().enumerate() {
        m.data[r * k + c as usize] = 1.0;
    }
    Ok(m)
}

/// File name of weight `l` (0-based): `w1.npy`, `w2.npy`, ...
pub fn weight_file(l: usize) -> String {
    format!("w{}.npy", l + 1)
}

/// File name of bias `l` (0-based): `b1.npy`, `b2.npy`, ...
pub fn bias_file(l: usize) -> String {
    format!("b{}.npy", l + 1)
}

/// Write x.npy, y.npy, w1.npy, ... and (with biases) b1.npy, ... into `dir` (created if missing).
pub fn save_state(dir: &Path, state: &HostState) -> Result<()> {
    super::ensure_dir(dir)?;
    write_matrix(&dir.join("x.npy"), &state.x)?;
    write_matrix(&dir.join("y.npy"), &state.y)?;
    save_params(dir, &state.params())
}

/// Write w1.npy, w2.npy, ... (2-D, `[d_l, d_{l+1}]`) and b1.npy, ... (1-D, `[d_{l+1}]`) into
/// `dir` (created if missing).
pub fn save_params(dir: &Path, params: &Params) -> Result<()> {
    super::ensure_dir(dir)?;
    for (l, w) in params.weights.iter().enumerate() {
        write_matrix(&dir.join(weight_file(l)), w)?;
    }
    for (l, b) in params.biases.iter().enumerate() {
        write_vector(&dir.join(bias_file(l)), b)?;
    }
    Ok(())
}

/// Read x.npy, y.npy, w1.npy, w2.npy, ... (as many consecutive weights as exist) from `dir` and
/// check that they chain: x is [batch, d0], w1 is [d0, d1], ..., y is [batch, dL].
pub fn load_state(dir: &Path) -> Result<HostState> {
    if !dir.is_dir() {
        return Err(Error::BadFile {
            path: dir.to_path_buf(),
            msg: "--init expects a directory holding x.npy, y.npy, w1.npy, w2.npy, ...".into(),
        });
    }
    let need = |name: &str| -> Result<PathBuf> {
        let p = dir.join(name);
        if p.exists() {
            Ok(p)
        } else {
            Err(Error::BadFile {
                path: p,
                msg: "missing (--init needs x.npy, y.npy, w1.npy, ...)".into(),
            })
        }
    };
    let x = read_matrix(&need("x.npy")?)?;
    let y = read_matrix(&need("y.npy")?)?;
    let mut weights = Vec::new();
    let mut l = 0;
    loop {
        let p = dir.join(weight_file(l));
        if !p.exists() {
            break;
        }
        weights.push(read_matrix(&p)?);
        l += 1;
    }
    if weights.is_empty() {
        need(&weight_file(0))?;
    }
    // Chain the shapes, naming the first file that breaks the chain.
    let mut prev = x.cols;
    for (l, w) in weights.iter().enumerate() {
        if w.rows != prev {
            return Err(Error::Shape {
                path: dir.join(weight_file(l)),
                expected: vec![prev, w.cols],
                found: w.shape().to_vec(),
                hint: if l == 0 {
                    " (rows must equal x's columns)".into()
                } else {
                    format!(" (rows must equal the columns of w{l})")
                },
            });
        }
        prev = w.cols;
    }
    if y.cols != prev && y.rows == x.rows {
        // The weights (read up to the first missing file) stop short of y's width: that file is
        // missing.
        return Err(Error::BadFile {
            path: dir.join(weight_file(weights.len())),
            msg: format!(
                "missing: {} ends at {prev} columns, but y.npy has {}",
                weight_file(weights.len() - 1),
                y.cols
            ),
        });
    }
    if y.shape() != [x.rows, prev] {
        return Err(Error::Shape {
            path: dir.join("y.npy"),
            expected: vec![x.rows, prev],
            found: y.shape().to_vec(),
            hint: " (rows of x by columns of the last weight)".into(),
        });
    }
    let biases = load_biases(dir, &weights)?;
    Ok(HostState {
        x,
        y,
        weights,
        biases,
    })
}

/// b1.npy, b2.npy, ... for every weight if any of them exists (the files then give the net
/// biases), none otherwise; each 1-D with the width of its weight's columns.
fn load_biases(dir: &Path, weights: &[Matrix]) -> Result<Vec<Matrix>> {
    if !(0..weights.len()).any(|l| dir.join(bias_file(l)).exists()) {
        return Ok(Vec::new());
    }
    weights
        .iter()
        .enumerate()
        .map(|(l, w)| {
            let p = dir.join(bias_file(l));
            if !p.exists() {
                return Err(Error::BadFile {
                    path: p,
                    msg: "missing: the other biases are there, so every layer needs one".into(),
                });
            }
            let b = read_vector(&p)?;
            if b.cols != w.cols {
                return Err(Error::Shape {
                    path: p,
                    expected: vec![w.cols],
                    found: vec![b.cols],
                    hint: format!(" (the columns of w{})", l + 1),
                });
            }
            Ok(b)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_the_files_and_read_back() {
        let m = Matrix::from_vec(3, 2, vec![1.5, -2.0, 0.0, 7.25, f32::MIN_POSITIVE, 1e30]);
        let name = Path::new("m.npy");
        let bytes = to_bytes(name, &m).unwrap();
        assert_eq!(parse_matrix(name, &bytes).unwrap(), m);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.npy");
        write_matrix(&path, &m).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);

        let classes = [2, 0, 1, 2];
        let bytes = classes_to_bytes(name, &classes).unwrap();
        let y = parse_targets(name, &bytes, Some(3)).unwrap();
        assert_eq!((y.rows, y.cols), (4, 3));
        assert_eq!(&y.data[..3], &[0.0, 0.0, 1.0]);
        write_classes(&path, &classes).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }
}
