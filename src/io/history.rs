//! The loss history of a run, as CSV (`epoch,loss`) or JSON (by the file's extension); its
//! curves are drawn by [`super::plot`].

use crate::error::{Error, Result};
use crate::thinned::Thinned;
use serde::{Deserialize, Serialize};
use std::path::Path;

pub use super::plot::{plot, save_plot};

/// One run's losses: every epoch's training loss (NaN or infinite where it diverged).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub tool: String,
    pub version: String,
    /// Where the run ran (the device's name), for labelling curves.
    pub device: String,
    /// The epoch of `loss[0]` (a resumed run continues its numbering).
    #[serde(default)]
    pub first_epoch: usize,
    /// The training loss of epoch `first_epoch + i * loss_stride` at `loss[i]`; JSON holds a
    /// non-finite loss as null.
    #[serde(with = "nullable")]
    pub loss: Vec<f32>,
    /// 1 (every epoch), or the spacing of `loss` in a JSON history of a run longer than
    /// [`crate::thinned::CAP`] epochs, thinned as the summary's losses are.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub loss_stride: usize,
    /// The held-out loss (and accuracy) at the start of some epochs (at the end: `epoch` = the
    /// number of epochs trained).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<ValPoint>,
    /// The accuracy on the training rows at the same epochs, for class targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accuracy: Vec<AccPoint>,
}

/// The accuracy on the training rows (the fraction whose largest output is the target class) of
/// the parameters at the start of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AccPoint {
    pub epoch: usize,
    pub accuracy: f32,
}

/// The held-out score at the start of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ValPoint {
    pub epoch: usize,
    /// JSON holds a non-finite loss (a diverging held-out set) as null, like the training loss.
    #[serde(with = "nullable_one")]
    pub loss: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accuracy: Option<f32>,
}

/// f32s with JSON's null for NaN and infinities (which JSON cannot hold).
mod nullable {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let v: Vec<Option<f32>> = Vec::deserialize(d)?;
        Ok(v.into_iter().map(|x| x.unwrap_or(f32::NAN)).collect())
    }
}

/// One f32 with JSON's null for NaN and infinities.
mod nullable_one {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f32, s: S) -> Result<S::Ok, S::Error> {
        match v.is_finite() {
            true => s.serialize_f32(*v),
            false => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
        Ok(Option::<f32>::deserialize(d)?.unwrap_or(f32::NAN))
    }
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

fn is_json(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
}

impl History {
    pub fn new(device: &str, first_epoch: usize, loss: Vec<f32>) -> Self {
        History {
            tool: "gpu-train".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            device: device.into(),
            first_epoch,
            loss,
            loss_stride: 1,
            validation: Vec::new(),
            accuracy: Vec::new(),
        }
    }

    /// The epoch of `loss[i]`.
    pub fn epoch(&self, i: usize) -> usize {
        self.first_epoch + i * self.loss_stride.max(1)
    }

    /// The CSV header line for these columns.
    fn csv_header(columns: Columns) -> String {
        let mut h = "epoch,loss".to_string();
        if columns.accuracy {
            h.push_str(",accuracy");
        }
        if columns.validation {
            h.push_str(",val_loss,val_accuracy");
        }
        h.push('\n');
        h
    }

