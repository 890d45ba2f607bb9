//! The results file of `gpu-train bench --out F.json` (versioned, so that files from other
//! versions and machines can be compared), and `gpu-train bench compare`.
//!
//! Schema history: 1 (this one). A reader accepts every version up to its own and refuses newer
//! ones by name; fields added later get serde defaults, so old files stay readable.

use crate::backend::KernelTime;
use crate::error::{Error, Result};
use crate::gpu::tune::Parity;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use crate::devices::{DeviceInfo, FmaPeak, Host};

pub const FORMAT: &str = "gpu-train bench results";
/// 2: each GPU device carries the memory layout its cases ran in (`layout`); schema 1 is read
/// with none.
pub const SCHEMA_VERSION: u32 = 2;

/// One bench run: where, what, and every sample.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub format: String,
    pub schema_version: u32,
    pub tool_version: String,
    /// The commit the tool was built from, where the build could tell.
    #[serde(default)]
    pub git_commit: Option<String>,
    /// Seconds since the Unix epoch when the run started.
    pub created_unix_s: u64,
    /// The command line.
    pub command: Vec<String>,
    pub quick: bool,
    pub host: Host,
    pub devices: Vec<DeviceInfo>,
    pub rows: Vec<Row>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured and checked.
    Ok,
    /// Measured, but its result did not match the CPU path: the figures are not to be trusted.
    Failed,
    /// Could not run (device lost, out of memory, too large ...): see `error`.
    Error,
}

/// One case on one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Index into `Results::devices`.
    pub device: usize,
    /// Stable name of the case, e.g. `train/default`, `matmul/1024x1024x1024/naive`.
    pub case: String,
    /// `train` or `matmul`.
    pub kind: String,
    /// The exact configuration: the job (train) or the product and kernel (matmul).
    pub config: serde_json::Value,
    pub status: Status,
    #[serde(default)]
    pub error: Option<String>,
    /// Untimed runs before the samples.
    pub warmup: usize,
    /// Seconds of each timed sample.
    pub samples_s: Vec<f64>,
    /// Epochs (train) or products (matmul) per sample.
    pub per_sample: usize,
    /// Floating-point operations and bytes moved per sample (bytes: matmul only, the least any
    /// kernel must move, for GB/s).
    pub flops_per_sample: f64,
    #[serde(default)]
    pub bytes_per_sample: Option<f64>,
    /// The result against the CPU path (none for the CPU path itself).
    #[serde(default)]
    pub parity: Option<Parity>,
    /// GPU training only: queue submissions and readbacks per sample, host time recording
    /// commands per epoch.
    #[serde(default)]
    pub host_overhead: Option<HostOverhead>,
    /// GPU time per kernel from timestamp queries (train rows, where the adapter has them), over
    /// `steps_timed` steps.
    #[serde(default)]
    pub kernels: Vec<KernelTime>,
    #[serde(default)]
    pub steps_timed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HostOverhead {
    pub submits_per_sample: f64,
    pub readbacks_per_sample: f64,
    pub encode_s_per_epoch: f64,
}

impl Row {
    pub fn median_s(&self) -> f64 {
        crate::gpu::tune::median(&self.samples_s)
    }

    /// (max - min) / median of the samples.
    pub fn spread(&self) -> f64 {
        let min = self.samples_s.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.samples_s.iter().copied().fold(0.0, f64::max);
        (max - min) / self.median_s()
    }

    pub fn gflops(&self) -> f64 {
        self.flops_per_sample / self.median_s() / 1e9
    }

    pub fn gbps(&self) -> Option<f64> {
        self.bytes_per_sample.map(|b| b / self.median_s() / 1e9)
    }

    /// Epochs per second (train rows).
    pub fn epochs_per_s(&self) -> Option<f64> {
        (self.kind == "train").then(|| self.per_sample as f64 / self.median_s())
    }

    /// The figure the tables compare: epochs/s for training, GFLOP/s for a product.
    pub fn headline(&self) -> Option<(f64, &'static str)> {
        if self.status == Status::Error || self.samples_s.is_empty() {
            return None;
        }
        Some(match self.epochs_per_s() {
            Some(e) => (e, "epochs/s"),
            None => (self.gflops(), "GFLOP/s"),
        })
    }
}

