//! The report's charts, drawn with `plotters` into SVG strings that the page inlines (no
//! network, no script): trends over dates with markers where the configuration changed, the
//! distribution of recommendations per item, and the long tail against the catalog's popularity.

use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

/// The result of drawing: the SVG, or what went wrong (shown in its place).
pub(super) type Svg = std::result::Result<String, String>;

/// Colours of the lines, in order: a model line and its baseline share a hue.
pub(super) const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(158, 196, 230),
    RGBColor(214, 39, 40),
    RGBColor(245, 160, 158),
    RGBColor(44, 160, 44),
    RGBColor(152, 223, 138),
];

/// One line of a trend chart: a label and a value per date (`None`: not measured that day).
pub(super) struct Line {
    /// Shown in the legend.
    pub label: String,
    /// One per date of the chart.
    pub values: Vec<Option<f64>>,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("could not draw the chart: {e}")
}

/// A chart of `lines` over `dates` (oldest first); a vertical marker before each date in
/// `changed` (the configuration hash differs from the previous date's); gaps where a line has
/// no value.
pub(super) fn trend(title: &str, dates: &[String], lines: &[Line], changed: &[usize]) -> Svg {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = lines
            .iter()
            .flat_map(|l| l.values.iter().flatten())
            .filter(|v| v.is_finite())
            .fold(0.0f64, |a, b| a.max(*b))
            .max(1e-9)
            * 1.1;
        let n = dates.len().max(2) as f64 - 1.0;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(-0.3f64..n + 0.3, 0f64..max)
            .map_err(err)?;
        let label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                dates
                    .get(i as usize)
                    .map_or(String::new(), |d| d[5..].to_string())
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(dates.len().clamp(2, 8))
            .x_label_formatter(&label)
            .y_label_formatter(&|y| format!("{y:.3}"))
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        for &i in changed {
            let x = i as f64 - 0.5;
            let style = RGBColor(255, 127, 14).stroke_width(2);
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, 0.0), (x, max)],
                    style,
                )))
                .map_err(err)?
                .label("configuration changed")
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        for (j, line) in lines.iter().enumerate() {
            draw_line(&mut chart, line, PALETTE[j % PALETTE.len()])?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// The series labels of `chart`, in a framed box at `position`.
fn legend<'a, 'b: 'a>(
    chart: &mut Chart<'a, 'b>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// One line, split where it has no value (or one that is not finite: a hand-edited metrics
/// file), with a dot per measured date.
fn draw_line(chart: &mut Chart<'_, '_>, line: &Line, colour: RGBColor) -> Result<(), String> {
    let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
    for (i, v) in line.values.iter().enumerate() {
        match v {
            Some(v) if v.is_finite() => runs.last_mut().expect("one run").push((i as f64, *v)),
            _ => runs.push(Vec::new()),
        }
    }
    let style = colour.stroke_width(2);
    let mut first = true;
    for run in runs.into_iter().filter(|r| !r.is_empty()) {
        let dots: Vec<(f64, f64)> = run.clone();
        let drawn = chart
            .draw_series(LineSeries::new(run, style))
            .map_err(err)?;
        if std::mem::take(&mut first) {
            drawn
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        chart
            .draw_series(dots.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(err)?;
    }
    Ok(())
}

/// Bins of "users whose list has the item" per item: 0, 1, 2-3, 4-7, ... (powers of two).
pub(super) fn bins(recs_per_item: &[u64]) -> Vec<(String, u64)> {
    let bin = |n: u64| if n == 0 { 0 } else { 1 + n.ilog2() as usize };
    let top = recs_per_item.iter().map(|n| bin(*n)).max().unwrap_or(0);
    let mut counts = vec![0u64; top + 1];
    for n in recs_per_item {
        counts[bin(*n)] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(b, c)| {
            let label = match b {
                0 => "0".to_string(),
                1 => "1".to_string(),
                b => format!("{}-{}", 1u64 << (b - 1), (1u64 << b) - 1),
            };
            (label, c)
        })
        .collect()
}

/// A bar chart of how many catalog items are in how many users' lists.
pub(super) fn histogram(bins: &[(String, u64)]) -> Svg {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 280)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = bins.iter().map(|(_, c)| *c).max().unwrap_or(1).max(1);
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Catalog items by number of lists they are in",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(
                (0u32..bins.len() as u32).into_segmented(),
                0u64..max + max / 10 + 1,
            )
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_labels(bins.len() + 1)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bins
                    .get(*i as usize)
                    .map_or(String::new(), |(l, _)| l.clone()),
                _ => String::new(),
            })
            .x_desc("lists (users) the item is in")
            .y_desc("items")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(
                Histogram::vertical(&chart)
                    .style(PALETTE[0].filled())
                    .margin(4)
                    .data(bins.iter().enumerate().map(|(i, (_, c))| (i as u32, *c))),
            )
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Points (x, y) of a curve, in percent.
pub(super) type Curve = Vec<(f64, f64)>;

