//! Latency summaries and the units the report prints them in.

use std::time::Duration;

/// Nearest-rank percentile of an ascending slice: the smallest sample with
/// at least `p` percent of the samples at or below it. With 20 samples, p99
/// is the largest one. `None` for no samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// What the report shows of a set of timings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub n: usize,
    pub min: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub mean: Duration,
}

impl Summary {
    /// Summarises samples in any order; `None` when there are none.
    pub fn of(samples: &[Duration]) -> Option<Summary> {
        let mut s = samples.to_vec();
        s.sort_unstable();
        let total: Duration = s.iter().sum();
        Some(Summary {
            n: s.len(),
            min: *s.first()?,
            p50: percentile(&s, 50.0)?,
            p99: percentile(&s, 99.0)?,
            max: *s.last()?,
            mean: total / u32::try_from(s.len()).ok()?,
        })
    }
}

/// A duration in the unit that keeps it readable: µs below 1 ms, ms below 1 s.
pub fn fmt_duration(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// Bytes as decimal megabytes (the unit the targets are stated in) with the
/// binary MiB alongside, so nobody has to guess which one was meant.
pub fn fmt_bytes(b: u64) -> String {
    format!(
        "{:.2} MB ({:.2} MiB, {} bytes)",
        b as f64 / 1e6,
        b as f64 / (1024.0 * 1024.0),
        b
    )
}

/// A per-second rate from a count and the time it took.
pub fn per_second(count: usize, elapsed: Duration) -> f64 {
    if elapsed.is_zero() {
        return 0.0;
    }
    count as f64 / elapsed.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        // GIVEN 1..=100 ms
        let s = ms(&(1..=100).collect::<Vec<_>>());
        // THEN each percentile is the sample of that rank
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&s, 100.0), Some(Duration::from_millis(100)));
        assert_eq!(percentile(&s, 0.0), Some(Duration::from_millis(1)));
        assert_eq!(percentile(&s, 100.5), None);
    }

    #[test]
    fn p99_of_twenty_runs_is_the_worst_run() {
        let s = ms(&(1..=20).collect::<Vec<_>>());
        assert_eq!(percentile(&s, 99.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&s, 50.0), Some(Duration::from_millis(10)));
    }

    #[test]
    fn summary_sorts_its_input() {
        // GIVEN samples out of order
        let s = Summary::of(&ms(&[30, 10, 20, 40])).unwrap();
        // THEN min/p50/max come from the sorted order
        assert_eq!(s.n, 4);
        assert_eq!(s.min, Duration::from_millis(10));
        assert_eq!(s.p50, Duration::from_millis(20));
        assert_eq!(s.p99, Duration::from_millis(40));
        assert_eq!(s.max, Duration::from_millis(40));
        assert_eq!(s.mean, Duration::from_millis(25));
    }

    #[test]
    fn no_samples_no_summary() {
        assert_eq!(Summary::of(&[]), None);
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn units() {
        assert_eq!(fmt_duration(Duration::from_micros(85)), "85.0 µs");
        assert_eq!(fmt_duration(Duration::from_micros(4_210)), "4.21 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2_500)), "2.50 s");
        assert_eq!(fmt_bytes(6_000_000), "6.00 MB (5.72 MiB, 6000000 bytes)");
        assert_eq!(per_second(2_000, Duration::from_millis(500)), 4_000.0);
    }
}
