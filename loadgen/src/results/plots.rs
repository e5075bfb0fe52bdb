//! PNG plots, rendered with plotters and the DejaVu Sans font shipped in `loadgen/assets/`
//! (registered at runtime, so text renders on a machine with no font packages):
//!
//! - `throughput.png`: successful ops/s per second, per operation type and in total, with each
//!   fault's interval shaded (kills red, pauses amber) and labelled;
//! - `latency.png`: p50 and p99 latency per second (log scale, milliseconds), faults shaded;
//! - `percentiles.png`: latency by percentile over the whole run (HdrHistogram style: the x axis
//!   is log-scaled in "nines", the y axis log-scaled in milliseconds), per type, plus the
//!   overall service time dashed, so the coordinated-omission gap is visible.

use std::path::Path;

use hdrhistogram::Histogram;
use plotters::prelude::*;

use super::RunResults;
use super::phases::{Phase, intervals};
use super::timeseries;
use crate::LoadgenError;
use crate::scenario::FaultAction;

pub(crate) use crate::plot_style::{FAMILY, PALETTE, SIZE, err, register_font};

/// Writes the three plots into `dir`.
pub fn write_all(dir: &Path, r: &RunResults, _phases: &[Phase]) -> Result<(), LoadgenError> {
    register_font();
    throughput(&dir.join("throughput.png"), r)?;
    latency(&dir.join("latency.png"), r)?;
    percentiles(&dir.join("percentiles.png"), r)?;
    Ok(())
}

/// Fault intervals to shade: (start, end, action, node).
fn shades(r: &RunResults, x_end: f64) -> Vec<(f64, f64, FaultAction, u32)> {
    intervals(&r.faults)
        .into_iter()
        .map(|(a, n, s, e)| (s, e.unwrap_or(x_end), a, n))
        .collect()
}

fn shade_color(a: FaultAction) -> RGBAColor {
    match a {
        FaultAction::Kill | FaultAction::Restart => RED.mix(0.15),
        FaultAction::CrashAll => RGBColor(150, 0, 0).mix(0.3),
        FaultAction::Pause | FaultAction::Resume => RGBColor(255, 170, 0).mix(0.22),
        FaultAction::Bump | FaultAction::Strobe | FaultAction::Drift | FaultAction::Reset => {
            RGBColor(60, 120, 255).mix(0.18)
        }
        FaultAction::Bitflip
        | FaultAction::Truncate
        | FaultAction::CorruptSnapshot
        | FaultAction::DeleteSnapshot
        | FaultAction::DeleteHints => RGBColor(120, 60, 160).mix(0.2),
        FaultAction::DiskFull | FaultAction::DiskFree => RGBColor(0, 150, 110).mix(0.2),
        FaultAction::Join | FaultAction::Leave | FaultAction::Wipe | FaultAction::Replace => {
            RGBColor(170, 90, 130).mix(0.2)
        }
        FaultAction::Isolate
        | FaultAction::Halves
        | FaultAction::Bridge
        | FaultAction::OneWay
        | FaultAction::Ring
        | FaultAction::Heal => RGBColor(90, 90, 90).mix(0.2),
        FaultAction::Loss | FaultAction::Slow | FaultAction::Restore => {
            RGBColor(200, 120, 40).mix(0.2)
        }
    }
}

fn x_extent(r: &RunResults) -> f64 {
    // Whole measured seconds; the partial tail is not plotted.
    (r.measured_seconds as f64).max(1.0)
}

fn throughput(path: &Path, r: &RunResults) -> Result<(), LoadgenError> {
    let rows = timeseries::rows(&r.measurements);
    let x_end = x_extent(r);
    let y_max = rows
        .iter()
        .filter(|row| row.covered_s >= 0.999)
        .map(|row| row.ops_per_sec)
        .fold(1.0, f64::max)
        * 1.15;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: throughput", r.scenario.name), (FAMILY, 26))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_end, 0f64..y_max)
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("time since measuring began (s)")
        .y_desc("successful operations per second")
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(path, e))?;
    draw_shades(&mut chart, r, x_end, y_max, 0.0, path)?;
    let mut ops: Vec<&str> = r.measurements.kinds.iter().map(|k| k.name()).collect();
    ops.push("all");
    for (i, op) in ops.iter().enumerate() {
        if *op != "all" && ops.len() == 2 {
            continue; // a single type: its line is the total
        }
        let color = if *op == "all" {
            PALETTE[5]
        } else {
            PALETTE[i % 5]
        };
        let pts: Vec<(f64, f64)> = rows
            .iter()
            // The partial last second's rate is noise: leave it out of the plot.
            .filter(|row| row.op == *op && row.covered_s >= 0.999)
            .map(|row| (row.second as f64 + 0.5, row.ops_per_sec))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(if *op == "all" { "total" } else { op })
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight, path)?;
    root.present().map_err(|e| err(path, e))
}

fn draw_shades<'a, DB: DrawingBackend + 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>,
    r: &RunResults,
    x_end: f64,
    y_top: f64,
    y_bottom: f64,
    path: &Path,
) -> Result<(), LoadgenError> {
    for (s, e, a, n) in shades(r, x_end) {
        let color = shade_color(a);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(s, y_bottom), (e, y_top)],
                color.filled(),
            )))
            .map_err(|er| err(path, er))?
            .label(if a.is_partition() || a.is_link() {
                let kind = if a.is_link() { "link" } else { "partition" };
                format!("{kind} {} node {n} ({s:.0}-{e:.0} s)", a.name())
            } else {
                format!("{} node {n} ({s:.0}-{e:.0} s)", a.name())
            })
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 22, y + 6)], color.filled()));
    }
    Ok(())
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    path: &Path,
) -> Result<(), LoadgenError> {
    chart
        .configure_series_labels()
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .position(position)
        .draw()
        .map_err(|e| err(path, e))
}

