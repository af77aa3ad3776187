//! Version checks and app-id lookups: dry-run audits that write nothing,
//! upgrades sent only to users who are behind, and installations found (or
//! installed) from a list of users and the app's id.

use std::collections::HashMap;

use fleetup::config::Mode;
use fleetup::report::Outcome;
use fleetup::simulator::{Behaviour, PublishingState, SimConfig, Tenant};
use fleetup::stop::Stopped;
use fleetup::summary::Summary;

use crate::support::{by_line, read_report, Harness};

const APP: &str = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";
const OTHER_APP: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";

/// A catalog where 1.10.0 is the newest published version (2.0.0 is only
/// submitted), and `users` each running the version given, or lacking the
/// app. Everyone also has another app, which a lookup must not pick.
fn tenant(users: &[(&str, Option<&str>)]) -> (Tenant, HashMap<String, String>) {
    use PublishingState::{Published, Submitted};
    let mut tenant = Tenant::default();
    tenant.add_app(
        APP,
        "Contoso Helpdesk",
        &[
            ("1.9.2", Published),
            ("1.10.0", Published),
            ("2.0.0", Submitted),
        ],
    );
    tenant.add_app(OTHER_APP, "Other", &[("3.0.0", Published)]);
    let mut ids = HashMap::new();
    for (user, version) in users {
        tenant.install(user, OTHER_APP, "1.0.0");
        if let Some(version) = version {
            ids.insert(user.to_string(), tenant.install(user, APP, version));
        }
    }
    (tenant, ids)
}

fn user(i: usize) -> String {
    format!("user-{i}@contoso.com")
}

/// Users 0..n: every third one current, the others on 1.9.2.
fn fleet(n: usize) -> Vec<(String, Option<&'static str>)> {
    (0..n)
        .map(|i| (user(i), Some(if i % 3 == 0 { "1.10.0" } else { "1.9.2" })))
        .collect()
}

