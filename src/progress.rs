//! The progress bar on stderr: done/total, rate, ETA, failures and 429s so
//! far, the pace the run holds, and when a throttle window will end.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::time::Instant;

/// The bar being drawn, if any, so that log lines can step around it.
static ACTIVE: Mutex<Option<ProgressBar>> = Mutex::new(None);

/// What the bar shows beside the counts.
pub struct Status {
    /// Rows settled other than as asked (not found, forbidden, failed…).
    pub failures: u64,
    pub throttled: u64,
    pub rate: f64,
    pub held_until: Option<Instant>,
}

#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A bar over `total` rows when `wanted` and stderr is a terminal.
    pub fn new(total: Option<u64>, wanted: bool) -> Progress {
        if !wanted || !std::io::stderr().is_terminal() {
            return Progress { bar: None };
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{bar:30} {pos}/{len} rows  {rows_per_sec}  ETA {eta}  {msg}",
        )
        .expect("template is valid")
        .with_key(
            "rows_per_sec",
            |state: &indicatif::ProgressState, out: &mut dyn std::fmt::Write| {
                let _ = write!(out, "{:.1} rows/s", state.per_sec());
            },
        );
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        *ACTIVE.lock().expect("progress lock") = Some(bar.clone());
        Progress { bar: Some(bar) }
    }

    pub fn is_drawn(&self) -> bool {
        self.bar.is_some()
    }

    /// The number of rows to go, once it is known.
    pub fn set_total(&self, total: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
        }
    }

    pub fn row_done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    pub fn show(&self, status: &Status) {
        let Some(bar) = &self.bar else { return };
        bar.set_message(describe(status, Instant::now(), SystemTime::now()));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
            *ACTIVE.lock().expect("progress lock") = None;
        }
    }
}

/// The bar's message. A wait longer than a second says until when, on the
/// wall clock, so an admin facing a 300 s window knows the run is alive.
pub fn describe(status: &Status, now: Instant, wall: SystemTime) -> String {
    let mut text = format!(
        "failures {}  429s {}  pace {:.1}/s",
        status.failures, status.throttled, status.rate
    );
    if let Some(until) = status.held_until {
        let left = until.saturating_duration_since(now);
        if left > Duration::from_secs(1) {
            let end = humantime::format_rfc3339_seconds(wall + left).to_string();
            let clock = end.get(11..19).unwrap_or(&end);
            text.push_str(&format!("  waiting for Graph until {clock} UTC"));
        }
    }
    text
}

/// A log writer that lifts the progress bar out of the way of each line.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = ACTIVE.lock().expect("progress lock").clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_wait_shows_its_end_on_the_wall_clock() {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_325_300);
        let status = Status {
            failures: 2,
            throttled: 7,
            rate: 15.0,
            held_until: Some(now + Duration::from_secs(300)),
        };
        let text = describe(&status, now, wall);
        assert_eq!(
            text,
            "failures 2  429s 7  pace 15.0/s  waiting for Graph until 19:20:00 UTC"
        );
    }

    #[test]
    fn a_short_wait_is_not_worth_a_word() {
        let now = Instant::now();
        let status = Status {
            failures: 0,
            throttled: 1,
            rate: 30.0,
            held_until: Some(now + Duration::from_millis(400)),
        };
        assert!(!describe(&status, now, SystemTime::now()).contains("waiting"));
    }
}
