//! Shared set-up: a simulator, an input file, a run configuration, and a
//! report read back as maps.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use fleetup::auth::{Credentials, Secret};
use fleetup::config::RunConfig;
use fleetup::graph::GraphTarget;
use fleetup::retry::Backoff;
use fleetup::simulator::{SimConfig, Simulator};
use fleetup::summary::Summary;

pub struct Harness {
    pub sim: Simulator,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start(config: SimConfig) -> Harness {
        Harness {
            sim: Simulator::start(config).await.expect("simulator starts"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Write an input CSV with the given header and rows.
    pub fn input(&self, header: &str, rows: &[String]) -> PathBuf {
        let path = self.dir.path().join("input.csv");
        let mut text = format!("{header}\n");
        for row in rows {
            text.push_str(row);
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn report_path(&self) -> PathBuf {
        self.dir.path().join("report.csv")
    }

    /// A configuration fit for tests: fast backoff, a token the simulator
    /// accepts, no progress bar.
    pub fn config(&self, input: &Path) -> RunConfig {
        RunConfig {
            input: input.to_owned(),
            delimiter: None,
            report: self.report_path(),
            target: GraphTarget {
                root: self.sim.url(),
                version: "v1.0".into(),
            },
            credentials: Credentials::EnvToken(Secret::new(
                self.sim.mint_token(Duration::from_secs(600)),
            )),
            rate: 500.0,
            burst: 10,
            concurrency: 16,
            adaptive_concurrency: false,
            read_rate: 500.0,
            max_attempts: 6,
            timeout: Duration::from_secs(5),
            backoff: Backoff {
                base: Duration::from_millis(50),
                cap: Duration::from_millis(400),
            },
            progress: false,
            resume: false,
            retry_failed: false,
            breaker: 50,
            mode: Default::default(),
        }
    }

    /// Client-credentials against the simulator's token endpoint.
    pub fn client_credentials(&self, config: &SimConfig) -> Credentials {
        Credentials::ClientSecret {
            authority: self.sim.url(),
            tenant: "contoso.onmicrosoft.com".into(),
            client_id: config.client_id.clone(),
            secret: Secret::new(config.client_secret.as_str()),
            scope: format!("{}/.default", self.sim.url()),
        }
    }

    /// The binary as an admin runs it: `fleetup run INPUT --graph-url URL
    /// EXTRA…` in the harness's folder, with `token` in `GRAPH_TOKEN`.
    pub async fn run_binary(&self, input: &Path, url: &str, extra: &[&str], token: &str) -> Output {
        let mut args = vec!["run", input.to_str().unwrap(), "--graph-url", url];
        args.extend_from_slice(extra);
        fleetup_async(self.dir.path(), &args, &[("GRAPH_TOKEN", token)]).await
    }

    pub async fn run(&self, config: &RunConfig) -> Summary {
        fleetup::engine::run(config)
            .await
            .expect("the run completes")
    }
}

/// `n` ordinary rows: `user-{i}@contoso.com,inst-{i}`.
pub fn plain_rows(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("user-{i}@contoso.com,inst-{i}"))
        .collect()
}

/// The report's rows, each as column name -> value.
pub fn read_report(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("report exists");
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(header, fleetup::report::COLUMNS);
    reader
        .records()
        .map(|record| {
            let record = record.expect("report rows are valid CSV");
            header
                .iter()
                .cloned()
                .zip(record.iter().map(String::from))
                .collect()
        })
        .collect()
}

/// The report's rows keyed by input line, checking each line appears once.
pub fn by_line(rows: &[HashMap<String, String>]) -> HashMap<u64, HashMap<String, String>> {
    let mut map = HashMap::new();
    for row in rows {
        let line: u64 = row["line"].parse().unwrap();
        assert!(
            map.insert(line, row.clone()).is_none(),
            "line {line} reported twice"
        );
    }
    map
}

/// The binary, run in `dir` with a clean environment plus `envs`.
pub fn command(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetup"));
    command
        .current_dir(dir)
        .args(args)
        .env_remove("GRAPH_TOKEN")
        .env_remove("FLEETUP_CLIENT_SECRET")
        .env_remove("RUST_LOG");
    for (name, value) in envs {
        command.env(name, value);
    }
    command
}

pub fn fleetup(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    command(dir, args, envs).output().expect("the binary runs")
}

pub async fn fleetup_async(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let dir = dir.to_owned();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let envs: Vec<(String, String)> = envs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        fleetup(&dir, &args, &envs)
    })
    .await
    .unwrap()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
