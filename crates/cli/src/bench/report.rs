//! The goal lines every benchmark prints, which `scripts/bench` gathers into one table.
//!
//! A line is `report<TAB>benchmark<TAB>figure<TAB>limit<TAB>ratio<TAB>goal`, the ratio being
//! figure / limit (so ≥ 1 meets an "at least" goal, ≤ 1 an "at most" one).

/// A benchmark's figure against its goal, measured in the same run.
#[derive(Debug, Clone, PartialEq)]
pub struct Goal {
    pub benchmark: String,
    pub figure: f64,
    pub limit: f64,
    pub unit: &'static str,
    /// Whether the goal is a floor (throughput) rather than a ceiling (latency, time).
    pub at_least: bool,
}

impl Goal {
    /// The figure must reach `limit` (a throughput).
    pub fn at_least(
        benchmark: impl Into<String>,
        figure: f64,
        limit: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            benchmark: benchmark.into(),
            figure,
            limit,
            unit,
            at_least: true,
        }
    }

    /// The figure must stay under `limit` (a latency or a duration).
    pub fn at_most(
        benchmark: impl Into<String>,
        figure: f64,
        limit: f64,
        unit: &'static str,
    ) -> Self {
        Self {
            at_least: false,
            ..Self::at_least(benchmark, figure, limit, unit)
        }
    }

    /// figure / limit.
    pub fn ratio(&self) -> f64 {
        if self.limit == 0.0 {
            return f64::NAN;
        }
        self.figure / self.limit
    }

    pub fn met(&self) -> bool {
        if self.at_least {
            self.figure >= self.limit
        } else {
            self.figure < self.limit
        }
    }

    /// The machine-readable line (see the module documentation).
    pub fn line(&self) -> String {
        format!(
            "report\t{}\t{}\t{}{}\t{:.2}\t{}",
            self.benchmark,
            amount(self.figure, self.unit),
            if self.at_least { "≥ " } else { "< " },
            amount(self.limit, self.unit),
            self.ratio(),
            if self.met() { "met" } else { "NOT met" }
        )
    }

    pub fn print(&self) {
        println!("{}", self.line());
    }
}

/// `12.3k checks/s`, `0.84 ms`: three significant figures at most, thousands as `k`.
fn amount(value: f64, unit: &str) -> String {
    let number = if value.abs() >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value.abs() >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    };
    format!("{number} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_ratio_and_verdict() {
        let fast = Goal::at_least("verify", 9_000.0, 8_000.0, "checks/s");
        assert_eq!(
            fast.line(),
            "report\tverify\t9000 checks/s\t≥ 8000 checks/s\t1.12\tmet"
        );
        let slow = Goal::at_most("latency", 1.5, 1.0, "ms");
        assert!(!slow.met());
        assert_eq!(
            slow.line(),
            "report\tlatency\t1.50 ms\t< 1.00 ms\t1.50\tNOT met"
        );
        assert_eq!(amount(123_456.0, "events/s"), "123.5k events/s");
        assert_eq!(amount(2_500_000.0, "rows"), "2.50M rows");
    }
}