impl Results {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Write atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = self.to_json();
        crate::io::atomic_write(path, |w| {
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }

    /// Read a results file, refusing (and naming the file) one that cannot be read, that is not
    /// a bench results file, or that a newer version wrote.
    pub fn load(path: &Path) -> Result<Self> {
        let bad = |msg: String| Error::BadFile {
            path: path.to_path_buf(),
            msg,
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
        Self::parse(path, &text)
    }

    /// [`Results::load`] of a file's text (`path` names it in errors).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        let bad = |msg: String| Error::BadFile {
            path: path.to_path_buf(),
            msg,
        };
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            bad(format!(
                "not a gpu-train bench results file (not JSON: {e})"
            ))
        })?;
        let format = value.get("format").and_then(|f| f.as_str());
        if format != Some(FORMAT) {
            return Err(bad(format!(
                "not a gpu-train bench results file (its \"format\" is {}, expected {FORMAT:?})",
                format.map_or("missing".to_string(), |f| format!("{f:?}"))
            )));
        }
        let version = value.get("schema_version").and_then(|v| v.as_u64());
        match version {
            Some(v) if v > SCHEMA_VERSION as u64 => {
                return Err(bad(format!(
                    "written by a newer gpu-train (results schema {v}; this build reads up to \
                     {SCHEMA_VERSION}): compare it with that version or newer"
                )))
            }
            Some(_) => {}
            None => return Err(bad("no \"schema_version\": not a results file".into())),
        }
        serde_json::from_value(value).map_err(|e| bad(format!("malformed results file: {e}")))
    }
}

/// One column of a comparison: a device of one file.
struct Column<'a> {
    file: usize,
    device: usize,
    results: &'a Results,
}

/// The side-by-side table of `gpu-train bench compare`: one row per case, one column per device
/// of each file, each figure with its ratio to the first column.
pub fn compare_table(files: &[(PathBuf, Results)]) -> String {
    let columns: Vec<Column> = (files.iter().enumerate())
        .flat_map(|(f, (_, r))| {
            (0..r.devices.len()).map(move |d| Column {
                file: f,
                device: d,
                results: r,
            })
        })
        .collect();
    let mut out = String::new();
    for (f, (path, r)) in files.iter().enumerate() {
        out += &format!(
            "[{}] {}: gpu-train {}{}, {}{}\n",
            f + 1,
            path.display(),
            r.tool_version,
            r.git_commit
                .as_ref()
                .map_or_else(String::new, |c| format!(" ({c})")),
            r.host.cpu,
            if r.quick { ", --quick" } else { "" }
        );
    }
    let mut cases: Vec<(&str, &str)> = Vec::new();
    for (_, r) in files {
        for row in &r.rows {
            if !cases.iter().any(|(c, _)| *c == row.case) {
                cases.push((&row.case, &row.kind));
            }
        }
    }
    // Short column heads (the name cut, the backend and layout kept), the full ones listed first.
    let heads: Vec<String> = (columns.iter())
        .map(|c| {
            let d = &c.results.devices[c.device];
            let name = crate::text::truncate(&d.name, 16);
            match d.layout {
                Some(l) => format!("[{}] {name} ({}, {l})", c.file + 1, d.backend),
                None => format!("[{}] {name} ({})", c.file + 1, d.backend),
            }
        })
        .collect();
    for (c, h) in columns.iter().zip(&heads) {
        let d = &c.results.devices[c.device];
        out += &format!(
            "  {h}: {}, {}, driver {} {}\n",
            d.name, d.device_type, d.driver, d.driver_info
        );
    }
    let w0 = cases.iter().map(|(c, _)| c.len()).max().unwrap_or(4).max(4) + 2;
    let wc = heads
        .iter()
        .map(|h| h.chars().count())
        .max()
        .unwrap_or(10)
        .max(18)
        + 2;
    out += &format!("{:<w0$}{:<10}", "case", "unit");
    for h in &heads {
        out += &format!("{h:>wc$}");
    }
    out += "\n";
    for (case, kind) in cases {
        let unit = if kind == "train" {
            "epochs/s"
        } else {
            "GFLOP/s"
        };
        out += &format!("{case:<w0$}{unit:<10}");
        fn find<'r>(c: &Column<'r>, case: &str) -> Option<&'r Row> {
            (c.results.rows.iter()).find(|r| r.device == c.device && r.case == case)
        }
        let base = columns
            .first()
            .and_then(|c| find(c, case))
            .and_then(|r| r.headline())
            .map(|(v, _)| v);
        for c in &columns {
            let cell = match find(c, case) {
                None => "-".to_string(),
                Some(r) => match (r.status, r.headline()) {
                    (Status::Error, _) | (_, None) => "error".to_string(),
                    (status, Some((v, _))) => {
                        let ratio = base.map_or_else(String::new, |b| format!(" ({:.2}x)", v / b));
                        let mark = if status == Status::Failed {
                            " FAILED"
                        } else {
                            ""
                        };
                        format!("{}{ratio}{mark}", fmt_value(v))
                    }
                },
            };
            out += &format!("{cell:>wc$}");
        }
        out += "\n";
    }
    out
}

