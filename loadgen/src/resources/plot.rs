//! `nodes.png`: per-node CPU (percent of one core, from the change of `cpu_s` between two
//! readings of the same pid) above per-node RSS (MiB), over the sampling time axis, with the
//! measured phase marked by dashed lines. Same font and palette as the other plots.

use std::path::Path;

use plotters::prelude::*;

use super::{NodeRow, ResourceSummary};
use crate::LoadgenError;
use crate::plot_style::{FAMILY, PALETTE, err, register_font};

const SIZE: (u32, u32) = (1280, 900);

/// (t, percent) points of one node: consecutive readings of one pid (a restart starts anew).
pub fn cpu_points(samples: &[NodeRow], node: u32) -> Vec<(f64, f64)> {
    let mine: Vec<&NodeRow> = samples.iter().filter(|r| r.node == node).collect();
    mine.windows(2)
        .filter(|w| w[0].pid == w[1].pid && w[1].t_s - w[0].t_s > 0.2)
        .map(|w| {
            let dt = w[1].t_s - w[0].t_s;
            (w[1].t_s, ((w[1].cpu_s - w[0].cpu_s) / dt * 100.0).max(0.0))
        })
        .collect()
}

/// Writes the plot.
pub fn nodes(path: &Path, s: &ResourceSummary, title: &str) -> Result<(), LoadgenError> {
    register_font();
    let nodes: Vec<u32> = {
        let mut n: Vec<u32> = s.samples.iter().map(|r| r.node).collect();
        n.sort_unstable();
        n.dedup();
        n
    };
    let x_end = s
        .samples
        .iter()
        .map(|r| r.t_s)
        .fold(s.window.1, f64::max)
        .max(1.0);
    let cpu: Vec<Vec<(f64, f64)>> = nodes.iter().map(|n| cpu_points(&s.samples, *n)).collect();
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let cpu_max = cpu.iter().flatten().map(|p| p.1).fold(10.0, f64::max) * 1.15;
    let rss_max = s
        .samples
        .iter()
        .map(|r| mib(r.rss_bytes))
        .fold(1.0, f64::max)
        * 1.15;

    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(path, e))?;
    let root = root
        .titled(&format!("{title}: node resources"), (FAMILY, 26))
        .map_err(|e| err(path, e))?;
    let (top, bottom) = root.split_vertically(SIZE.1 / 2 - 20);
    let panels = [
        (top, "CPU (% of one core)", cpu_max),
        (bottom, "resident memory (MiB)", rss_max),
    ];
    for (p, (area, y_desc, y_max)) in panels.into_iter().enumerate() {
        let mut chart = ChartBuilder::on(&area)
            .margin(16)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0f64..x_end, 0f64..y_max)
            .map_err(|e| err(path, e))?;
        chart
            .configure_mesh()
            .x_desc("time since the nodes started (s); dashed: the measured phase")
            .y_desc(y_desc)
            .label_style((FAMILY, 15))
            .axis_desc_style((FAMILY, 17))
            .draw()
            .map_err(|e| err(path, e))?;
        for x in [s.window.0, s.window.1] {
            chart
                .draw_series(DashedLineSeries::new(
                    vec![(x, 0.0), (x, y_max)],
                    6,
                    4,
                    BLACK.mix(0.5).stroke_width(1),
                ))
                .map_err(|e| err(path, e))?;
        }
        for (i, node) in nodes.iter().enumerate() {
            let color = PALETTE[i % 5];
            let pts: Vec<(f64, f64)> = if p == 0 {
                cpu[i].clone()
            } else {
                s.samples
                    .iter()
                    .filter(|r| r.node == *node)
                    .map(|r| (r.t_s, mib(r.rss_bytes)))
                    .collect()
            };
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(|e| err(path, e))?
                .label(format!("node {node}"))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(3))
                });
        }
        chart
            .configure_series_labels()
            .label_font((FAMILY, 15))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.5))
            .position(SeriesLabelPosition::LowerRight)
            .draw()
            .map_err(|e| err(path, e))?;
    }
    root.present().map_err(|e| err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_comes_from_one_pid_at_a_time() {
        let r = |t_s, pid, cpu_s| NodeRow {
            t_s,
            node: 0,
            pid,
            cpu_s,
            rss_bytes: 1,
        };
        let pts = cpu_points(
            &[
                r(1.0, 5, 1.0),
                r(2.0, 5, 1.5),
                r(3.0, 9, 0.1),
                r(4.0, 9, 0.3),
            ],
            0,
        );
        assert_eq!(pts.len(), 2);
        assert!((pts[0].1 - 50.0).abs() < 1e-9);
        assert!((pts[1].1 - 20.0).abs() < 1e-9);
    }
}
