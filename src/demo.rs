//! `fleetup demo`: the main job end to end on a sample fleet, against the
//! simulator started inside the process, throttling like Graph.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::auth::{Credentials, Secret};
use crate::cli::DemoArgs;
use crate::config::{default_report, Mode, RunConfig};
use crate::engine::{run, RunError};
use crate::graph::GraphTarget;
use crate::retry::Backoff;
use crate::simulator::{Fleet, SimConfig, Simulator, Tenant};
use crate::summary::Summary;

/// The simulator's per-user behaviours for the demo, beside the demo input.
const FLEET_FILE: &str = "demo-fleet.csv";
/// The demo tenant's catalog and installed versions, beside the demo input.
const TENANT_FILE: &str = "demo-tenant.json";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(
        "the demo needs {path}: {reason}. Run `fleetup demo` from the repository's top folder."
    )]
    Setup { path: PathBuf, reason: String },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Run(#[from] RunError),
}

/// Start the simulator, run the main job on the demo input, stop.
pub async fn demo(args: DemoArgs) -> Result<Summary, DemoError> {
    let fleet_path = args.input.with_file_name(FLEET_FILE);
    let fleet = Fleet::load(&fleet_path).map_err(|err| DemoError::Setup {
        path: fleet_path.clone(),
        reason: err.to_string(),
    })?;
    let tenant_path = args.input.with_file_name(TENANT_FILE);
    let tenant = Tenant::load(&tenant_path).map_err(|err| DemoError::Setup {
        path: tenant_path.clone(),
        reason: err.to_string(),
    })?;
    let mode = Mode::derive(&args.mode).map_err(|err| DemoError::Usage(err.0))?;
    let sim_config = SimConfig {
        fleet,
        tenant,
        ..SimConfig::graph_like()
    };
    let simulator = Simulator::start(sim_config.clone())
        .await
        .map_err(|err| DemoError::Setup {
            path: PathBuf::from("127.0.0.1"),
            reason: format!("cannot start the simulator: {err}"),
        })?;
    let _ = writeln!(
        std::io::stderr(),
        "fleetup demo: Graph simulator on {} (30 calls/s like a tenant, some latency and faults)",
        simulator.url()
    );

    let mut config = demo_config(&args, &simulator, &sim_config);
    config.mode = mode;
    let summary = run(&config).await;
    simulator.shutdown().await;
    Ok(summary?)
}

fn demo_config(args: &DemoArgs, simulator: &Simulator, sim: &SimConfig) -> RunConfig {
    let input: &Path = &args.input;
    RunConfig {
        input: input.to_owned(),
        delimiter: None,
        report: args
            .report
            .clone()
            .unwrap_or_else(|| default_report(input, SystemTime::now())),
        target: GraphTarget {
            root: simulator.url(),
            version: "v1.0".into(),
        },
        credentials: Credentials::ClientSecret {
            authority: simulator.url(),
            tenant: "demo-tenant".into(),
            client_id: sim.client_id.clone(),
            secret: Secret::new(sim.client_secret.as_str()),
            scope: format!("{}/.default", simulator.url()),
        },
        rate: 30.0,
        burst: 30,
        concurrency: 60,
        adaptive_concurrency: true,
        read_rate: 30.0,
        max_attempts: 8,
        timeout: Duration::from_secs(30),
        backoff: Backoff::default(),
        progress: !args.no_progress,
        resume: false,
        retry_failed: false,
        breaker: 50,
        mode: Default::default(),
    }
}
