//! `vdp-lab bench plot`: the bench's pictures from its parts, as SVG
//! (plotters' SVG backend; no font files, text is left to the viewer).
//!
//! - `latency.svg`: VM-up event -> `update_vm_result` latency CDF of each
//!   phase that timed ports (`latency`, `burst`, `latency_scale`), log x.
//! - `resync.svg`: ports reported SUCCESS vs time during the bulk resync.
//!
//! Owns the picture formats. Calls the file system.

use super::*;
use plotters::prelude::*;

/// Phases drawn in latency.svg: part name, legend text.
const LATENCY_PHASES: [(&str, &str); 3] = [
    ("latency", "one at a time"),
    ("latency_scale", "one at a time, 1000 VSIs present"),
    ("burst", "burst, all POSTed at once"),
];

const COLORS: [RGBColor; 3] = [
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn plot_err(what: &str) -> impl Fn(String) -> BenchError + '_ {
    move |e| BenchError::Io {
        what: format!("drawing {what}"),
        err: std::io::Error::other(e),
    }
}

/// The empirical CDF of `ms` as (x ms, fraction <= x) steps.
pub fn cdf(ms: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = ms.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len() as f64;
    let mut out = Vec::with_capacity(v.len() * 2);
    for (i, x) in v.iter().enumerate() {
        out.push((*x, i as f64 / n));
        out.push((*x, (i + 1) as f64 / n));
    }
    out
}

fn samples(part: &Value) -> Vec<f64> {
    part["samples_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default()
}

/// latency.svg from the parts in `dir`; Ok(false) when no part has samples.
pub fn latency_svg(dir: &Path, out: &Path) -> Res<bool> {
    let phases: Vec<(String, Vec<f64>)> = LATENCY_PHASES
        .iter()
        .filter_map(|(name, what)| {
            let part = read_part(dir, name);
            let s = samples(&part);
            (!s.is_empty()).then(|| {
                let mut sorted = s.clone();
                sorted.sort_by(|a, b| a.total_cmp(b));
                let p50 = percentile(&sorted, 50.0).unwrap_or(0.0);
                let p99 = percentile(&sorted, 99.0).unwrap_or(0.0);
                (
                    format!(
                        "{name}: {} ports, {what} (p50 {p50:.1} ms, p99 {p99:.1} ms)",
                        s.len()
                    ),
                    s,
                )
            })
        })
        .collect();
    if phases.is_empty() {
        return Ok(false);
    }
    let all = phases.iter().flat_map(|p| p.1.iter().copied());
    let lo = all.clone().fold(f64::INFINITY, f64::min).max(0.1) * 0.8;
    let hi = all.fold(0.0f64, f64::max).max(lo * 10.0) * 1.25;
    let e = plot_err("latency.svg");
    let root = SVGBackend::new(out, (960, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "VM-up event -> update_vm_result: latency CDF per bench phase",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(56)
        .build_cartesian_2d((lo..hi).log_scale(), 0.0..1.0)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("latency, ms (log scale)")
        .y_desc("fraction of ports reported")
        .x_label_formatter(&|v| {
            if *v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v}")
            }
        })
        .draw()
        .map_err(|x| e(x.to_string()))?;
    for (i, (label, s)) in phases.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(cdf(s), color.stroke_width(2)))
            .map_err(|x| e(x.to_string()))?
            .label(label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(true)
}

/// resync.svg from the resync part; Ok(false) when it has no series.
pub fn resync_svg(dir: &Path, out: &Path) -> Res<bool> {
    let part = read_part(dir, "resync");
    let series: Vec<(f64, f64)> = part["series"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    if series.is_empty() {
        return Ok(false);
    }
    let expect = part["expect"].as_f64().unwrap_or(0.0);
    let t_max = series.last().map_or(1.0, |p| p.0).max(1.0) * 1.05;
    let y_max = series.iter().map(|p| p.1).fold(expect, f64::max).max(1.0) * 1.05;
    let e = plot_err("resync.svg");
    let root = SVGBackend::new(out, (960, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(x.to_string()))?;
    let title = format!(
        "Bulk resync after SIGTERM + start: {} ports reported SUCCESS in {} s",
        part["success_ports"], part["all_s"]
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..t_max, 0.0..y_max)
        .map_err(|x| e(x.to_string()))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the agent start command")
        .y_desc("distinct ports reported SUCCESS")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|x| e(x.to_string()))?;
    let mut steps = vec![(0.0, 0.0)];
    for w in series.windows(2) {
        steps.push(w[0]);
        steps.push((w[1].0, w[0].1));
    }
    steps.extend(series.last().copied());
    chart
        .draw_series(LineSeries::new(steps, COLORS[0].stroke_width(2)))
        .map_err(|x| e(x.to_string()))?
        .label("ports reported (controller's record, polled every 100 ms)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], COLORS[0].stroke_width(2)));
    if expect > 0.0 {
        chart
            .draw_series(LineSeries::new(
                vec![(0.0, expect), (t_max, expect)],
                BLACK.mix(0.4).stroke_width(1),
            ))
            .map_err(|x| e(x.to_string()))?
            .label(format!("all {expect} ports"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(x.to_string()))?;
    root.present().map_err(|x| e(x.to_string()))?;
    Ok(true)
}

/// `vdp-lab bench plot --dir PARTS --out-dir DIR`.
pub(super) fn cmd_plot(o: &Opts) -> Res<()> {
    let dir = PathBuf::from(o.need("dir")?);
    let out = PathBuf::from(o.need("out-dir")?);
    for (name, f) in [
        ("latency.svg", latency_svg as fn(&Path, &Path) -> Res<bool>),
        ("resync.svg", resync_svg),
    ] {
        let path = out.join(name);
        if f(&dir, &path)? {
            println!("written {}", path.display());
        } else {
            println!("{name}: no samples in {}; not written", dir.display());
        }
    }
    Ok(())
}