/// Cumulative shares over items sorted by popularity (most popular first): points
/// (share of items, share of events) and (share of items, share of recommendations), in percent.
pub(super) fn lorenz(items: &[(u64, u64)]) -> (Curve, Curve) {
    let mut sorted = items.to_vec();
    sorted.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.cmp(&a.1)));
    let total = |f: fn(&(u64, u64)) -> u64| sorted.iter().map(f).sum::<u64>().max(1) as f64;
    let (events, recs) = (total(|i| i.0), total(|i| i.1));
    let n = sorted.len().max(1) as f64;
    let (mut e, mut r) = (vec![(0.0, 0.0)], vec![(0.0, 0.0)]);
    let (mut se, mut sr) = (0u64, 0u64);
    for (i, (ev, rc)) in sorted.iter().enumerate() {
        se += ev;
        sr += rc;
        let x = 100.0 * (i + 1) as f64 / n;
        e.push((x, 100.0 * se as f64 / events));
        r.push((x, 100.0 * sr as f64 / recs));
    }
    (e, r)
}

/// The long tail: cumulative share of the window's events and of the recommendations over the
/// catalog's items, most popular first, with the line of equal shares.
pub(super) fn long_tail(items: &[(u64, u64)]) -> Svg {
    let (events, recs) = lorenz(items);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (720, 300)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Long tail: recommendations vs the catalog's popularity",
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(0f64..100f64, 0f64..100f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("catalog items, most popular first (%)")
            .y_desc("cumulative share (%)")
            .light_line_style(WHITE)
            .draw()
            .map_err(err)?;
        let grey = RGBColor(150, 150, 150);
        for (label, points, colour) in [
            (
                "every item equally often",
                vec![(0.0, 0.0), (100.0, 100.0)],
                grey,
            ),
            ("events in the window (popularity)", events, PALETTE[1]),
            ("recommendations", recs, PALETTE[0]),
        ] {
            let style = colour.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points, style))
                .map_err(err)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], style));
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_powers_of_two() {
        let got = bins(&[0, 0, 1, 2, 3, 4, 9]);
        let want: Vec<(String, u64)> = [("0", 2), ("1", 1), ("2-3", 2), ("4-7", 1), ("8-15", 1)]
            .iter()
            .map(|(l, c)| (l.to_string(), *c))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn lorenz_curves_sort_items_by_popularity() {
        // Popular item a (6 events) is never recommended; b (2 events) gets all 4 lists.
        let (events, recs) = lorenz(&[(2, 4), (6, 0), (0, 0), (2, 0)]);
        assert_eq!(events[1], (25.0, 60.0));
        assert_eq!(recs[1], (25.0, 0.0));
        assert_eq!(recs[2], (50.0, 100.0));
        assert_eq!(events.last(), Some(&(100.0, 100.0)));
    }

    #[test]
    fn charts_are_svg_with_their_lines_and_markers() {
        let dates: Vec<String> = ["2024-01-04", "2024-01-05", "2024-01-06"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        let lines = [Line {
            label: "model recall@5".into(),
            values: vec![None, Some(0.3), Some(0.5)],
        }];
        let svg = trend("recall", &dates, &lines, &[2]).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("viewBox"), "{svg}");
        assert!(svg.contains("model recall@5") && svg.contains("configuration changed"));
        assert!(svg.contains("01-06"), "date labels: {svg}");
        // A value that is not finite (a hand-edited metrics file) is a gap, not an endless axis.
        for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
            let lines = [Line {
                label: "model ndcg@5".into(),
                values: vec![Some(0.2), Some(bad), Some(0.4)],
            }];
            let svg = trend("ndcg", &dates, &lines, &[]).unwrap();
            assert!(svg.contains("model ndcg@5"), "{bad}: {svg}");
            let lower = svg.to_lowercase();
            assert!(
                !lower.contains("nan") && !lower.contains("inf"),
                "no coordinate is {bad}: {svg}"
            );
            assert!(svg.contains("<polyline") || svg.contains("<path"), "{svg}");
        }
        let svg = histogram(&bins(&[0, 1, 5])).unwrap();
        assert!(svg.contains("4-7") && svg.contains("<rect"), "{svg}");
        let svg = long_tail(&[(3, 1), (1, 2)]).unwrap();
        assert!(
            svg.contains("recommendations") && svg.contains("<polyline"),
            "{svg}"
        );
    }
}
