//! The main job end to end: every row ends with the right outcome, once.

use std::collections::HashSet;

use fleetup::report::Outcome;
use fleetup::simulator::{Behaviour, SimConfig};

use crate::support::{by_line, plain_rows, read_report, Harness};

#[tokio::test]
async fn every_row_ends_with_its_outcome_and_appears_in_the_report_once() {
    let mut sim = SimConfig::default();
    sim.fleet
        .insert("user-3@contoso.com", Behaviour::not_found());
    sim.fleet
        .insert("USER-5@contoso.com", Behaviour::forbidden());
    sim.fleet.insert(
        "user-7@contoso.com",
        Behaviour::bad_request("Invalid installation id"),
    );
    let harness = Harness::start(sim).await;
    let mut rows = plain_rows(40);
    rows.insert(10, "missing-installation@contoso.com,".into());
    rows.insert(20, "  ,inst-x".into());
    rows.insert(30, "only-one-field@contoso.com".into());
    let input = harness.input("userPrincipalName,installationId", &rows);

    let summary = harness.run(&harness.config(&input)).await;

    let report = by_line(&read_report(&harness.report_path()));
    assert_eq!(report.len(), 43, "one report row per input row");
    let lines: HashSet<u64> = report.keys().copied().collect();
    assert_eq!(lines, (2..=44).collect());
    let outcome_of = |user: &str| {
        let row = report.values().find(|r| r["user"] == user).unwrap();
        row["outcome"].clone()
    };
    assert_eq!(outcome_of("user-3@contoso.com"), "not_found");
    assert_eq!(outcome_of("user-5@contoso.com"), "forbidden");
    assert_eq!(outcome_of("user-7@contoso.com"), "rejected");
    assert_eq!(outcome_of("user-0@contoso.com"), "upgraded");
    assert_eq!(report[&12]["outcome"], "invalid_input");
    assert!(report[&12]["error_message"].contains("installation field is empty"));
    assert_eq!(report[&22]["outcome"], "invalid_input");
    assert_eq!(report[&32]["outcome"], "invalid_input");
    assert_eq!(report[&32]["attempts"], "0");

    assert_eq!(summary.of(Outcome::Upgraded), 37);
    assert_eq!(summary.of(Outcome::InvalidInput), 3);
    assert_eq!(summary.rows(), 43);
    assert!(!summary.all_succeeded());
    let books = harness.sim.books();
    assert_eq!(books.upgrade_calls, 40, "invalid rows are never sent");
}

#[tokio::test]
async fn the_report_keeps_graphs_error_and_the_ids_support_needs() {
    let mut sim = SimConfig::default();
    sim.fleet
        .insert("user-1@contoso.com", Behaviour::not_found());
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(3));

    harness.run(&harness.config(&input)).await;

    let report = by_line(&read_report(&harness.report_path()));
    let missing = &report[&3];
    assert_eq!(missing["http_status"], "404");
    assert_eq!(missing["attempts"], "1");
    assert!(!missing["error_code"].is_empty());
    assert!(!missing["error_message"].is_empty());
    assert_eq!(
        missing["request_id"].len(),
        36,
        "Graph's request-id is kept"
    );
    let books = harness.sim.books();
    assert!(books
        .client_request_ids
        .contains(&missing["client_request_id"]));
    assert_eq!(report[&2]["http_status"], "204");
    assert_eq!(report[&2]["error_code"], "");
}

#[tokio::test]
async fn every_attempt_carries_a_fresh_client_request_id() {
    let sim = SimConfig {
        fault_503: 0.3,
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(30));

    harness.run(&harness.config(&input)).await;

    let books = harness.sim.books();
    assert!(books.upgrade_calls > 30, "some calls were retried");
    assert_eq!(books.missing_client_request_id, 0);
    let unique: HashSet<&String> = books.client_request_ids.iter().collect();
    assert_eq!(unique.len() as u64, books.upgrade_calls);
    assert!(unique.iter().all(|id| uuid::Uuid::parse_str(id).is_ok()));
}
