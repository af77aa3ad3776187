//! The end-of-run summary: rows per outcome, time, effective rate, and what
//! throttling cost. Printed on stderr; the report holds the rows.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::report::{Outcome, RowResult};
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
    /// Users found behind the newest version, per installed version.
    pub behind: BTreeMap<String, u64>,
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
            behind: BTreeMap::new(),
        }
    }

    /// Count one finished row.
    pub fn count(&mut self, row: &RowResult) {
        *self.outcomes.entry(row.outcome).or_default() += 1;
        let was_behind = matches!(row.outcome, Outcome::WouldUpgrade | Outcome::Upgraded);
        if let (true, Some(installed), Some(_)) =
            (was_behind, &row.installed_version, &row.latest_version)
        {
            *self.behind.entry(installed.clone()).or_default() += 1;
        }
    }

    pub fn rows(&self) -> u64 {
        self.outcomes.values().sum()
    }

    pub fn of(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    /// Rows that did not end as asked: neither upgraded nor found current
    /// (nor, in a dry run, audited).
    pub fn not_done(&self) -> u64 {
        let done: u64 = Outcome::ALL
            .iter()
            .filter(|o| o.is_success())
            .map(|o| self.of(*o))
            .sum();
        self.rows() - done
    }

    /// Rows not upgraded that `--retry-failed` would send again.
    pub fn retryable(&self) -> u64 {
        let earlier = |o: &Outcome| self.earlier.get(o).copied().unwrap_or(0);
        RETRYABLE.iter().map(|o| self.of(*o) + earlier(o)).sum()
    }

    /// Whether every row of the input was read and ended as asked (upgraded,
    /// already current, installed, or audited in a dry run), by this run or
    /// an earlier one it resumed.
    pub fn all_succeeded(&self) -> bool {
        let earlier_not_done = self
            .earlier
            .iter()
            .filter(|(outcome, _)| !outcome.is_success())
            .map(|(_, n)| n)
            .sum::<u64>();
        // An input without a single data row is a mistake, not a success.
        let any = self.rows() + self.earlier.values().sum::<u64>() > 0;
        any && self.stopped.is_none() && self.not_done() == 0 && earlier_not_done == 0
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
        if !self.behind.is_empty() {
            let mut versions: Vec<(&String, &u64)> = self.behind.iter().collect();
            versions.sort_by(|a, b| crate::versions::compare(b.0, a.0));
            let users: u64 = self.behind.values().sum();
            let each: Vec<String> = versions.iter().map(|(v, n)| format!("{v}: {n}")).collect();
            writeln!(
                f,
                "  behind         {users} users, by installed version: {}",
                each.join(", ")
            )?;
        }
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
        let row = |outcome| {
            let mut row = RowResult::new(2, "u".into(), "i".into());
            row.outcome = outcome;
            row
        };
        summary.count(&row(Outcome::Upgraded));
        summary.count(&row(Outcome::Upgraded));
        summary.count(&row(Outcome::NotFound));
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
        assert!(!text.contains("behind"), "{text}");
        assert_eq!(summary.not_done(), 1);
        assert!(!summary.all_succeeded());
    }

    #[test]
    fn an_audit_counts_users_behind_per_installed_version() {
        let mut summary = Summary::new("reports/x.csv".into());
        for (outcome, installed) in [
            (Outcome::WouldUpgrade, "1.9.2"),
            (Outcome::WouldUpgrade, "1.10.0"),
            (Outcome::WouldUpgrade, "1.9.2"),
            (Outcome::UpToDate, "2.0.0"),
        ] {
            let mut row = RowResult::new(2, "u".into(), "i".into());
            row.outcome = outcome;
            row.installed_version = Some(installed.into());
            row.latest_version = Some("2.0.0".into());
            summary.count(&row);
        }
        let text = summary.to_string();
        assert!(
            text.contains("behind         3 users, by installed version: 1.10.0: 1, 1.9.2: 2"),
            "{text}"
        );
        assert!(
            summary.all_succeeded(),
            "an audit that read every row succeeded"
        );
    }
}
