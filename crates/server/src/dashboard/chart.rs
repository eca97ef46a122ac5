//! The flow page's runs chart, drawn on the server as SVG: one bar per run (records written, failed on
//! top) and a line for its duration, oldest run left. Built from numbers only (no text from outside).

use ferry_engine::store::RunRow;
use std::fmt::Write;

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 200.0;
const PAD: f64 = 28.0;

/// `runs` newest first (as the store pages them).
pub fn runs_svg(runs: &[RunRow]) -> String {
    let runs: Vec<&RunRow> = runs.iter().rev().collect();
    let written = |r: &RunRow| (r.counts.written() + r.counts.resumed) as f64;
    let failed = |r: &RunRow| r.counts.failed as f64;
    let seconds = |r: &RunRow| super::seconds_between(&r.started_at, r.finished_at.as_deref()).unwrap_or(0.0).max(0.0);
    let max_records = runs.iter().map(|r| written(r) + failed(r)).fold(1.0, f64::max);
    let max_seconds = runs.iter().map(|r| seconds(r)).fold(0.001, f64::max);
    let plot_w = WIDTH - 2.0 * PAD;
    let plot_h = HEIGHT - 2.0 * PAD;
    let slot = plot_w / runs.len().max(1) as f64;
    let bar = (slot * 0.7).max(1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="runs" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{} runs: up to {} records and {:.2} s per run" xmlns="http://www.w3.org/2000/svg">"#,
        runs.len(),
        max_records,
        max_seconds
    );
    let _ = write!(svg, r#"<line class="axis" x1="{PAD}" y1="{}" x2="{}" y2="{}"/>"#, HEIGHT - PAD, WIDTH - PAD, HEIGHT - PAD);
    let _ = write!(svg, r#"<text x="2" y="{}" class="label">{}</text>"#, PAD - 8.0, max_records);
    let _ = write!(svg, r#"<text x="{}" y="{}" class="label" text-anchor="end">{:.2} s</text>"#, WIDTH - 2.0, PAD - 8.0, max_seconds);
    let mut line = String::new();
    for (i, r) in runs.iter().enumerate() {
        let x = PAD + i as f64 * slot + (slot - bar) / 2.0;
        let h_ok = written(r) / max_records * plot_h;
        let h_bad = failed(r) / max_records * plot_h;
        let base = HEIGHT - PAD;
        let _ = write!(
            svg,
            r#"<g><title>run {}: {} written, {} failed, {:.2} s</title><rect class="ok" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h_ok:.1}"/><rect class="bad" x="{x:.1}" y="{:.1}" width="{bar:.1}" height="{h_bad:.1}"/></g>"#,
            r.id,
            written(r),
            failed(r),
            seconds(r),
            base - h_ok,
            base - h_ok - h_bad
        );
        let cx = x + bar / 2.0;
        let cy = base - seconds(r) / max_seconds * plot_h;
        let _ = write!(line, "{}{cx:.1},{cy:.1}", if i == 0 { "" } else { " " });
    }
    let _ = write!(svg, r#"<polyline class="duration" points="{line}"/></svg>"#);
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::store::Counts;

    fn run(id: i64, created: u64, failed: u64, secs: u32) -> RunRow {
        RunRow {
            id,
            flow: "p".into(),
            mode: "incremental".into(),
            started_at: "2026-12-03T00:00:00Z".into(),
            finished_at: Some(format!("2026-12-03T00:00:{secs:02}Z")),
            status: "ok".into(),
            counts: Counts { created, failed, ..Default::default() },
            error: None,
            warnings: vec![],
        }
    }

    #[test]
    fn one_bar_pair_per_run_scaled_to_the_largest_and_a_duration_point_each() {
        let svg = runs_svg(&[run(2, 10, 10, 4), run(1, 5, 0, 2)]);
        assert_eq!(svg.matches("<rect class=\"ok\"").count(), 2);
        assert!(svg.contains("<title>run 1: 5 written, 0 failed, 2.00 s</title>"), "oldest first: {svg}");
        // The largest run (20 records) fills the plot: 144 px of written + failed.
        assert!(svg.contains(r#"height="72.0"/><rect class="bad""#), "{svg}");
        let points = svg.split("points=\"").nth(1).and_then(|p| p.split('"').next()).unwrap();
        assert_eq!(points.split(' ').count(), 2, "one duration point per run: {svg}");
        // The longer run (4 s) is at the top of the plot.
        assert!(points.ends_with(",28.0"), "{points}");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
