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

/// Ten colours far apart (matplotlib's tab10), then the 99 of plotters' palette; past ten
/// curves every other one is also dashed, so that neighbours in the legend stay apart.
fn colour(i: usize) -> RGBAColor {
    const TAB10: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match TAB10.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b).to_rgba(),
        None => Palette99::pick(i - TAB10.len()).to_rgba(),
    }
}

/// The loss axis's range: the data's, widened to whole decades where it spans a factor of 3 or
/// more, so that every decade it spans has its power of ten labelled (a run from 3e7 down to 2e6
/// shows 1e6, 1e7 and 1e8); a narrower one padded by half, its labels within the decade.
pub(crate) fn decades(lo: f64, hi: f64) -> (f64, f64) {
    if !(lo > 0.0 && hi >= lo && hi.is_finite()) {
        return (0.1, 10.0);
    }
    if hi < 3.0 * lo {
        return (lo / 1.5, hi * 1.5);
    }
    let (a, b) = (lo.log10().floor(), hi.log10().ceil());
    let b = if b <= a { a + 1.0 } else { b };
    (10f64.powf(a), 10f64.powf(b))
}

/// A loss axis label: `1e-3`, `2e5`, `1` (as short as the value allows).
fn loss_label(v: &f64) -> String {
    let s = format!("{v:.0e}");
    match format!("{v:.1e}").parse::<f64>() == s.parse::<f64>() {
        true => s.replace("e0", ""),
        false => format!("{v:.1e}"),
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    runs: &[(String, &History)],
) -> std::result::Result<(), String> {
    let e = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(e)?;
    let points = |h: &History| -> Vec<(i64, f64)> {
        (h.loss.iter().enumerate())
            .filter(|(_, l)| l.is_finite() && **l > 0.0)
            .map(|(i, &l)| (h.epoch(i) as i64, l as f64))
            .collect()
    };
    let held = |h: &History| -> Vec<(i64, f64)> {
        (h.validation.iter())
            .filter(|v| v.loss.is_finite() && v.loss > 0.0)
            .map(|v| (v.epoch as i64, v.loss as f64))
            .collect()
    };
    let all: Vec<(i64, f64)> = (runs.iter())
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
    let (lo, hi) = decades(lo, hi);
    // Many curves: the legend gets a column of its own beside the chart instead of covering it.
    let side = runs.len() > 6;
    let (chart_area, legend_area) = match side {
        true => {
            let (w, _) = root.dim_in_pixel();
            let (a, b) = root.split_horizontally(w * 7 / 10);
            (a, Some(b))
        }
        false => (root.clone(), None),
    };
    let last = (epochs - 1) as i64;
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0i64..last, (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("loss (log scale)")
        // Whole epochs: no more labels than there are epochs.
        .x_labels((last as usize + 1).min(10))
        .y_label_formatter(&loss_label)
        .draw()
        .map_err(e)?;
    let mut legend: Vec<(String, RGBAColor, bool)> = Vec::new();
    for (i, (label, h)) in runs.iter().enumerate() {
        let color = colour(i);
        let dashed = i >= 10 && i % 2 == 1;
        let style = color.stroke_width(2);
        let series = match dashed {
            true => chart
                .draw_series(DashedLineSeries::new(points(h), 6, 4, style))
                .map_err(e)?,
            false => chart
                .draw_series(LineSeries::new(points(h), style))
                .map_err(e)?,
        };
        if !side {
            series.label(label.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
        legend.push((label.clone(), color, dashed));
        // The held-out loss, where scored: a thin line through circles.
        let held = held(h);
        if !held.is_empty() {
            let series = chart
                .draw_series(LineSeries::new(held.clone(), color.stroke_width(1)))
                .map_err(e)?;
            if !side {
                series
                    .label(format!("{label} (held out)"))
                    .legend(move |(x, y)| Circle::new((x + 10, y), 3, color.stroke_width(1)));
            }
            chart
                .draw_series(
                    held.into_iter()
                        .map(|p| Circle::new(p, 3, color.stroke_width(1))),
                )
                .map_err(e)?;
        }
    }
    match legend_area {
        None => chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(e)?,
        Some(area) => {
            // One line per curve, as many as fit, the font shrunk to fit more.
            let (_, h) = area.dim_in_pixel();
            let top = 50i32;
            let step = ((h as i32 - top - 10) / legend.len().max(1) as i32).clamp(8, 18);
            let size = (step - 2).clamp(7, 14);
            let fits = ((h as i32 - top - 10) / step).max(1) as usize;
            for (j, (label, color, dashed)) in legend.iter().take(fits).enumerate() {
                let y = top + j as i32 * step;
                let segments: &[(i32, i32)] = match dashed {
                    true => &[(8, 15), (19, 26), (30, 32)],
                    false => &[(8, 32)],
                };
                for &(a, b) in segments {
                    area.draw(&PathElement::new(
                        vec![(a, y), (b, y)],
                        color.stroke_width(3),
                    ))
                    .map_err(e)?;
                }
                let text = Text::new(label.clone(), (38, y - size / 2), ("sans-serif", size));
                area.draw(&text).map_err(e)?;
            }
            if fits < legend.len() {
                let more = format!("... and {} more", legend.len() - fits);
                let y = top + fits as i32 * step;
                area.draw(&Text::new(more, (8, y - size / 2), ("sans-serif", size)))
                    .map_err(e)?;
            }
        }
    }
    root.present().map_err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_axis_spans_whole_decades() {
        assert_eq!(decades(2e6, 3e7), (1e6, 1e8));
        assert_eq!(decades(2e-3, 8e-3), (1e-3, 1e-2));
        let (lo, hi) = decades(3e7, 3.3e7);
        assert!(lo < 3e7 && hi > 3.3e7 && hi / lo < 4.0, "{lo} {hi}");
        assert_eq!(decades(f64::INFINITY, 0.0), (0.1, 10.0));
        assert_eq!(
            (loss_label(&1e7), loss_label(&2e-3), loss_label(&1.0)),
            ("1e7".into(), "2e-3".into(), "1".into())
        );
        assert_eq!(loss_label(&2.5e6), "2.5e6");
    }
}