    /// Write as JSON (a `.json` path) or CSV (`epoch,loss`, one line per epoch), atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        if is_json(path) {
            let json = serde_json::to_vec_pretty(self)
                .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
            return super::atomic_write(path, |w| {
                w.write_all(&json)?;
                w.write_all(b"\n")
            });
        }
        let columns = Columns {
            accuracy: !self.accuracy.is_empty(),
            validation: !self.validation.is_empty(),
        };
        let val: std::collections::HashMap<usize, &ValPoint> =
            self.validation.iter().map(|v| (v.epoch, v)).collect();
        let acc: std::collections::HashMap<usize, &AccPoint> =
            self.accuracy.iter().map(|a| (a.epoch, a)).collect();
        super::atomic_write(path, |w| {
            w.write_all(Self::csv_header(columns).as_bytes())?;
            let mut rows = String::new();
            for (i, &l) in self.loss.iter().enumerate() {
                let e = self.epoch(i);
                let (v, a) = (val.get(&e).copied(), acc.get(&e).copied());
                csv_row(&mut rows, columns, e, l, v, a);
                if rows.len() > 1 << 16 {
                    w.write_all(rows.as_bytes())?;
                    rows.clear();
                }
            }
            w.write_all(rows.as_bytes())
        })
    }

    /// Read a history written by [`History::write`] (JSON or CSV by extension).
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::BadFile {
            path: path.to_path_buf(),
            msg,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read: {e}")))?;
        Self::parse(path, &text)
    }

    /// [`History::read`] of a file's text (`path` names it in errors and tells JSON from CSV).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |msg: String| Error::BadFile {
            path: path.to_path_buf(),
            msg,
        };
        if is_json(path) {
            let h: History = serde_json::from_str(text)
                .map_err(|e| bad(format!("not a gpu-train history: {e}")))?;
            let end = (h.loss.len().checked_mul(h.loss_stride))
                .and_then(|n| n.checked_add(h.first_epoch));
            if h.loss_stride == 0 || end.is_none() {
                return Err(bad(format!(
                    "not a gpu-train history: {} losses from epoch {} every {} epochs",
                    h.loss.len(),
                    h.first_epoch,
                    h.loss_stride
                )));
            }
            return Ok(h);
        }
        let mut lines = text.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim().starts_with("epoch,loss") => {}
            other => {
                return Err(bad(format!(
                    "line 1 is {:?}; a history CSV starts with `epoch,loss`",
                    other.map_or("", |(_, h)| h)
                )))
            }
        }
        let mut loss = Vec::new();
        let mut first_epoch = None;
        // Every row is written with its newline: a last line without one is a row that a run
        // killed while appending left cut short (its number may be cut too), and is dropped.
        let unfinished = (!text.ends_with('\n')).then(|| text.lines().count() - 1);
        for (i, line) in lines {
            if line.trim().is_empty() || Some(i) == unfinished {
                continue;
            }
            let mut fields = line.split(',');
            let value = (fields.next().zip(fields.next()))
                .and_then(|(e, l)| Some((e.trim().parse::<usize>().ok()?, l.trim().parse().ok()?)));
            let first = *first_epoch.get_or_insert(value.map_or(0, |(e, _)| e));
            let next = first.checked_add(loss.len());
            match value {
                Some((e, l)) if Some(e) == next => loss.push(l),
                _ => {
                    let want = next.map_or_else(
                        || "no further epoch".to_string(),
                        |n| format!("`{n},<loss>`"),
                    );
                    return Err(bad(format!(
                        "line {}: expected {want}, found {line:?}",
                        i + 1
                    )));
                }
            }
        }
        let device = path
            .file_stem()
            .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
        Ok(History {
            tool: "gpu-train".into(),
            version: String::new(),
            device,
            first_epoch: first_epoch.unwrap_or(0),
            loss,
            loss_stride: 1,
            validation: Vec::new(),
            accuracy: Vec::new(),
        })
    }
}

/// Which columns a CSV history has besides `epoch,loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// The accuracy on the training rows (class targets).
    pub accuracy: bool,
    /// The held-out loss and accuracy (a held-out set).
    pub validation: bool,
}

/// Append the CSV row of `epoch` to `out`: its loss, and the scores at its start, which are
/// `validation` and `accuracy` where those are of `epoch`.
fn csv_row(
    out: &mut String,
    columns: Columns,
    epoch: usize,
    loss: f32,
    validation: Option<&ValPoint>,
    accuracy: Option<&AccPoint>,
) {
    use std::fmt::Write;
    let _ = write!(out, "{epoch},{loss:?}");
    if columns.accuracy {
        match accuracy.filter(|a| a.epoch == epoch) {
            Some(a) => _ = write!(out, ",{:?}", a.accuracy),
            None => out.push(','),
        }
    }
    if columns.validation {
        match validation.filter(|v| v.epoch == epoch) {
            Some(v) => {
                let acc = v.accuracy.map_or_else(String::new, |a| format!("{a:?}"));
                _ = write!(out, ",{:?},{acc}", v.loss);
            }
            None => out.push_str(",,"),
        }
    }
    out.push('\n');
}

