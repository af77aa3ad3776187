//! Never lose a row: kill -9 then resume, Ctrl-C, retrying failed rows, the
//! circuit breaker. These run the real binary against the simulator.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use fleetup::simulator::{Behaviour, SimConfig, Simulator};

use crate::support::{by_line, command, fleetup_async, plain_rows, read_report, stderr, Harness};

/// The rows of a report that may end in a partial line (a killed run):
/// only complete rows count.
fn complete_lines(path: &Path) -> HashSet<u64> {
    let text = std::fs::read(path).unwrap();
    let complete = match text.last() {
        Some(b'\n') => &text[..],
        _ => {
            &text[..text
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |at| at + 1)]
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(complete);
    reader
        .records()
        .filter_map(Result::ok)
        .filter(|record| record.len() == fleetup::report::COLUMNS.len())
        .map(|record| record[0].parse().unwrap())
        .collect()
}

/// Resume `report` of `input` against `sim`, with `extra` arguments.
async fn resume_with(
    harness: &Harness,
    input: &Path,
    report: &Path,
    sim: &Simulator,
    extra: &[&str],
) -> std::process::Output {
    let (_, token) = token_env(sim);
    let mut args = vec!["--resume", report.to_str().unwrap()];
    args.extend_from_slice(extra);
    harness.run_binary(input, &sim.url(), &args, &token).await
}

/// The resume command a run printed on stderr.
fn printed_resume(message: &str) -> &str {
    message
        .lines()
        .map(str::trim)
        .find(|line| line.contains(" run ") && line.contains("--resume"))
        .unwrap_or_else(|| panic!("no resume command in: {message}"))
}

fn token_env(sim: &Simulator) -> (String, String) {
    (
        "GRAPH_TOKEN".into(),
        sim.mint_token(Duration::from_secs(600)),
    )
}

async fn wait_for_rows(report: &Path, rows: usize) {
    for _ in 0..400 {
        if report.exists() && complete_lines(report).len() >= rows {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the report never reached {rows} rows");
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([name, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn killed_with_sigkill_then_resumed_every_line_is_reported_once_and_settled_rows_are_not_called_again(
) {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(120));
    let report = harness.report_path();
    let url = harness.sim.url();
    let (name, token) = token_env(&harness.sim);
    let args = [
        "run",
        input.to_str().unwrap(),
        "--graph-url",
        &url,
        "--rate",
        "40",
        "--no-progress",
        "--report",
        report.to_str().unwrap(),
    ];
    let mut child = command(harness.dir.path(), &args, &[(&name, &token)])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    wait_for_rows(&report, 30).await;
    signal(child.id(), "-KILL");
    child.wait().unwrap();
    let settled = complete_lines(&report);
    let before = harness.sim.books();
    assert!(
        settled.len() < 120,
        "the kill came too late to test anything"
    );

    let output = harness
        .run_binary(
            &input,
            &url,
            &["--resume", report.to_str().unwrap()],
            &token,
        )
        .await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = by_line(&read_report(&report));
    assert_eq!(
        rows.keys().copied().collect::<HashSet<_>>(),
        (2..=121).collect()
    );
    let after = harness.sim.books();
    for line in settled {
        let i = line - 2;
        let (user, installation) = (format!("user-{i}@contoso.com"), format!("inst-{i}"));
        assert_eq!(
            after.calls_for(&user, &installation),
            before.calls_for(&user, &installation),
            "line {line} was settled before the kill but called again"
        );
    }

    // The same resume again: nothing left, no call at all.
    let again = harness
        .run_binary(
            &input,
            &url,
            &["--resume", report.to_str().unwrap()],
            &token,
        )
        .await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert_eq!(harness.sim.books().upgrade_calls, after.upgrade_calls);
    assert_eq!(read_report(&report).len(), 120);
}

#[tokio::test]
async fn sigint_exits_130_with_a_valid_report_and_a_resume_command_that_works() {
    let sim = SimConfig {
        latency: (Duration::from_millis(20), Duration::from_millis(60)),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(200));
    let report = harness.report_path();
    let url = harness.sim.url();
    let (name, token) = token_env(&harness.sim);
    let args = [
        "run",
        input.to_str().unwrap(),
        "--graph-url",
        &url,
        "--rate",
        "40",
        "--report",
        report.to_str().unwrap(),
    ];
    let child = command(harness.dir.path(), &args, &[(&name, &token)])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    wait_for_rows(&report, 20).await;
    signal(child.id(), "-INT");
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();

    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    let first = read_report(&report);
    assert!(first.len() < 200);
    by_line(&first);
    let message = stderr(&output);
    let resume = printed_resume(&message);
    // The program as it was started, which need not be on the PATH.
    let program = env!("CARGO_BIN_EXE_fleetup");
    assert!(resume.starts_with(&format!("{program} run ")), "{resume}");
    let words: Vec<&str> = resume.split_whitespace().skip(1).collect();

    let output = fleetup_async(harness.dir.path(), &words, &[(&name, &token)]).await;

    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let rows = by_line(&read_report(&report));
    assert_eq!(rows.len(), 200);
}

#[tokio::test]
async fn retry_failed_sends_failed_rows_again_and_keeps_one_row_per_line() {
    let mut failing = SimConfig::default();
    failing
        .fleet
        .insert("user-3@contoso.com", Behaviour::for_status(503));
    failing
        .fleet
        .insert("user-5@contoso.com", Behaviour::not_found());
    let harness = Harness::start(failing).await;
    let input = harness.input("user,installation", &plain_rows(10));
    let report = harness.report_path();
    let url = harness.sim.url();
    let (_, token) = token_env(&harness.sim);
    let first = harness
        .run_binary(
            &input,
            &url,
            &["--max-attempts", "2", "--report", report.to_str().unwrap()],
            &token,
        )
        .await;
    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    assert!(
        stderr(&first).contains("--retry-failed"),
        "{}",
        stderr(&first)
    );
    assert_eq!(by_line(&read_report(&report))[&5]["outcome"], "failed");

    // Graph has recovered: a new simulator, where only the 404 remains.
    let mut recovered = SimConfig::default();
    recovered
        .fleet
        .insert("user-5@contoso.com", Behaviour::not_found());
    let sim = Simulator::start(recovered).await.unwrap();
    let output = resume_with(&harness, &input, &report, &sim, &["--retry-failed"]).await;

    assert_eq!(
        output.status.code(),
        Some(1),
        "the 404 remains: {}",
        stderr(&output)
    );
    let rows = by_line(&read_report(&report));
    assert_eq!(rows.len(), 10);
    assert_eq!(rows[&5]["outcome"], "upgraded");
    assert_eq!(rows[&7]["outcome"], "not_found");
    let books = sim.books();
    assert_eq!(books.upgrade_calls, 1, "only the failed row is sent again");
    assert_eq!(books.calls_for("user-3@contoso.com", "inst-3"), 1);
}

#[tokio::test]
async fn resuming_with_another_input_is_refused_before_any_call() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(3));
    let report = harness.report_path();
    let url = harness.sim.url();
    let (name, token) = token_env(&harness.sim);
    let run = |input: String| {
        let report = report.to_str().unwrap().to_owned();
        let url = url.clone();
        let env = (name.clone(), token.clone());
        let dir = harness.dir.path().to_owned();
        async move {
            fleetup_async(
                &dir,
                &["run", &input, "--graph-url", &url, "--resume", &report],
                &[(&env.0, &env.1)],
            )
            .await
        }
    };
    let first = harness
        .run_binary(
            &input,
            &url,
            &["--report", report.to_str().unwrap()],
            &token,
        )
        .await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let calls = harness.sim.books().upgrade_calls;

    let other = harness.dir.path().join("other.csv");
    std::fs::write(&other, "user,installation\nsomeone@contoso.com,x\n").unwrap();
    let output = run(other.to_str().unwrap().to_owned()).await;

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("another input"),
        "{}",
        stderr(&output)
    );
    assert_eq!(harness.sim.books().upgrade_calls, calls);
}

#[tokio::test]
async fn a_tenant_wide_403_stops_the_run_after_a_bounded_number_of_rows() {
    let sim = SimConfig {
        everyone: Some(Behaviour::new(
            403,
            "Forbidden",
            "Missing role permissions on the request. API requires one of \
             'TeamsAppInstallation.ReadWriteForUser.All'.",
        )),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(500));
    let url = harness.sim.url();
    let (_, token) = token_env(&harness.sim);

    let output = harness
        .run_binary(
            &input,
            &url,
            &["--breaker", "25", "--concurrency", "8"],
            &token,
        )
        .await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    assert!(message.contains("circuit breaker"), "{message}");
    assert!(
        message.contains("TeamsAppInstallation.ReadWriteForUser.All"),
        "{message}"
    );
    assert!(message.contains("--resume"), "{message}");
    let calls = harness.sim.books().upgrade_calls;
    assert!(
        calls <= 25 + 8,
        "{calls} calls: it should stop soon after 25"
    );

    // The refused rows are left out of the report, so that once the
    // permission is granted the resume sends them too.
    let report = harness.dir.path().join(
        message
            .split("--resume ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the resume command names the report"),
    );
    let rows = read_report(&report);
    assert!(rows.iter().all(|r| r["outcome"] != "forbidden"), "{rows:?}");
    let granted = Simulator::start(SimConfig::default()).await.unwrap();
    let resumed = resume_with(&harness, &input, &report, &granted, &["--no-progress"]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let lines = by_line(&read_report(&report));
    assert_eq!(lines.len(), 500);
    assert!(lines.values().all(|r| r["outcome"] == "upgraded"));
}

#[tokio::test]
async fn scattered_per_user_404s_and_403s_do_not_stop_the_run() {
    let mut sim = SimConfig::default();
    for i in (0..300).step_by(3) {
        sim.fleet
            .insert(&format!("user-{i}@contoso.com"), Behaviour::not_found());
    }
    for i in (1..300).step_by(7).filter(|i| i % 3 != 0) {
        sim.fleet
            .insert(&format!("user-{i}@contoso.com"), Behaviour::forbidden());
    }
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(300));
    let mut config = harness.config(&input);
    config.breaker = 10;

    let summary = harness.run(&config).await;

    assert_eq!(summary.stopped, None, "{summary}");
    assert_eq!(summary.rows(), 300);
    let outcomes: HashMap<String, usize> =
        read_report(&harness.report_path())
            .iter()
            .fold(HashMap::new(), |mut counts, row| {
                *counts.entry(row["outcome"].clone()).or_default() += 1;
                counts
            });
    assert_eq!(outcomes["not_found"], 100);
    assert_eq!(outcomes["forbidden"], 29);
}

// After a stop for a refused token, the printed resume command left out
// --retry-failed, so the rows it had settled unauthorized were never sent.
#[tokio::test]
async fn after_an_expired_token_the_resume_command_sends_the_refused_rows_again() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(20));
    let url = harness.sim.url();
    let expired = harness.sim.mint_token(Duration::from_millis(1));
    tokio::time::sleep(Duration::from_millis(20)).await;

    let output = harness.run_binary(&input, &url, &[], &expired).await;

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    let message = stderr(&output);
    let resume = printed_resume(&message);
    assert!(resume.ends_with("--retry-failed"), "{resume}");
    assert!(!message.contains(&expired), "the token is never printed");

    let (name, fresh) = token_env(&harness.sim);
    let words: Vec<&str> = resume.split_whitespace().skip(1).collect();
    let resumed = fleetup_async(harness.dir.path(), &words, &[(&name, &fresh)]).await;
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
}
