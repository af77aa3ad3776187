//! What is retried and what is not: final 4xx once, transient faults until
//! they clear or the attempts run out.

use std::time::Duration;

use fleetup::report::Outcome;
use fleetup::simulator::{Behaviour, SimConfig};

use crate::support::{by_line, plain_rows, read_report, Harness};

#[tokio::test]
async fn forbidden_and_not_found_are_not_retried() {
    let mut sim = SimConfig::default();
    sim.fleet
        .insert("user-0@contoso.com", Behaviour::not_found());
    sim.fleet
        .insert("user-1@contoso.com", Behaviour::forbidden());
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(2));

    let summary = harness.run(&harness.config(&input)).await;

    assert_eq!(summary.of(Outcome::NotFound), 1);
    assert_eq!(summary.of(Outcome::Forbidden), 1);
    let books = harness.sim.books();
    assert_eq!(books.calls_for("user-0@contoso.com", "inst-0"), 1);
    assert_eq!(books.calls_for("user-1@contoso.com", "inst-1"), 1);
}

#[tokio::test]
async fn server_errors_and_dropped_connections_are_retried_until_they_clear() {
    let sim = SimConfig {
        fault_503: 0.2,
        fault_504: 0.1,
        fault_drop: 0.2,
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(40));
    let mut config = harness.config(&input);
    config.max_attempts = 12;

    let summary = harness.run(&config).await;

    assert!(summary.all_succeeded(), "{summary}");
    let books = harness.sim.books();
    assert!(books.faults > 0);
    assert_eq!(books.upgraded, 40);
    assert_eq!(books.upgrade_calls, 40 + books.faults);
    let retried = read_report(&harness.report_path())
        .iter()
        .filter(|row| row["attempts"] != "1")
        .count();
    assert!(retried > 0);
}

#[tokio::test]
async fn a_row_that_never_stops_failing_ends_failed_after_its_attempts() {
    let sim = SimConfig {
        fault_drop: 1.0,
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(2));
    let mut config = harness.config(&input);
    config.max_attempts = 3;

    let summary = harness.run(&config).await;

    assert_eq!(summary.of(Outcome::Failed), 2);
    let report = by_line(&read_report(&harness.report_path()));
    assert_eq!(report[&2]["attempts"], "3");
    assert_eq!(report[&2]["http_status"], "");
    assert_eq!(report[&2]["error_code"], "connection_error");
    assert_eq!(harness.sim.books().upgrade_calls, 6);
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried_and_reported_as_a_timeout() {
    let sim = SimConfig {
        latency: (Duration::from_millis(400), Duration::from_millis(400)),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(1));
    let mut config = harness.config(&input);
    config.timeout = Duration::from_millis(100);
    config.max_attempts = 2;

    let summary = harness.run(&config).await;

    assert_eq!(summary.of(Outcome::Failed), 1);
    let report = read_report(&harness.report_path());
    assert_eq!(report[0]["error_code"], "timeout");
    assert_eq!(report[0]["attempts"], "2");
}
