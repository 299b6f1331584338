//! Latency samples and the figures `whistle bench` reports: rates, percentiles
//! (nearest rank) and the ratio of a whistle figure to its raw baseline.

use serde::Serialize;
use std::time::Duration;

/// Latencies of one measured run, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    micros: Vec<u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Samples {
        Samples {
            micros: Vec::with_capacity(n),
        }
    }

    pub fn push(&mut self, d: Duration) {
        self.micros
            .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn extend(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// p50, p99, p99.9 and max in milliseconds (`None` without samples).
    pub fn percentiles(&mut self) -> Option<Percentiles> {
        if self.micros.is_empty() {
            return None;
        }
        self.micros.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest sample with at least q of all at or below it.
            let rank = (q * self.micros.len() as f64).ceil().max(1.0) as usize;
            self.micros[rank.min(self.micros.len()) - 1] as f64 / 1000.0
        };
        Some(Percentiles {
            p50_ms: at(0.50),
            p95_ms: at(0.95),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            max_ms: at(1.0),
        })
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// `postgres` or `sqlite` (or `nats`, `grpc` for baselines without a store).
    pub backend: String,
    /// What was measured, e.g. `ReportCase closed loop, 32 clients`.
    pub name: String,
    /// The headline number (a rate or a latency) in `unit`.
    pub value: f64,
    pub unit: String,
    /// Latency percentiles where the work has a latency per operation.
    pub latency: Option<Percentiles>,
    /// The raw baseline this figure is compared with, and `value / baseline`.
    pub baseline: Option<Baseline>,
    /// Anything a reader needs to interpret the number (sizes, batch means).
    pub note: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
    pub ratio: f64,
}

impl Figure {
    pub fn new(backend: &str, name: impl Into<String>, value: f64, unit: &str) -> Figure {
        Figure {
            backend: backend.to_owned(),
            name: name.into(),
            value,
            unit: unit.to_owned(),
            latency: None,
            baseline: None,
            note: String::new(),
        }
    }

    pub fn latency(mut self, p: Option<Percentiles>) -> Figure {
        self.latency = p;
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }

    /// Compares with a baseline figure of the same unit.
    pub fn against(mut self, base: &Figure) -> Figure {
        let ratio = if base.value > 0.0 {
            self.value / base.value
        } else {
            0.0
        };
        self.baseline = Some(Baseline {
            name: format!("{} ({})", base.name, base.backend),
            value: base.value,
            ratio,
        });
        self
    }
}

/// The human table: one line per figure.
pub fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<9} {:<52} {:>12} {:<8} {:>8} {:>8} {:>8} {:>9}  {}\n",
        "backend", "measure", "value", "unit", "p50 ms", "p99 ms", "p99.9 ms", "× base", "baseline"
    ));
    for f in figures {
        let (p50, p99, p999) =
            f.latency
                .map_or(("-".to_owned(), "-".to_owned(), "-".to_owned()), |p| {
                    (
                        format!("{:.2}", p.p50_ms),
                        format!("{:.2}", p.p99_ms),
                        format!("{:.2}", p.p999_ms),
                    )
                });
        let (ratio, base) = f
            .baseline
            .as_ref()
            .map_or(("-".to_owned(), String::new()), |b| {
                (
                    format!("{:.3}", b.ratio),
                    format!("{} = {:.0}", b.name, b.value),
                )
            });
        out.push_str(&format!(
            "{:<9} {:<52} {:>12.1} {:<8} {:>8} {:>8} {:>8} {:>9}  {}\n",
            f.backend, f.name, f.value, f.unit, p50, p99, p999, ratio, base
        ));
        if !f.note.is_empty() {
            out.push_str(&format!("{:<9} {:<52} {}\n", "", "", f.note));
        }
    }
    out
}

/// Peak resident set size of this process (VmHWM), in MiB, where /proc tells.
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut s = Samples::default();
        for ms in 1..=1000u64 {
            s.push(Duration::from_millis(ms));
        }
        let p = s.percentiles().expect("samples");
        assert_eq!(p.p50_ms, 500.0);
        assert_eq!(p.p99_ms, 990.0);
        assert_eq!(p.p999_ms, 999.0);
        assert_eq!(p.max_ms, 1000.0);
        assert!(Samples::default().percentiles().is_none());
    }

    #[test]
    fn ratio_to_baseline() {
        let base = Figure::new("postgres", "plain insert", 200.0, "rows/s");
        let f = Figure::new("postgres", "whistle", 50.0, "rows/s").against(&base);
        assert_eq!(f.baseline.expect("baseline").ratio, 0.25);
    }
}