fn borrowed<'a>(users: &'a [(String, Option<&'static str>)]) -> Vec<(&'a str, Option<&'a str>)> {
    users.iter().map(|(u, v)| (u.as_str(), *v)).collect()
}

fn pairs(users: &[(String, Option<&str>)], ids: &HashMap<String, String>) -> Vec<String> {
    users
        .iter()
        .map(|(user, _)| {
            let id = ids.get(user).cloned().unwrap_or_else(|| "missing".into());
            format!("{user},{id}")
        })
        .collect()
}

/// A run by `--app-id` (with `mode`'s other flags) over a list of `users`,
/// against `sim` holding their tenant.
async fn by_app_id(
    users: &[(String, Option<&'static str>)],
    mut sim: SimConfig,
    mode: Mode,
    breaker: u32,
) -> (Harness, Summary) {
    sim.tenant = tenant(&borrowed(users)).0;
    let harness = Harness::start(sim).await;
    let names: Vec<String> = users.iter().map(|(u, _)| u.clone()).collect();
    let input = harness.input("User Principal Name", &names);
    let mut config = harness.config(&input);
    config.breaker = breaker;
    config.concurrency = 4;
    config.mode = Mode {
        app_id: Some(APP.into()),
        ..mode
    };
    let summary = harness.run(&config).await;
    (harness, summary)
}

#[tokio::test]
async fn a_dry_run_reports_who_is_behind_and_sends_no_post() {
    let users = fleet(30);
    let (tenant, ids) = tenant(&borrowed(&users));
    let mut sim = SimConfig {
        tenant,
        ..SimConfig::default()
    };
    sim.fleet.insert(&user(4), Behaviour::forbidden());
    let harness = Harness::start(sim).await;
    let mut rows = pairs(&users, &ids);
    // Another user's installation id: Graph answers 404 under this user.
    rows.push(format!("stranger@contoso.com,{}", ids[&user(1)]));
    let input = harness.input("userPrincipalName,installationId", &rows);
    let mut config = harness.config(&input);
    config.mode = Mode {
        dry_run: true,
        ..Mode::default()
    };

    let summary = harness.run(&config).await;

    let books = harness.sim.books();
    assert_eq!(
        books.upgrade_calls + books.installs,
        0,
        "a dry run writes nothing"
    );
    assert_eq!(books.catalog_reads, 1, "the catalog is read once per app");
    let report = by_line(&read_report(&harness.report_path()));
    assert_eq!(report.len(), 31);
    for (i, (name, version)) in users.iter().enumerate() {
        let row = &report[&(i as u64 + 2)];
        assert_eq!(&row["user"], name);
        if i == 4 {
            assert_eq!(row["outcome"], "forbidden");
            continue;
        }
        let expected = match *version == Some("1.10.0") {
            true => "up_to_date",
            false => "would_upgrade",
        };
        assert_eq!(row["outcome"], expected, "{row:?}");
        assert_eq!(row["installed_version"], version.unwrap());
        assert_eq!(row["latest_version"], "1.10.0");
        assert_eq!(row["app_id"].to_lowercase(), APP);
    }
    assert_eq!(report[&32]["outcome"], "not_found");
    assert!(report[&32]["error_message"].starts_with("reading the installation"));

    assert_eq!(summary.of(Outcome::WouldUpgrade), 19);
    assert_eq!(summary.of(Outcome::UpToDate), 10);
    assert_eq!(summary.behind.get("1.9.2"), Some(&19));
    assert!(
        summary.to_string().contains("behind         19 users"),
        "{summary}"
    );
}

#[tokio::test]
async fn only_outdated_upgrades_only_the_users_who_are_behind() {
    let users = fleet(60);
    let (tenant, ids) = tenant(&borrowed(&users));
    let harness = Harness::start(SimConfig {
        tenant,
        ..SimConfig::default()
    })
    .await;
    let input = harness.input("upn,installationId", &pairs(&users, &ids));
    let mut config = harness.config(&input);
    config.mode = Mode {
        only_outdated: true,
        ..Mode::default()
    };

    let summary = harness.run(&config).await;

    let books = harness.sim.books();
    for (name, version) in &users {
        let calls = books.calls_for(name, &ids[name]);
        let behind = *version == Some("1.9.2");
        assert_eq!(calls, behind as u64, "{name} on {version:?}");
    }
    assert_eq!(books.upgrade_calls, 40);
    assert_eq!(
        books.catalog_reads, 1,
        "60 rows, 16 in flight, one catalog read"
    );
    assert_eq!(summary.of(Outcome::Upgraded), 40);
    assert_eq!(summary.of(Outcome::UpToDate), 20);
    assert!(summary.all_succeeded(), "{summary}");
    let report = read_report(&harness.report_path());
    let upgraded = report.iter().find(|r| r["outcome"] == "upgraded").unwrap();
    assert_eq!(upgraded["installed_version"], "1.9.2");
    assert_eq!(upgraded["latest_version"], "1.10.0");
    assert_eq!(upgraded["http_status"], "204");
    assert_eq!(
        upgraded["attempts"], "2",
        "one read (the catalog is shared), one upgrade"
    );
}

#[tokio::test]
async fn by_app_id_each_users_installation_is_found_across_pages() {
    let mut users = fleet(12);
    users[5].1 = None;
    users[7].1 = None;
    let ids = tenant(&borrowed(&users)).1;
    // Graph's rough edge: an empty first page with a next link.
    let sim = SimConfig {
        page_size: 1,
        empty_first_page: true,
        ..SimConfig::default()
    };
    let (harness, summary) = by_app_id(&users, sim, Mode::default(), 50).await;

    let books = harness.sim.books();
    assert!(
        books.installed_app_lists >= 24,
        "every lookup followed the next link past the empty first page: {}",
        books.installed_app_lists
    );
    let report = by_line(&read_report(&harness.report_path()));
    for (i, (name, version)) in users.iter().enumerate() {
        let row = &report[&(i as u64 + 2)];
        match version {
            Some(_) => {
                assert_eq!(row["outcome"], "upgraded", "{row:?}");
                assert_eq!(
                    row["installation"], ids[name],
                    "the app's id, not another's"
                );
                assert_eq!(books.calls_for(name, &ids[name]), 1);
            }
            None => {
                assert_eq!(row["outcome"], "not_installed", "{row:?}");
                assert_eq!(row["installation"], "");
            }
        }
        assert_eq!(row["app_id"], APP);
    }
    assert_eq!(books.upgrade_calls, 10);
    assert_eq!(summary.of(Outcome::NotInstalled), 2);
    assert!(!summary.all_succeeded());
}

#[tokio::test]
async fn install_missing_installs_for_users_who_lack_the_app_and_audits_the_rest() {
    let mut users = fleet(9);
    for lacking in [1, 2, 6] {
        users[lacking].1 = None;
    }
    let mode = Mode {
        install_missing: true,
        only_outdated: true,
        ..Mode::default()
    };
    let (harness, summary) = by_app_id(&users, SimConfig::default(), mode, 50).await;

    let books = harness.sim.books();
    assert_eq!((books.installs, books.installed), (3, 3));
    assert_eq!(summary.of(Outcome::Installed), 3);
    // Of the six who had it, users 0 and 3 were current and 4, 5, 7, 8 behind.
    assert_eq!(summary.of(Outcome::UpToDate), 2);
    assert_eq!(summary.of(Outcome::Upgraded), 4);
    assert_eq!(books.upgrade_calls, 4);
    assert!(summary.all_succeeded(), "{summary}");
    let report = by_line(&read_report(&harness.report_path()));
    let installed = &report[&3];
    assert_eq!(installed["outcome"], "installed");
    assert_eq!(installed["http_status"], "201");
    assert!(
        !installed["installation"].is_empty(),
        "the new installation is named"
    );
    assert_eq!(installed["installed_version"], "1.10.0");
    assert_eq!(installed["latest_version"], "1.10.0");
}

#[tokio::test]
async fn only_self_permissions_stop_the_run_instead_of_reporting_everyone_not_installed() {
    let users = fleet(40);
    let sim = SimConfig {
        self_permissions_only: true,
        ..SimConfig::default()
    };
    let (harness, summary) = by_app_id(&users, sim, Mode::default(), 10).await;

    let Some(Stopped::NothingVisible(why)) = &summary.stopped else {
        panic!("expected the run to stop: {summary}");
    };
    assert!(
        why.contains("TeamsAppInstallation.ReadWriteForUser.All"),
        "{why}"
    );
    assert!(why.contains("Self"), "{why}");
    let report = read_report(&harness.report_path());
    assert!(
        report.iter().all(|r| r["outcome"] != "not_installed"),
        "rows Graph may have hid the app from are left for the resume"
    );
    assert!(
        harness.sim.books().installed_app_lists < 40,
        "the run stopped early"
    );
}

#[tokio::test]
async fn a_few_users_without_the_app_are_simply_not_installed() {
    let users: Vec<(String, Option<&str>)> = (0..3).map(|i| (user(i), None)).collect();
    let (harness, summary) = by_app_id(&users, SimConfig::default(), Mode::default(), 50).await;

    assert_eq!(summary.stopped, None);
    assert_eq!(summary.of(Outcome::NotInstalled), 3);
    assert_eq!(read_report(&harness.report_path()).len(), 3);
}
