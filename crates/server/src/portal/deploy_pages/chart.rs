//! Inline SVG line charts of a deployment's traffic: 5xx error rate and p95
//! latency per second, canary against stable, drawn on the server.

use crate::api::environments::SeriesPoint;
use maud::{Markup, html};

const WIDTH: f64 = 560.0;
const HEIGHT: f64 = 180.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 24.0;
const CANARY: &str = "#d4610c";
const STABLE: &str = "#1f6feb";

/// One series ready to draw: (unix second, value).
type Line = Vec<(u64, f64)>;

/// Both charts with a legend, or a note when no request went through yet.
pub fn charts(canary: &[SeriesPoint], stable: &[SeriesPoint]) -> Markup {
    if canary.iter().chain(stable).all(|p| p.requests == 0) {
        return html! { p.muted { "No traffic through the edge proxy for these releases yet." } };
    }
    let span = time_span(canary, stable);
    let errors = |s: &[SeriesPoint]| -> Line {
        s.iter()
            .filter(|p| p.requests > 0)
            .map(|p| (p.unix_s, 100.0 * p.errors_5xx as f64 / p.requests as f64))
            .collect()
    };
    let latency = |s: &[SeriesPoint]| -> Line {
        s.iter()
            .filter_map(|p| p.p95_ms.map(|v| (p.unix_s, v)))
            .collect()
    };
    let totals = |s: &[SeriesPoint]| {
        let requests: u64 = s.iter().map(|p| p.requests).sum();
        let errors: u64 = s.iter().map(|p| p.errors_5xx).sum();
        format!("{requests} requests, {errors} 5xx")
    };
    html! {
        p {
            span.legend-canary { "━ canary (new release)" } " " span.muted { (totals(canary)) }
            " · "
            span.legend-stable { "━ stable" } " " span.muted { (totals(stable)) }
        }
        div.charts {
            figure {
                (chart(&errors(canary), &errors(stable), span, "%"))
                figcaption { "5xx error rate per second (%)" }
            }
            figure {
                (chart(&latency(canary), &latency(stable), span, "ms"))
                figcaption { "p95 latency per second (ms)" }
            }
        }
    }
}

/// First and last second with data in either series.
fn time_span(a: &[SeriesPoint], b: &[SeriesPoint]) -> (u64, u64) {
    let secs = a.iter().chain(b).map(|p| p.unix_s);
    let start = secs.clone().min().unwrap_or(0);
    let end = secs.max().unwrap_or(0).max(start + 1);
    (start, end)
}

/// Four significant figures at most, for axis labels.
fn label(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// One chart: both lines on shared axes; y from 0 to a little above the
/// highest value (at least 1), x over `span`.
fn chart(canary: &Line, stable: &Line, span: (u64, u64), unit: &str) -> Markup {
    let top = canary
        .iter()
        .chain(stable)
        .map(|(_, v)| *v)
        .fold(1.0, f64::max)
        * 1.1;
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |t: u64| LEFT + plot_w * (t - span.0) as f64 / (span.1 - span.0) as f64;
    let y = |v: f64| TOP + plot_h * (1.0 - (v / top).clamp(0.0, 1.0));
    let points = |line: &Line| -> String {
        line.iter()
            .map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let grid = [0.0, 0.5, 1.0];
    html! {
        svg xmlns="http://www.w3.org/2000/svg" width=(WIDTH) height=(HEIGHT)
            viewBox={ "0 0 " (WIDTH) " " (HEIGHT) } role="img"
            aria-label={ "canary and stable per second, in " (unit) } {
            @for g in grid {
                line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(y(top * g)) y2=(y(top * g)) stroke="#e3e7eb" {}
                text x=(LEFT - 6.0) y=(y(top * g) + 4.0) text-anchor="end" font-size="11" fill="#5b6672" {
                    (label(top * g)) (unit)
                }
            }
            text x=(LEFT) y=(HEIGHT - 6.0) font-size="11" fill="#5b6672" { "0s" }
            text x=(WIDTH - RIGHT) y=(HEIGHT - 6.0) text-anchor="end" font-size="11" fill="#5b6672" {
                (span.1 - span.0) "s"
            }
            @for (line, colour, name) in [(stable, STABLE, "stable"), (canary, CANARY, "canary")] {
                @if !line.is_empty() {
                    polyline class={ "series-" (name) } points=(points(line)) fill="none" stroke=(colour) stroke-width="2" {}
                    @for (t, v) in line.iter() {
                        circle cx=(format!("{:.1}", x(*t))) cy=(format!("{:.1}", y(*v))) r="2" fill=(colour) {
                            title { (name) ": " (label(*v)) (unit) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(unix_s: u64, requests: u64, errors_5xx: u64, p95_ms: Option<f64>) -> SeriesPoint {
        SeriesPoint {
            unix_s,
            requests,
            errors_5xx,
            p95_ms,
        }
    }

    #[test]
    fn both_releases_are_drawn_on_shared_axes() {
        let canary = [point(100, 10, 5, Some(80.0)), point(101, 10, 0, Some(40.0))];
        let stable = [point(100, 90, 0, Some(20.0)), point(102, 90, 0, None)];
        let svg = charts(&canary, &stable).into_string();
        assert_eq!(svg.matches("<svg").count(), 2, "{svg}");
        assert_eq!(svg.matches("class=\"series-canary\"").count(), 2, "{svg}");
        assert!(svg.contains("20 requests, 5 5xx"), "{svg}");
        // 50% errors at the first canary second: the error chart tops at 55%.
        assert!(svg.contains("55.0%"), "{svg}");
        assert!(svg.contains("canary: 50.0%"), "{svg}");
        assert!(svg.contains(">2s<"), "{svg}");
    }

    #[test]
    fn no_traffic_says_so() {
        let html = charts(&[point(5, 0, 0, None)], &[]).into_string();
        assert!(html.contains("No traffic"), "{html}");
    }
}
