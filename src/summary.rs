//! The end-of-run summary: rows per outcome, time, effective rate, and what
//! throttling cost. Printed on stderr; the report holds the rows.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::report::Outcome;
use crate::resume::RETRYABLE;
use crate::stop::Stopped;

/// What a run did, in numbers.
#[derive(Clone, Debug)]
pub struct Summary {
    pub report: PathBuf,
    pub outcomes: BTreeMap<Outcome, u64>,
    pub elapsed: Duration,
    /// Upgrade calls sent, retries included.
    pub calls: u64,
    /// 429 answers received.
    pub throttled: u64,
    /// Time the whole run was held back by throttle windows.
    pub held: Duration,
    /// The pace the run held at the end, in calls a second.
    pub pace: f64,
    /// Outcomes of rows an earlier run settled (on a resume).
    pub earlier: BTreeMap<Outcome, u64>,
    /// Why the run stopped before the end of the input, if it did.
    pub stopped: Option<Stopped>,
}

impl Summary {
    pub fn new(report: PathBuf) -> Summary {
        Summary {
            report,
            outcomes: BTreeMap::new(),
            elapsed: Duration::ZERO,
            calls: 0,
            throttled: 0,
            held: Duration::ZERO,
            pace: 0.0,
            earlier: BTreeMap::new(),
            stopped: None,
        }
    }

    pub fn count(&mut self, outcome: Outcome) {
        *self.outcomes.entry(outcome).or_default() += 1;
    }

    pub fn rows(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn of(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Rows that did not end upgraded.
    pub fn not_upgraded(&self) -> u64 {
        self.rows() - self.of(Outcome::Upgraded)
    }

    /// Rows not upgraded that `--retry-failed` would send again.
    pub fn retryable(&self) -> u64 {
        let earlier = |o: &Outcome| self.earlier.get(o).copied().unwrap_or(0);
        RETRYABLE.iter().map(|o| self.of(*o) + earlier(o)).sum()
    }

    /// Whether every row of the input was read and upgraded, by this run or
    /// an earlier one it resumed.
    pub fn all_upgraded(&self) -> bool {
        let earlier_not_upgraded = self
            .earlier
            .iter()
            .filter(|(outcome, _)| **outcome != Outcome::Upgraded)
            .map(|(_, n)| n)
            .sum::<u64>();
        self.stopped.is_none() && self.not_upgraded() == 0 && earlier_not_upgraded == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64();
        let rate = |n: u64| match secs > 0.0 {
            true => n as f64 / secs,
            false => 0.0,
        };
        writeln!(f, "fleetup: {} rows in {:.1}s", self.rows(), secs)?;
        for outcome in Outcome::ALL {
            let n = self.of(outcome);
            if n > 0 {
                writeln!(f, "  {:<14} {n}", outcome.as_str())?;
            }
        }
        writeln!(
            f,
            "  rate           {:.1} rows/s, {:.1} calls/s ({} calls)",
            rate(self.rows()),
            rate(self.calls),
            self.calls
        )?;
        writeln!(
            f,
            "  throttling     {} x 429, run held back {:.1}s, pace at the end {:.1}/s",
            self.throttled,
            self.held.as_secs_f64(),
            self.pace
        )?;
        if !self.earlier.is_empty() {
            let earlier: Vec<String> = self
                .earlier
                .iter()
                .map(|(outcome, n)| format!("{outcome} {n}"))
                .collect();
            writeln!(f, "  settled before {}", earlier.join(", "))?;
        }
        if let Some(stopped) = &self.stopped {
            writeln!(f, "  stopped        {stopped}")?;
        }
        write!(f, "  report         {}", self.report.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_lists_each_outcome_seen_and_the_throttling_cost() {
        let mut summary = Summary::new("reports/x.csv".into());
        summary.count(Outcome::Upgraded);
        summary.count(Outcome::Upgraded);
        summary.count(Outcome::NotFound);
        summary.elapsed = Duration::from_secs(2);
        summary.calls = 4;
        summary.throttled = 1;
        summary.held = Duration::from_millis(1500);
        let text = summary.to_string();
        assert!(text.contains("3 rows in 2.0s"), "{text}");
        assert!(text.contains("upgraded       2"), "{text}");
        assert!(text.contains("not_found      1"), "{text}");
        assert!(!text.contains("forbidden"), "{text}");
        assert!(text.contains("1.5 rows/s, 2.0 calls/s"), "{text}");
        assert!(text.contains("1 x 429, run held back 1.5s"), "{text}");
        assert!(!text.contains("stopped"), "{text}");
        assert_eq!(summary.not_upgraded(), 1);
        assert!(!summary.all_upgraded());
    }
}