/// A history written as the run goes, so that a run stopped or killed at any point leaves it
/// complete up to its last chunk. A CSV history gets every chunk's rows appended (one write per
/// chunk; the file is first replaced atomically by one holding only the header). A JSON history
/// is rewritten atomically from what the run has kept (every epoch's loss up to
/// [`crate::thinned::CAP`], thinned beyond), at most once a second and at the end.
pub struct HistoryWriter {
    path: std::path::PathBuf,
    columns: Columns,
    /// The CSV file, open for appending, and its length after the last complete chunk.
    csv: Option<(std::fs::File, u64)>,
    /// For JSON: the history so far and when it was last written.
    json: Option<JsonHistory>,
    /// The first failure; nothing is written after it (the file stays as it was before it).
    failed: Option<Error>,
}

impl HistoryWriter {
    /// Start the history of a run on `device` from `first_epoch`, replacing any file at `path`.
    pub fn create(path: &Path, device: &str, first_epoch: usize, columns: Columns) -> Result<Self> {
        let mut w = HistoryWriter {
            path: path.to_path_buf(),
            columns,
            csv: None,
            json: None,
            failed: None,
        };
        if is_json(path) {
            let h = History::new(device, first_epoch, Vec::new());
            w.json = Some(JsonHistory {
                history: h,
                loss: Thinned::default(),
                validation: Thinned::default(),
                accuracy: Thinned::default(),
                written: None,
            });
            w.write_json()?;
        } else {
            let header = History::csv_header(columns);
            super::atomic_write(path, |f| f.write_all(header.as_bytes()))?;
            let file = std::fs::OpenOptions::new()
                .append(true)
                .open(path)
                .map_err(|e| Error::io(path, e))?;
            w.csv = Some((file, header.len() as u64));
        }
        Ok(w)
    }

    /// Add the losses of the epochs from `first` on, with the latest scores (those at `first`,
    /// where the run scored it).
    pub fn append(
        &mut self,
        first: usize,
        losses: &[f32],
        validation: Option<ValPoint>,
        accuracy: Option<AccPoint>,
    ) {
        // A CSV history stops at its first failure (its rows would have a gap); a JSON one is
        // tried again at its next write.
        if self.failed.is_some() && self.csv.is_some() {
            return;
        }
        let result = if let Some((file, len)) = &mut self.csv {
            let mut rows = String::new();
            for (i, &l) in losses.iter().enumerate() {
                let (v, a) = (validation.as_ref(), accuracy.as_ref());
                csv_row(&mut rows, self.columns, first + i, l, v, a);
            }
            append_rows(file, len, rows.as_bytes()).map_err(|e| Error::io(&self.path, e))
        } else if let Some(j) = &mut self.json {
            losses.iter().for_each(|&l| j.loss.push(l));
            // Scores new since the last chunk (each is pushed once, in epoch order).
            let after = |e: Option<usize>, epoch: usize| e.is_none_or(|e| epoch > e);
            if let Some(v) =
                validation.filter(|v| after(j.validation.last().map(|l| l.epoch), v.epoch))
            {
                j.validation.push(v);
            }
            if let Some(a) = accuracy.filter(|a| after(j.accuracy.last().map(|l| l.epoch), a.epoch))
            {
                j.accuracy.push(a);
            }
            match j.written {
                Some(t) if t.elapsed().as_secs_f64() < 1.0 => Ok(()),
                _ => self.write_json(),
            }
        } else {
            Ok(())
        };
        if let Err(e) = result {
            self.failed = Some(e);
        }
    }

