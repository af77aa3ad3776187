//! fleetup: upgrade a Microsoft Teams app for a whole fleet of users through
//! Microsoft Graph, paced to Graph's limits, with a per-row report.

pub mod auth;
pub mod breaker;
pub mod check;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod graph;
pub mod input;
pub mod pacing;
pub mod progress;
pub mod report;
pub mod resume;
pub mod retry;
pub mod simulator;
pub mod slots;
pub mod stop;
pub mod summary;
pub mod versions;
pub mod worker;

/// Exit codes, as the README documents them.
pub mod exit {
    /// Every row was upgraded (for `demo`: the run completed).
    pub const DONE: u8 = 0;
    /// At least one row was not upgraded; the report says why.
    pub const NOT_ALL_UPGRADED: u8 = 1;
    /// `check`: at least one row is invalid or a duplicate.
    pub const NOT_ALL_VALID: u8 = 1;
    /// Usage or input error; no call was made.
    pub const USAGE: u8 = 2;
    /// The run stopped early: authentication is broken, or the circuit
    /// breaker opened. Rows not yet tried are left for `--resume`.
    pub const STOPPED: u8 = 3;
    /// Interrupted by Ctrl-C or SIGTERM; the report is valid, resume it.
    pub const INTERRUPTED: u8 = 130;
}
