//! The binary as an admin meets it: exit codes, messages, and the demo.

use std::path::Path;
use std::time::Duration;

use fleetup::simulator::{Behaviour, SimConfig};

use crate::support::{fleetup, fleetup_async, plain_rows, read_report, stderr, Harness};

#[tokio::test]
async fn a_missing_column_exits_2_before_any_call() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,appId", &plain_rows(3));
    let token = harness.sim.mint_token(Duration::from_secs(60));
    let url = harness.sim.url();

    let output = harness
        .run_binary(&input, &url, &["--no-progress"], &token)
        .await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("input.csv"), "{message}");
    assert!(message.contains("installationId"), "{message}");
    assert_eq!(harness.sim.books().upgrade_calls, 0);
    assert!(
        !harness.dir.path().join("reports").exists(),
        "no report for a run that never started"
    );
}

#[tokio::test]
async fn an_unreadable_input_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let output = fleetup(dir.path(), &["run", "nowhere.csv"], &[("GRAPH_TOKEN", "t")]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("nowhere.csv"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn an_existing_report_is_never_overwritten() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(3));
    std::fs::write(harness.report_path(), "precious").unwrap();
    let token = harness.sim.mint_token(Duration::from_secs(60));
    let url = harness.sim.url();
    let report = harness.report_path();

    let output = harness
        .run_binary(
            &input,
            &url,
            &["--report", report.to_str().unwrap()],
            &token,
        )
        .await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("already exists"));
    assert_eq!(
        std::fs::read_to_string(harness.report_path()).unwrap(),
        "precious"
    );
    assert_eq!(harness.sim.books().upgrade_calls, 0);
}

#[tokio::test]
async fn a_run_with_a_failed_row_exits_1_with_a_summary_and_no_secret_in_sight() {
    let mut sim = SimConfig::default();
    sim.fleet
        .insert("user-1@contoso.com", Behaviour::not_found());
    let harness = Harness::start(sim.clone()).await;
    let input = harness.input("user,installation", &plain_rows(4));
    let url = harness.sim.url();

    let output = fleetup_async(
        harness.dir.path(),
        &[
            "run",
            input.to_str().unwrap(),
            "--graph-url",
            &url,
            "--authority-url",
            &url,
            "--tenant",
            "contoso.onmicrosoft.com",
            "--client-id",
            &sim.client_id,
        ],
        &[
            ("FLEETUP_CLIENT_SECRET", &sim.client_secret),
            ("RUST_LOG", "trace"),
        ],
    )
    .await;

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("upgraded       3"), "{message}");
    assert!(message.contains("not_found      1"), "{message}");
    assert!(
        !message.contains(&sim.client_secret),
        "the secret leaked: {message}"
    );
    assert!(output.stdout.is_empty());
    // The report went to the default place: reports/<input stem>-<UTC time>.csv
    let reports: Vec<_> = std::fs::read_dir(harness.dir.path().join("reports"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "csv"))
        .collect();
    assert_eq!(reports.len(), 1);
    let name = reports[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        name.starts_with("input-") && name.ends_with("Z.csv"),
        "{name}"
    );
    assert_eq!(read_report(&reports[0]).len(), 4);
}

#[tokio::test]
async fn a_clean_run_exits_0() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(5));
    let token = harness.sim.mint_token(Duration::from_secs(60));
    let url = harness.sim.url();

    let output = harness.run_binary(&input, &url, &[], &token).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(!stderr(&output).contains(&token), "the token leaked");
}

#[tokio::test]
async fn the_demo_runs_the_sample_fleet_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("demo.csv");
    let root = env!("CARGO_MANIFEST_DIR");

    let output = fleetup_async(
        Path::new(root),
        &[
            "demo",
            "--no-progress",
            "--report",
            report.to_str().unwrap(),
        ],
        &[],
    )
    .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = read_report(&report);
    let data_lines = std::fs::read_to_string(Path::new(root).join("inputs/demo.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(rows.len(), data_lines);
    let count = |outcome: &str| rows.iter().filter(|r| r["outcome"] == outcome).count();
    assert!(count("not_found") > 0 && count("forbidden") > 0);
    assert_eq!(count("invalid_input"), 1);
    assert_eq!(
        count("upgraded") + count("not_found") + count("forbidden") + count("invalid_input"),
        rows.len(),
        "the demo's faults all clear on retry"
    );
}

#[test]
fn mode_flags_that_cannot_work_exit_2_before_any_call() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("users.csv"), "upn\na@contoso.com\n").unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["run", "users.csv"];
        all.extend_from_slice(args);
        fleetup(dir.path(), &all, &[("GRAPH_TOKEN", "t")])
    };

    let output = run(&["--app-id", "com.contoso.helpdesk"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("App ID"), "{}", stderr(&output));

    let output = run(&["--install-missing"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("--app-id"), "{}", stderr(&output));

    let app = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";
    let output = run(&["--app-id", app, "--install-missing", "--dry-run"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(!dir.path().join("reports").exists());
}

#[test]
fn check_with_an_app_id_needs_only_the_user_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.csv"),
        "upn\na@contoso.com\nb@contoso.com\n",
    )
    .unwrap();
    let app = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";

    let output = fleetup(dir.path(), &["check", "users.csv", "--app-id", app], &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}{}", stderr(&output));
    assert!(stdout.contains("2 valid"), "{stdout}");

    let output = fleetup(dir.path(), &["check", "users.csv"], &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "an installation column is needed"
    );
}
