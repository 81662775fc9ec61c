//! PNG charts for reports and benchmarks (plotters, with a bundled DejaVu Sans so no system font is
//! needed).

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

static FONT: Once = Once::new();

fn ensure_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // Registration only fails on an unparsable font, which the bundled file is not.
        let _ = register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// One panel: groups on the x axis (e.g. batch sizes), one bar per series in each group.
pub struct BarPanel {
    pub title: String,
    pub groups: Vec<String>,
    /// `(series name, one value per group)`.
    pub series: Vec<(String, Vec<f64>)>,
    pub y_label: String,
}

/// Draws panels side by side into one PNG.
pub fn grouped_bars(path: &Path, panels: &[BarPanel]) -> Result<()> {
    ensure_font();
    let width = 520 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    let palette = LINE_PALETTE;
    for (area, panel) in areas.iter().zip(panels) {
        let n_groups = panel.groups.len();
        let n_series = panel.series.len().max(1);
        let y_max = panel
            .series
            .iter()
            .flat_map(|(_, v)| v.iter().copied())
            .fold(0.0f64, f64::max)
            * 1.45; // headroom for the legend above the bars
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..n_groups as f64, 0.0..y_max.max(1e-9))
            .map_err(|e| anyhow!("{e}"))?;
        let groups = panel.groups.clone();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n_groups * 2 + 1)
            .x_label_formatter(&|x| {
                let i = x.floor() as usize;
                if (x - i as f64 - 0.5).abs() < 1e-6 && i < groups.len() {
                    groups[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(&panel.y_label)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        let bar = 0.8 / n_series as f64;
        for (s, (name, values)) in panel.series.iter().enumerate() {
            let color = palette[s % palette.len()];
            chart
                .draw_series(values.iter().enumerate().map(|(g, &v)| {
                    let x0 = g as f64 + 0.1 + s as f64 * bar;
                    Rectangle::new([(x0, 0.0), (x0 + bar * 0.95, v)], color.filled())
                }))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// One panel of line series: `(series name, points)`.
pub struct LinePanel {
    pub title: String,
    pub series: Vec<(String, Vec<(f64, f64)>)>,
    pub x_label: String,
    pub y_label: String,
}

/// Ten distinct colours (matplotlib's tab10), so a panel with every world family tells them apart.
const LINE_PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Series longer than this are drawn without point markers (they would hide the line).
const MARKED_POINTS: usize = 60;

/// Draws line panels side by side into one PNG (points of short series are marked, so a series
/// of one point shows).
pub fn line_charts(path: &Path, panels: &[LinePanel]) -> Result<()> {
    ensure_font();
    let width = 560 * panels.len().max(1) as u32;
    let root = BitMapBackend::new(path, (width, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let areas = root.split_evenly((1, panels.len().max(1)));
    for (area, panel) in areas.iter().zip(panels) {
        let points = panel.series.iter().flat_map(|(_, p)| p.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in points {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        let pad = ((y1 - y0) * 0.1).max(1e-3);
        let mut chart = ChartBuilder::on(area)
            .caption(&panel.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1.max(x0 + 1e-9), (y0 - pad)..(y1 + pad))
            .map_err(|e| anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .x_desc(&panel.x_label)
            .y_desc(&panel.y_label)
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
        for (s, (name, values)) in panel.series.iter().enumerate() {
            let color = LINE_PALETTE[s % LINE_PALETTE.len()];
            // plotters joins thick segments with unbounded miters: a long, jagged series drawn
            // 2 px wide sprays spikes past the plot area, so it gets 1 px.
            let width = if values.len() <= MARKED_POINTS { 2 } else { 1 };
            chart
                .draw_series(LineSeries::new(
                    values.iter().copied(),
                    color.stroke_width(width),
                ))
                .map_err(|e| anyhow!("{e}"))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 14, y)], color.stroke_width(2))
                });
            if values.len() <= MARKED_POINTS {
                chart
                    .draw_series(values.iter().map(|&p| Circle::new(p, 3, color.filled())))
                    .map_err(|e| anyhow!("{e}"))?;
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// One bar of a Gantt chart: `row` busy with `kind` from `start` to `end` seconds.
pub struct GanttBar {
    pub row: usize,
    pub kind: String,
    pub start: f64,
    pub end: f64,
}

/// A Gantt chart: one row per name (top to bottom), bars coloured by kind, time on the x axis.
pub fn gantt(path: &Path, title: &str, rows: &[String], bars: &[GanttBar]) -> Result<()> {
    ensure_font();
    let height = (90 + 22 * rows.len().max(1)) as u32;
    let root = BitMapBackend::new(path, (1400, height.max(240))).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let t_max = bars.iter().map(|b| b.end).fold(1e-9, f64::max);
    let n = rows.len().max(1) as f64;
    // The legend sits in a right-hand margin so that it never hides a bar.
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .margin_right(130)
        .x_label_area_size(36)
        .y_label_area_size(140)
        .build_cartesian_2d(0.0..t_max, 0.0..n)
        .map_err(|e| anyhow!("{e}"))?;
    let labels = rows.to_vec();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len() * 2 + 1)
        .y_label_formatter(&|y| {
            let i = y.floor() as usize;
            if (y - i as f64 - 0.5).abs() < 1e-6 && i < labels.len() {
                labels[labels.len() - 1 - i].clone()
            } else {
                String::new()
            }
        })
        .x_desc("seconds since the run started")
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    let mut kinds: Vec<&str> = bars.iter().map(|b| b.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    for (k, kind) in kinds.iter().enumerate() {
        let color = LINE_PALETTE[k % LINE_PALETTE.len()];
        chart
            .draw_series(bars.iter().filter(|b| b.kind == *kind).map(|b| {
                let y = n - 1.0 - b.row as f64;
                Rectangle::new([(b.start, y + 0.15), (b.end, y + 0.85)], color.filled())
            }))
            .map_err(|e| anyhow!("{e}"))?;
        // The legend, drawn by hand in the right-hand margin so it never hides a bar.
        let (x, y) = (1400 - 120, 40 + 22 * k as i32);
        root.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], color.filled()))
            .map_err(|e| anyhow!("{e}"))?;
        root.draw(&Text::new(
            kind.to_string(),
            (x + 20, y),
            ("sans-serif", 14),
        ))
        .map_err(|e| anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
