//! The command line as typed: raw values only. `config` turns them into the
//! checked configuration the engine runs on.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::simulator::SimulateArgs;

#[derive(Debug, Parser)]
#[command(
    name = "fleetup",
    version,
    about = "Upgrade a Microsoft Teams app for a whole fleet of users through Microsoft Graph"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upgrade every user/installation pair of a CSV and write a per-row report.
    Run(RunArgs),
    /// Run the Graph simulator in the foreground on 127.0.0.1.
    Simulate(SimulateArgs),
    /// Start the simulator in-process and run the main job on inputs/demo.csv.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// CSV with a header row, a user column (userId, userPrincipalName, upn…)
    /// and an installation column (installationId…).
    pub input: PathBuf,

    /// Where the per-row report goes; an existing file is never overwritten.
    /// [default: reports/<input stem>-<UTC time>.csv]
    #[arg(long)]
    pub report: Option<PathBuf>,

    #[command(flatten)]
    pub graph: GraphArgs,

    #[command(flatten)]
    pub auth: AuthArgs,
}

/// How to reach Graph and how hard to push it.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// Graph root.
    #[arg(long, default_value = "https://graph.microsoft.com")]
    pub graph_url: String,

    /// Graph API version: v1.0 or beta.
    #[arg(long, default_value = "v1.0")]
    pub api_version: String,

    /// Upgrade calls per second for the whole run (Graph allows 30 per app
    /// per tenant).
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,

    /// Most calls in flight. [default: twice the rate, enough to hold the
    /// rate while Graph takes up to 2 s per call]
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// Attempts per row before giving up (429s, 5xx, timeouts, dropped
    /// connections are retried; other 4xx never are).
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,

    /// Time limit for each attempt, e.g. 30s or 1m.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,

    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Credentials: GRAPH_TOKEN, or --token-file, or the client-credentials flow.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// File holding a bearer token (read again after a 401).
    #[arg(long)]
    pub token_file: Option<PathBuf>,

    /// Tenant id or domain, for the client-credentials flow (the secret comes
    /// from FLEETUP_CLIENT_SECRET).
    #[arg(long)]
    pub tenant: Option<String>,

    /// Application (client) id, for the client-credentials flow.
    #[arg(long)]
    pub client_id: Option<String>,

    /// Token authority root.
    #[arg(long, default_value = "https://login.microsoftonline.com")]
    pub authority_url: String,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The input to run on.
    #[arg(long, default_value = "inputs/demo.csv")]
    pub input: PathBuf,

    /// Where the per-row report goes. [default: reports/demo-<UTC time>.csv]
    #[arg(long)]
    pub report: Option<PathBuf>,

    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}
