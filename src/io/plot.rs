//! Loss curves drawn from one or several histories (SVG or PNG, log scale on the loss axis), and
//! the atomic rendering every plot of the tool goes through.

use super::history::History;
use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// Draw the loss curves of `runs` (label, history) into `path`: SVG, or PNG for a `.png` path;
/// epochs across, the loss on a log scale (non-finite and non-positive losses are left out).
/// Written atomically.
pub fn plot(path: &Path, title: &str, runs: &[(String, &History)]) -> Result<()> {
    save_plot(
        path,
        (900, 560),
        |root| draw(root, title, runs),
        |root| draw(root, title, runs),
    )
}

/// Render a plot of `size` into `path`, atomically: SVG by `svg`, or PNG by `png` for a `.png`
/// path (the same drawing, one function per plotters backend).
pub fn save_plot(
    path: &Path,
    size: (u32, u32),
    draw_svg: impl FnOnce(
        DrawingArea<SVGBackend, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
    draw_png: impl FnOnce(
        DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> std::result::Result<(), String>,
) -> Result<()> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let err = |e: String| Error::io(path, std::io::Error::other(e));
    register_font();
    if is_png {
        let mut pixels = vec![0u8; (size.0 * size.1 * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
            draw_png(root).map_err(err)?;
        }
        let image = image::RgbImage::from_raw(size.0, size.1, pixels)
            .ok_or_else(|| err("the plot's buffer has the wrong size".into()))?;
        let mut bytes = std::io::Cursor::new(Vec::new());
        image
            .write_to(&mut bytes, image::ImageFormat::Png)
            .map_err(|e| err(e.to_string()))?;
        return super::atomic_write(path, |w| w.write_all(bytes.get_ref()));
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw_svg(root).map_err(err)?;
    }
    super::atomic_write(path, |w| w.write_all(svg.as_bytes()))
}

/// Both backends lay out (and the bitmap one draws) text with a font registered at run time:
/// DejaVu Sans, embedded, so that plots need no system fonts.
fn register_font() {
    #[cfg(not(target_arch = "wasm32"))]
    static ONCE: std::sync::Once = std::sync::Once::new();
    #[cfg(not(target_arch = "wasm32"))]
    ONCE.call_once(|| {
        // Registering a valid embedded font cannot fail; if it did, text would be left out.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    runs: &[(String, &History)],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let points = |h: &History| -> Vec<(f64, f64)> {
        (h.loss.iter().enumerate())
            .filter(|(_, l)| l.is_finite() && **l > 0.0)
            .map(|(i, &l)| (h.epoch(i) as f64, l as f64))
            .collect()
    };
    let held = |h: &History| -> Vec<(f64, f64)> {
        (h.validation.iter())
            .filter(|v| v.loss.is_finite() && v.loss > 0.0)
            .map(|v| (v.epoch as f64, v.loss as f64))
            .collect()
    };
    let all: Vec<(f64, f64)> = (runs.iter())
        .flat_map(|(_, h)| points(h).into_iter().chain(held(h)))
        .collect();
    let epochs = runs
        .iter()
        .map(|(_, h)| h.epoch(h.loss.len()))
        .max()
        .unwrap_or(1)
        .max(2);
    let (lo, hi) = all.iter().fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if all.is_empty() {
        (0.1, 10.0)
    } else {
        (lo / 1.5, hi * 1.5)
    };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..(epochs - 1) as f64, (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss (log scale)")
        .y_label_formatter(&|v| format!("{v:.1e}"))
        .draw()
        .map_err(e)?;
    for (i, (label, h)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(points(h), color.stroke_width(2)))
            .map_err(e)?
            .label(label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        // The held-out loss, where scored: a thin line through circles.
        let held = held(h);
        if !held.is_empty() {
            chart
                .draw_series(LineSeries::new(held.clone(), color.stroke_width(1)))
                .map_err(e)?
                .label(format!("{label} (held out)"))
                .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.stroke_width(1)));
            chart
                .draw_series(
                    held.into_iter()
                        .map(|p| Circle::new(p, 3, color.stroke_width(1))),
                )
                .map_err(e)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(e)?;
    root.present().map_err(e)
}