/// Three significant digits.
fn fmt_value(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else if v >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// A bar chart of the comparison: per case, each column's figure relative to the first column's
/// (log scale), so that cases of different units share one axis. SVG, or PNG for a `.png` path.
pub fn compare_plot(path: &Path, files: &[(PathBuf, Results)]) -> Result<()> {
    let mut labels = Vec::new();
    let mut cols: Vec<(usize, usize)> = Vec::new();
    for (f, (_, r)) in files.iter().enumerate() {
        for (d, dev) in r.devices.iter().enumerate() {
            labels.push(format!("[{}] {}", f + 1, dev.label()));
            cols.push((f, d));
        }
    }
    let mut cases: Vec<String> = Vec::new();
    for (_, r) in files {
        for row in &r.rows {
            if !cases.contains(&row.case) {
                cases.push(row.case.clone());
            }
        }
    }
    // ratios[case][column]
    let ratios: Vec<Vec<Option<f64>>> = (cases.iter())
        .map(|case| {
            let value = |&(f, d): &(usize, usize)| {
                (files[f].1.rows.iter())
                    .find(|r| r.device == d && &r.case == case)
                    .and_then(|r| r.headline())
                    .map(|(v, _)| v)
            };
            let base = cols.first().and_then(value);
            cols.iter()
                .map(|c| match (value(c), base) {
                    (Some(v), Some(b)) if b > 0.0 && v > 0.0 => Some(v / b),
                    _ => None,
                })
                .collect()
        })
        .collect();
    let height = 140 + 28 * cases.len() as u32 * cols.len().max(1) as u32;
    let size = (1000, height.min(4000));
    crate::io::history::save_plot(
        path,
        size,
        |root| draw_bars(root, &cases, &labels, &ratios),
        |root| draw_bars(root, &cases, &labels, &ratios),
    )
}

fn draw_bars<DB: plotters::prelude::DrawingBackend>(
    root: plotters::prelude::DrawingArea<DB, plotters::coord::Shift>,
    cases: &[String],
    labels: &[String],
    ratios: &[Vec<Option<f64>>],
) -> std::result::Result<(), String> {
    use plotters::prelude::*;
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let all = ratios.iter().flatten().flatten().copied();
    let (lo, hi) = all.fold((1.0f64, 1.0f64), |(l, h), v| (l.min(v), h.max(v)));
    let per = labels.len().max(1);
    let n = (cases.len() * per) as f64;
    // Case i's bars fill [n - (i+1)·per, n - i·per]; its name labels the middle of that band.
    let center = |i: usize| n - (i as f64 + 0.5) * per as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption("speed relative to the first column", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(260)
        .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), 0.0..n)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("ratio (log scale)")
        .draw()
        .map_err(e)?;
    // The case names, right-aligned beside their bars.
    use plotters::style::text_anchor::{HPos, Pos, VPos};
    let style = ("sans-serif", 13)
        .into_text_style(&root)
        .pos(Pos::new(HPos::Right, VPos::Center));
    for (i, case) in cases.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(lo / 1.5, center(i)));
        root.draw(&Text::new(case.clone(), (x - 8, y), style.clone()))
            .map_err(e)?;
    }
    for (c, label) in labels.iter().enumerate() {
        let color = Palette99::pick(c).to_rgba();
        let bars = (ratios.iter().enumerate()).filter_map(|(i, row)| {
            row[c].map(|r| {
                let top = n - (i * per + c) as f64;
                Rectangle::new([(lo / 1.5, top - 0.9), (r, top - 0.1)], color.filled())
            })
        });
        chart
            .draw_series(bars)
            .map_err(e)?
            .label(label.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}