    /// Write what is not written yet, with the run's scores (`validation` and `accuracy` as the
    /// summary keeps them). A CSV history's first failure, if there was one (its rows stop
    /// there); a JSON history is tried once more, whole.
    pub fn finish(mut self, validation: &[ValPoint], accuracy: &[AccPoint]) -> Result<()> {
        if let Some(j) = &mut self.json {
            j.validation = validation.iter().copied().collect();
            j.accuracy = accuracy.iter().copied().collect();
            return self.write_json();
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn write_json(&mut self) -> Result<()> {
        let Some(j) = &mut self.json else {
            return Ok(());
        };
        let h = &mut j.history;
        h.loss = j.loss.kept().to_vec();
        h.loss_stride = j.loss.stride();
        h.validation = j.validation.with_last();
        h.accuracy = j.accuracy.with_last();
        j.written = Some(std::time::Instant::now());
        h.write(&self.path)
    }
}

/// What a JSON history's writer holds of the run, each record bounded.
struct JsonHistory {
    history: History,
    loss: Thinned<f32>,
    validation: Thinned<ValPoint>,
    accuracy: Thinned<AccPoint>,
    written: Option<std::time::Instant>,
}

/// Append `rows` to `file` (whose complete part is `len` bytes long) in one write; on a failure
/// (a full disk) cut the file back to `len`, so it never ends in part of a chunk.
fn append_rows(file: &mut std::fs::File, len: &mut u64, rows: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    match file.write_all(rows) {
        Ok(()) => {
            *len += rows.len() as u64;
            Ok(())
        }
        Err(e) => {
            let _ = file.set_len(*len);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_round_trips_as_csv_and_json_nan_included() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::new("cpu", 0, vec![3.5, 1.25, 0.5, f32::NAN]);
        for name in ["h.csv", "h.json"] {
            let p = dir.path().join(name);
            h.write(&p).unwrap();
            let back = History::read(&p).unwrap();
            assert_eq!(back.loss.len(), 4, "{name}");
            assert_eq!(back.loss[..3], h.loss[..3], "{name}");
            assert!(back.loss[3].is_nan(), "{name}");
        }
        // A held-out loss that overflowed (a diverging run) reads back too, as a non-finite one.
        let mut h = h;
        h.validation = vec![
            ValPoint {
                epoch: 0,
                loss: 2.5,
                accuracy: None,
            },
            ValPoint {
                epoch: 3,
                loss: f32::INFINITY,
                accuracy: None,
            },
        ];
        let p = dir.path().join("val.json");
        h.write(&p).unwrap();
        let back = History::read(&p).unwrap();
        assert_eq!(back.validation[0], h.validation[0]);
        assert!(
            !back.validation[1].loss.is_finite(),
            "{:?}",
            back.validation
        );
        let p = dir.path().join("bad.csv");
        std::fs::write(&p, "epoch,loss\n0,1.0\n2,0.5\n").unwrap();
        let e = History::read(&p).unwrap_err().to_string();
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn plots_are_valid_svg_and_png() {
        let dir = tempfile::tempdir().unwrap();
        let a = History::new(
            "cpu",
            0,
            (0..50).map(|i| 100.0 / (1.0 + i as f32)).collect(),
        );
        let b = History::new(
            "gpu",
            10,
            (0..40).map(|i| 90.0 / (1.0 + i as f32)).collect(),
        );
        let runs = [("a".to_string(), &a), ("b".to_string(), &b)];
        let svg = dir.path().join("p.svg");
        plot(&svg, "loss", &runs).unwrap();
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
        let curves = text.matches(r#"stroke-width="2" points="#).count();
        assert_eq!(curves, 4, "two curves and their two legend marks");
        assert!(
            text.contains(">\na\n<") && text.contains(">\nb\n<"),
            "labelled"
        );
        let png = dir.path().join("p.png");
        plot(&png, "loss", &runs).unwrap();
        let img = image::open(&png).unwrap();
        assert_eq!((img.width(), img.height()), (900, 560));
    }
}
