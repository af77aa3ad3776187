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
    /// Read a CSV as `run` would and report valid, invalid and duplicate rows,
    /// without any network call.
    Check(CheckArgs),
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

    /// Field delimiter of the input: ',', ';', tab or '|'. [default: guessed
    /// from the header line]
    #[arg(long, value_parser = crate::input::parse_delimiter)]
    pub delimiter: Option<u8>,

    #[command(flatten)]
    pub mode: ModeArgs,

    #[command(flatten)]
    pub graph: GraphArgs,

    #[command(flatten)]
    pub auth: AuthArgs,

    #[command(flatten)]
    pub journal: JournalArgs,
}

/// What is done to each row: upgrade it, audit it, or find it first.
#[derive(Debug, Default, Args)]
pub struct ModeArgs {
    /// Write nothing: read each installation's version and the app's newest
    /// published version, and report would_upgrade or up_to_date.
    #[arg(long)]
    pub dry_run: bool,

    /// Read each installation's version first and upgrade only the users who
    /// are behind; the others are reported up_to_date.
    #[arg(long)]
    pub only_outdated: bool,

    /// The app's catalog id (a GUID): the input needs only a user column, and
    /// each user's installation of this app is looked up.
    #[arg(long, value_name = "APP")]
    pub app_id: Option<String>,

    /// With --app-id: install the app for users who lack it.
    #[arg(long)]
    pub install_missing: bool,
}

/// Resuming, and stopping early.
#[derive(Debug, Args)]
pub struct JournalArgs {
    /// Continue an earlier run: skip every input line this report already
    /// holds and append the rest to it.
    #[arg(long, value_name = "REPORT", conflicts_with = "report")]
    pub resume: Option<PathBuf>,

    /// With --resume: also send again the rows that ended throttled, failed
    /// or unauthorized (the report keeps only their newest outcome).
    #[arg(long, requires = "resume")]
    pub retry_failed: bool,

    /// Stop the run when this many rows in a row fail the same way (a
    /// missing permission, an incident, no network); 0 never stops.
    #[arg(long, default_value_t = 50, value_name = "ROWS")]
    pub breaker: u32,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The CSV to check, as `run` would read it.
    pub input: PathBuf,

    /// Field delimiter of the input: ',', ';', tab or '|'. [default: guessed
    /// from the header line]
    #[arg(long, value_parser = crate::input::parse_delimiter)]
    pub delimiter: Option<u8>,

    /// Check the input as `run --app-id` reads it: a user column is enough.
    #[arg(long, value_name = "APP")]
    pub app_id: Option<String>,
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
    #[arg(long, default_value_t = 30.0, value_parser = calls_per_second)]
    pub rate: f64,

    /// GET calls per second, per read class (Graph budgets reads apart from
    /// writes).
    #[arg(long, default_value_t = 30.0, value_parser = calls_per_second)]
    pub read_rate: f64,

    /// Most calls in flight, fixed. [default: follows Graph's latency, enough
    /// in flight to hold the rate, starting at twice the rate]
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// Attempts per row before giving up (429s, 5xx, timeouts, dropped
    /// connections are retried; other 4xx never are).
    #[arg(long, default_value_t = 8)]
    pub max_attempts: u32,

    /// Time limit for each attempt, e.g. 30s or 1m.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub timeout: Duration,

    /// Do not draw the progress bar.
    #[arg(long)]
    pub no_progress: bool,
}

/// Credentials: GRAPH_TOKEN, or --token-file, or the client-credentials flow.
#[derive(Debug, Args)]
pub struct AuthArgs {
    /// File holding a bearer token (read again after a 401).
    #[arg(long, conflicts_with_all = ["tenant", "client_id"])]
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

    /// --dry-run, --only-outdated, --app-id and --install-missing, as for
    /// `run` (the demo app's id is 5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11).
    #[command(flatten)]
    pub mode: ModeArgs,
}

/// A pace: a number of calls a second, such as 30 or 12.5 (`config`
/// checks that it is positive).
fn calls_per_second(text: &str) -> Result<f64, String> {
    text.trim().parse::<f64>().map_err(|_| {
        format!(
            "{text:?} is not a pace; write a positive number of calls a second, such as 30 or 12.5"
        )
    })
}

/// A duration as people write it: `30s`, `1m`, `500ms`.
fn duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|_| format!("{text:?} is not a duration; write it like 30s, 1m or 500ms"))
}
