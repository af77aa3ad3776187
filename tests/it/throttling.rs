//! Throttling: Graph's Retry-After is honoured in every form, for the whole
//! run, even with many calls in flight.

use std::time::Duration;

use fleetup::simulator::{RetryAfterForm, SimConfig};

use crate::support::{plain_rows, read_report, Harness};

/// A tenant that throttles hard: a small bucket, refilled slowly, against a
/// client told to go ten times faster with 32 calls in flight.
async fn overdriven_run(form: RetryAfterForm, rows: usize) -> fleetup::simulator::Books {
    let sim = SimConfig {
        rate: Some(20.0),
        burst: 5,
        retry_after: form,
        latency: (Duration::from_millis(5), Duration::from_millis(30)),
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let input = harness.input("user,installation", &plain_rows(rows));
    let mut config = harness.config(&input);
    config.rate = 200.0;
    config.burst = 32;
    config.concurrency = 32;
    config.max_attempts = 20;

    let summary = harness.run(&config).await;

    assert!(summary.all_succeeded(), "{summary}");
    assert_eq!(read_report(&harness.report_path()).len(), rows);
    assert!(summary.throttled > 0, "the test must provoke throttling");
    assert!(summary.held > Duration::ZERO);
    harness.sim.books()
}

#[tokio::test]
async fn no_call_lands_inside_an_announced_window_at_concurrency_32() {
    let books = overdriven_run(RetryAfterForm::Mixed, 60).await;
    assert!(books.throttled > 0);
    assert_eq!(books.calls_in_window, 0, "{books:?}");
}

#[tokio::test]
async fn retry_after_decimal_is_never_undercut() {
    let books = overdriven_run(RetryAfterForm::Decimal, 40).await;
    assert_eq!(books.calls_in_window, 0);
}

#[tokio::test]
async fn retry_after_whole_seconds_is_never_undercut() {
    let books = overdriven_run(RetryAfterForm::Seconds, 30).await;
    assert_eq!(books.calls_in_window, 0);
}

#[tokio::test]
async fn retry_after_http_date_is_never_undercut() {
    let books = overdriven_run(RetryAfterForm::HttpDate, 30).await;
    assert_eq!(books.calls_in_window, 0);
}

#[tokio::test]
async fn throttling_without_retry_after_backs_off_and_finishes() {
    let books = overdriven_run(RetryAfterForm::Absent, 30).await;
    assert!(books.throttled > 0);
}

/// The books must be able to catch a client that ignores Retry-After, or the
/// tests above prove nothing.
#[tokio::test]
async fn a_client_that_ignores_retry_after_is_caught_by_the_books() {
    let sim = SimConfig {
        rate: Some(5.0),
        burst: 1,
        retry_after: RetryAfterForm::Seconds,
        ..SimConfig::default()
    };
    let harness = Harness::start(sim).await;
    let token = harness.sim.mint_token(Duration::from_secs(60));
    let http = reqwest::Client::new();
    let url = format!(
        "{}/v1.0/users/u/teamwork/installedApps/i/upgrade",
        harness.sim.url()
    );
    for _ in 0..10 {
        http.post(&url).bearer_auth(&token).send().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(harness.sim.books().calls_in_window > 0);
}