fn latency(path: &Path, r: &RunResults) -> Result<(), LoadgenError> {
    let rows = timeseries::rows(&r.measurements);
    let x_end = x_extent(r);
    let ms = |us: u64| us as f64 / 1000.0;
    let all: Vec<_> = rows
        .iter()
        .filter(|row| row.op == "all" && row.ok > 0)
        .collect();
    let (y_min, y_max) = log_range(
        all.iter().map(|row| ms(row.p50_us)),
        all.iter().map(|row| ms(row.max_us)),
    );
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "{}: latency per second (from intended start)",
                r.scenario.name
            ),
            (FAMILY, 26),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_end, (y_min..y_max).log_scale())
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("time since measuring began (s)")
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| format!("{v}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(path, e))?;
    draw_shades(&mut chart, r, x_end, y_max, y_min, path)?;
    type Pick = fn(&timeseries::SeriesRow) -> u64;
    let series: [(&str, RGBColor, Pick); 3] = [
        ("p50", PALETTE[0], |row| row.p50_us),
        ("p99", PALETTE[1], |row| row.p99_us),
        ("max", PALETTE[3], |row| row.max_us),
    ];
    for (name, color, f) in series {
        let pts: Vec<(f64, f64)> = all
            .iter()
            .map(|row| (row.second as f64 + 0.5, ms(f(row)).max(y_min)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| err(path, e))?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight, path)?;
    root.present().map_err(|e| err(path, e))
}

/// (nines, ms) points of a histogram: x = log10(1 / (1 - q)).
fn percentile_curve(h: &Histogram<u64>, x_max: f64) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..=(x_max * 100.0) as u32)
        .map(|i| {
            let x = i as f64 / 100.0;
            let q = 1.0 - 10f64.powf(-x);
            (x, h.value_at_quantile(q) as f64 / 1000.0)
        })
        .collect()
}

fn percentiles(path: &Path, r: &RunResults) -> Result<(), LoadgenError> {
    let m = &r.measurements;
    let overall = m.overall();
    // Show as many nines as the sample supports (at least 2, at most 5).
    let x_max = ((overall.ok.max(1) as f64).log10()).clamp(2.0, 5.0).floor();
    // (label, colour, dashed, points)
    type Curve = (String, RGBColor, bool, Vec<(f64, f64)>);
    let mut curves: Vec<Curve> = Vec::new();
    if m.kinds.len() > 1 {
        for (i, k) in m.kinds.iter().enumerate() {
            curves.push((
                k.name().into(),
                PALETTE[i % 5],
                false,
                percentile_curve(&m.totals[k.index()].latency, x_max),
            ));
        }
    }
    curves.push((
        "all: latency".into(),
        PALETTE[5],
        false,
        percentile_curve(&overall.latency, x_max),
    ));
    curves.push((
        "all: service time".into(),
        RGBColor(120, 120, 120),
        true,
        percentile_curve(&overall.service, x_max),
    ));
    let points = || curves.iter().flat_map(|c| c.3.iter().map(|p| p.1));
    let (y_min, y_max) = log_range(points(), points());
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{}: latency by percentile", r.scenario.name),
            (FAMILY, 26),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max + 0.12, (y_min..y_max).log_scale())
        .map_err(|e| err(path, e))?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log scale)")
        .x_labels((x_max as usize) * 2 + 1)
        .x_label_formatter(&|x| {
            let q = 100.0 * (1.0 - 10f64.powf(-x));
            if (x - x.round()).abs() > 1e-6 {
                String::new()
            } else if q < 99.0 {
                format!("{q:.0}%")
            } else {
                let digits = (x.round() as usize).saturating_sub(2);
                format!("{q:.digits$}%")
            }
        })
        .y_label_formatter(&|v| format!("{v}"))
        .label_style((FAMILY, 15))
        .axis_desc_style((FAMILY, 17))
        .draw()
        .map_err(|e| err(path, e))?;
    for (name, color, dashed, pts) in curves {
        let pts: Vec<(f64, f64)> = pts.into_iter().map(|(x, y)| (x, y.max(y_min))).collect();
        let style = color.stroke_width(if dashed { 1 } else { 2 });
        if dashed {
            chart
                .draw_series(DashedLineSeries::new(pts, 8, 5, style))
                .map_err(|e| err(path, e))?
                .label(name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(pts, style))
                .map_err(|e| err(path, e))?
                .label(name)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 15))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.5))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| err(path, e))?;
    root.present().map_err(|e| err(path, e))
}

/// A log-scale axis range (ms) that shows every value: from half the smallest positive `low`
/// (at most a tenth of the top, at least 1 µs) to twice the largest `high` (at least 1 ms).
fn log_range(low: impl Iterator<Item = f64>, high: impl Iterator<Item = f64>) -> (f64, f64) {
    let y_max = high.fold(1.0, f64::max) * 2.0;
    let y_min = low
        .filter(|v| *v > 0.0)
        .fold(f64::MAX, f64::min)
        .min(y_max / 10.0)
        .max(0.001)
        / 2.0;
    (y_min, y_max)
}
