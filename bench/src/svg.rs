//! A tiny SVG plotter: grouped bar charts and CDFs, each with a title and
//! a footer naming the machine the numbers came from.

use std::fmt::Write as _;

const W: f64 = 720.0;
const H: f64 = 400.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 90.0;
const COLOURS: [&str; 6] = [
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#b07aa1",
];

/// A named series of values (one per group, or samples for a CDF).
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// Escapes text for SVG.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A "nice" axis maximum at or above `max` (1, 1.5, 2, 2.5, 3, 4, 5, 6 or
/// 8 times a power of 10).
pub fn nice_max(max: f64) -> f64 {
    if !max.is_finite() || max <= 0.0 {
        return 1.0;
    }
    let pow = 10f64.powf(max.log10().floor());
    [1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|v| *v >= max)
        .unwrap_or(10.0 * pow)
}

fn fmt_tick(v: f64) -> String {
    if v != 0.0 && (v.abs() < 0.01 || v.abs() >= 1e6) {
        format!("{v:.0e}")
    } else if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn frame(out: &mut String, title: &str, footer: &str, y_label: &str, y_max: f64) {
    let _ = write!(
        out,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">
<rect width="{W}" height="{H}" fill="white"/>
<text x="{}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{}</text>
<text x="{}" y="{}" text-anchor="middle" font-size="10" fill="#555">{}</text>
<text x="16" y="{}" text-anchor="middle" transform="rotate(-90 16 {})">{}</text>
"##,
        W / 2.0,
        esc(title),
        W / 2.0,
        H - 8.0,
        esc(footer),
        (TOP + H - BOTTOM) / 2.0,
        (TOP + H - BOTTOM) / 2.0,
        esc(y_label)
    );
    for i in 0..=5 {
        let v = y_max * f64::from(i) / 5.0;
        let y = H - BOTTOM - (H - BOTTOM - TOP) * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
            W - RIGHT,
            LEFT - 6.0,
            y + 4.0,
            fmt_tick(v)
        );
    }
}

fn legend(out: &mut String, names: &[&str]) {
    let mut x = LEFT;
    for (i, name) in names.iter().enumerate() {
        let _ = writeln!(
            out,
            r#"<rect x="{x}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}">{}</text>"#,
            H - 42.0,
            COLOURS[i % COLOURS.len()],
            x + 14.0,
            H - 33.0,
            esc(name)
        );
        x += 24.0 + 7.0 * name.len() as f64;
    }
}

/// Grouped bars: one group per label, one bar per series in each group.
pub fn bar_chart(
    title: &str,
    footer: &str,
    y_label: &str,
    groups: &[String],
    series: &[Series],
) -> String {
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let y_max = nice_max(max);
    let mut out = String::new();
    frame(&mut out, title, footer, y_label, y_max);
    let plot_w = W - LEFT - RIGHT;
    let group_w = plot_w / groups.len().max(1) as f64;
    let bar_w = group_w * 0.8 / series.len().max(1) as f64;
    let plot_h = H - BOTTOM - TOP;
    for (g, label) in groups.iter().enumerate() {
        let gx = LEFT + group_w * g as f64;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            gx + group_w / 2.0,
            H - BOTTOM + 16.0,
            esc(label)
        );
        for (s, ser) in series.iter().enumerate() {
            let v = ser.values.get(g).copied().unwrap_or(0.0);
            let v = if v.is_finite() { v } else { 0.0 };
            let h = plot_h * (v / y_max);
            let x = gx + group_w * 0.1 + bar_w * s as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                H - BOTTOM - h,
                bar_w * 0.92,
                COLOURS[s % COLOURS.len()],
                esc(&ser.name),
                fmt_tick(v)
            );
        }
    }
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

/// Empirical CDFs of each series' samples; the x axis ends at `x_max`.
pub fn cdf_chart(
    title: &str,
    footer: &str,
    x_label: &str,
    x_max: f64,
    series: &[Series],
) -> String {
    let mut out = String::new();
    frame(&mut out, title, footer, "fraction of requests", 1.0);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - BOTTOM - TOP;
    let x_max = nice_max(x_max);
    for i in 0..=5 {
        let v = x_max * f64::from(i) / 5.0;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w * f64::from(i) / 5.0,
            H - BOTTOM + 16.0,
            fmt_tick(v)
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        H - BOTTOM + 32.0,
        esc(x_label)
    );
    for (s, ser) in series.iter().enumerate() {
        let mut v: Vec<f64> = ser
            .values
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        v.sort_by(f64::total_cmp);
        let n = v.len().max(1) as f64;
        let mut points = format!("{LEFT:.1},{:.1}", H - BOTTOM);
        for (i, x) in v.iter().enumerate() {
            let px = LEFT + plot_w * (x / x_max).min(1.0);
            let py = H - BOTTOM - plot_h * ((i + 1) as f64 / n);
            let _ = write!(points, " {px:.1},{py:.1}");
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{points}"/>"#,
            COLOURS[s % COLOURS.len()]
        );
    }
    let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
    legend(&mut out, &names);
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_maxima() {
        assert_eq!(nice_max(0.7), 0.8);
        assert_eq!(nice_max(1.3), 1.5);
        assert_eq!(nice_max(5.54), 6.0);
        assert_eq!(nice_max(420.0), 500.0);
        assert_eq!(nice_max(0.0), 1.0);
    }

    #[test]
    fn bars_and_cdfs_are_well_formed_and_name_the_machine() {
        let s = [
            Series {
                name: "a<b".into(),
                values: vec![1.0, 2.0],
            },
            Series {
                name: "c".into(),
                values: vec![3.0, f64::NAN],
            },
        ];
        let groups = ["x".to_string(), "y".to_string()];
        let bars = bar_chart("T", "machine: 2 cores", "ms", &groups, &s);
        assert!(bars.starts_with("<svg") && bars.trim_end().ends_with("</svg>"));
        assert!(bars.contains("machine: 2 cores") && bars.contains("a&lt;b"));
        assert_eq!(
            bars.matches("<rect x=").count(),
            4 + 2,
            "4 bars, 2 legend keys"
        );
        let cdf = cdf_chart("T", "machine: 2 cores", "s", 3.0, &s);
        assert_eq!(cdf.matches("<polyline").count(), 2);
        assert!(!cdf.contains("NaN"));
    }
}
