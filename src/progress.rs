//! The progress bar on stderr: done/total, rate, ETA, and how many rows
//! failed and how many 429s came back so far. Drawn only for a person.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::LiveCounts;
use crate::summary::Summary;

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
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} rows  {per_sec:.0}  ETA {eta}  {msg}",
            )
            .expect("template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar: Some(bar) }
    }

    pub fn row_done(&self, summary: &Summary, live: &LiveCounts) {
        let Some(bar) = &self.bar else { return };
        bar.inc(1);
        bar.set_message(format!(
            "not upgraded {}  429s {}",
            summary.not_upgraded(),
            live.throttled.load(Ordering::Relaxed)
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
    }
}
