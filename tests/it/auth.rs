//! Tokens: refreshed before and after expiry without failing a row; a token
//! that cannot be renewed makes rows unauthorized, never retried forever.

use std::time::Duration;

use fleetup::simulator::SimConfig;
use fleetup::stop::Stopped;

use crate::support::{plain_rows, read_report, Harness};

#[tokio::test]
async fn an_expiring_token_is_refreshed_without_failing_a_row() {
    let sim = SimConfig {
        token_lifetime: Duration::from_secs(1),
        latency: (Duration::from_millis(50), Duration::from_millis(150)),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim.clone()).await;
    let input = harness.input("user,installation", &plain_rows(60));
    let mut config = harness.config(&input);
    config.credentials = harness.client_credentials(&sim);
    config.rate = 25.0;
    config.burst = 1;

    let summary = harness.run(&config).await;

    assert!(summary.all_succeeded(), "{summary}");
    let books = harness.sim.books();
    assert!(books.tokens_issued >= 2, "{books:?}");
    assert_eq!(books.upgraded, 60);
}

#[tokio::test]
async fn a_token_expired_mid_call_is_replaced_and_the_call_replayed() {
    // Tokens that expire while calls are in flight: every 401 must lead to a
    // fresh token and a replay, not an unauthorized row.
    let sim = SimConfig {
        token_lifetime: Duration::from_secs(1),
        latency: (Duration::from_millis(300), Duration::from_millis(900)),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim.clone()).await;
    let input = harness.input("user,installation", &plain_rows(40));
    let mut config = harness.config(&input);
    config.credentials = harness.client_credentials(&sim);
    config.rate = 20.0;
    config.burst = 1;

    let summary = harness.run(&config).await;

    assert!(summary.all_succeeded(), "{summary}");
}

#[tokio::test]
async fn a_static_token_that_graph_rejects_stops_the_run_and_leaves_rows_for_resume() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = harness.input("user,installation", &plain_rows(200));
    let mut config = harness.config(&input);
    config.rate = 50.0;
    config.burst = 1;
    config.concurrency = 4;
    config.credentials = fleetup::auth::Credentials::EnvToken(fleetup::auth::Secret::new(
        harness.sim.mint_token(Duration::from_millis(1)),
    ));
    tokio::time::sleep(Duration::from_millis(20)).await;

    let summary = harness.run(&config).await;

    assert!(
        matches!(summary.stopped, Some(Stopped::AuthBroken(ref why)) if why.contains("GRAPH_TOKEN")),
        "{summary}"
    );
    let books = harness.sim.books();
    assert!(
        books.upgrade_calls <= 8,
        "stopped at once, not after 200 calls: {books:?}"
    );
    assert_eq!(
        books.unauthorized, books.upgrade_calls,
        "a token that cannot change is not replayed"
    );
    let report = read_report(&harness.report_path());
    assert!(report.len() < 200 && report.iter().all(|r| r["outcome"] == "unauthorized"));
}

#[tokio::test]
async fn a_401_that_persists_after_a_fresh_token_stops_the_run() {
    let sim = SimConfig {
        reject_tokens: true,
        ..SimConfig::default()
    };
    let harness = Harness::start(sim.clone()).await;
    let input = harness.input("user,installation", &plain_rows(200));
    let mut config = harness.config(&input);
    config.credentials = harness.client_credentials(&sim);
    config.concurrency = 4;
    config.rate = 50.0;
    config.burst = 1;

    let summary = harness.run(&config).await;

    let Some(Stopped::AuthBroken(why)) = &summary.stopped else {
        panic!("the run should stop: {summary}");
    };
    assert!(
        why.contains("TeamsAppInstallation.ReadWriteForUser.All"),
        "{why}"
    );
    assert!(summary.rows() < 20, "{summary}");
    assert!(
        harness.sim.books().tokens_issued >= 2,
        "a fresh token was tried first"
    );
}

#[tokio::test]
async fn wrong_client_credentials_stop_before_any_upgrade_call() {
    let sim = SimConfig::default();
    let harness = Harness::start(sim.clone()).await;
    let input = harness.input("user,installation", &plain_rows(5));
    let mut config = harness.config(&input);
    let wrong = SimConfig {
        client_secret: "not-the-secret".into(),
        ..sim
    };
    config.credentials = harness.client_credentials(&wrong);

    let err = fleetup::engine::run(&config).await.unwrap_err();

    assert!(matches!(err, fleetup::engine::RunError::Auth(_)), "{err}");
    assert!(!err.to_string().contains("not-the-secret"));
    assert_eq!(harness.sim.books().upgrade_calls, 0);
}
