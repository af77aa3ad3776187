//! fleetup: upgrade a Microsoft Teams app for a whole fleet of users through
//! Microsoft Graph, paced to Graph's limits, with a per-row report.

pub mod auth;
pub mod cli;
pub mod config;
pub mod demo;
pub mod engine;
pub mod graph;
pub mod input;
pub mod pacing;
pub mod progress;
pub mod report;
pub mod retry;
pub mod simulator;
pub mod summary;

/// Exit codes, as the README documents them.
pub mod exit {
    /// Every row was upgraded (for `demo`: the run completed).
    pub const DONE: u8 = 0;
    /// At least one row was not upgraded; the report says why.
    pub const NOT_ALL_UPGRADED: u8 = 1;
    /// Usage or input error; no call was made.
    pub const USAGE: u8 = 2;
    /// Authentication failed.
    pub const AUTH: u8 = 3;
}
