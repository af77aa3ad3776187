//! The circuit breaker: when the same failure that is not about one user
//! hits many rows in a row, the run stops instead of burning the fleet. And
//! its kin for `--app-id`: a fleet where Graph shows nobody the app.

use crate::report::{Outcome, RowResult};
use crate::stop::Stopped;

/// A guard on the stream of finished rows: it may hold rows back while a
/// pattern that is not about single users forms, and drop them when it
/// shows, so that the resume sends them again once the cause is fixed.
pub trait Hold: Send {
    /// Take one finished row; returns the rows that may go on now and,
    /// once the pattern shows, why the run should stop.
    fn observe(&mut self, row: RowResult) -> (Vec<RowResult>, Option<String>);

    /// The rows still held when the run ends.
    fn release(&mut self) -> Vec<RowResult>;

    /// The stop that `why`, as `observe` gave it, means.
    fn stop(&self, why: String) -> Stopped;
}

/// Counts rows in a row (in finish order) that failed the same way. The
/// rows of a streak are held back until it breaks; when it opens, they are
/// dropped, so that the resume sends them again once the cause is fixed,
/// instead of finding them settled as `forbidden` or `rejected`.
pub struct Breaker {
    threshold: usize,
    streak: Vec<RowResult>,
    signature: Option<String>,
    /// The signature that opened it: rows still finishing that fail the
    /// same way are dropped too.
    opened: Option<String>,
}

impl Breaker {
    /// A breaker that opens after `threshold` identical failures in a row;
    /// 0 never opens.
    pub fn new(threshold: u32) -> Breaker {
        Breaker {
            threshold: threshold as usize,
            streak: Vec::new(),
            signature: None,
            opened: None,
        }
    }
}

impl Hold for Breaker {
    fn observe(&mut self, row: RowResult) -> (Vec<RowResult>, Option<String>) {
        let signature = match row.outcome {
            Outcome::Forbidden | Outcome::Unauthorized | Outcome::Rejected | Outcome::Failed
                if self.threshold > 0 =>
            {
                signature_of(&row)
            }
            // Per-user answers, pacing, and rows never sent say nothing
            // about the tenant as a whole; they neither count nor break it.
            Outcome::NotFound
            | Outcome::NotInstalled
            | Outcome::Throttled
            | Outcome::InvalidInput
            | Outcome::Duplicate => return (vec![row], None),
            _ if row.outcome.is_success() => {
                self.signature = None;
                let mut rows = std::mem::take(&mut self.streak);
                rows.push(row);
                return (rows, None);
            }
            _ => return (vec![row], None),
        };
        if self.opened.as_ref() == Some(&signature) {
            return (Vec::new(), None);
        }
        let mut rows = Vec::new();
        if self.signature.as_ref() != Some(&signature) {
            rows = std::mem::take(&mut self.streak);
            self.signature = Some(signature.clone());
        }
        let outcome = row.outcome;
        let why = hint(&row);
        self.streak.push(row);
        if self.streak.len() < self.threshold {
            return (rows, None);
        }
        self.streak.clear();
        self.signature = None;
        let why = format!(
            "the last {} rows all ended {outcome} ({signature}). That is not about single \
             users: {why} Fix it, then resume: those rows were left out of the report, so the \
             resume sends them again, with the rows not yet tried.",
            self.threshold,
        );
        self.opened = Some(signature);
        (rows, Some(why))
    }

    fn release(&mut self) -> Vec<RowResult> {
        std::mem::take(&mut self.streak)
    }

    fn stop(&self, why: String) -> Stopped {
        Stopped::Breaker(why)
    }
}

/// With only the "Self" permissions, Graph lists no installation of any
/// other app, so every user looks as if they lacked it. Until a row shows an
/// installation, rows that ended `not_installed` are held back; when
/// `threshold` of them pile up, the run stops and they are dropped, to be
/// read again by the resume once the permission is fixed.
pub struct EmptyLists {
    threshold: usize,
    app_id: String,
    permissions: &'static str,
    held: Vec<RowResult>,
    state: Guard,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Guard {
    /// No row has shown an installation yet.
    Watching,
    /// One has, or the guard was never armed: every row passes.
    Passing,
    /// The pattern showed and the run stops: rows still finishing that
    /// list nothing are dropped too.
    Opened,
}

impl EmptyLists {
    /// A guard for a run looking up `app_id` (none: nothing to guard);
    /// `threshold` 0 never opens.
    pub fn new(app_id: Option<&str>, threshold: u32, permissions: &'static str) -> EmptyLists {
        EmptyLists {
            threshold: threshold as usize,
            app_id: app_id.unwrap_or_default().to_owned(),
            permissions,
            held: Vec::new(),
            state: match app_id.is_none() || threshold == 0 {
                true => Guard::Passing,
                false => Guard::Watching,
            },
        }
    }

    fn why(&self) -> String {
        format!(
            "the first {} users all list no installation of app {}. That is what Graph shows \
             an app granted only the \"Self\" permissions (such as \
             TeamsAppInstallation.ReadWriteSelfForUser.All): other apps' installations are \
             hidden from it. Grant the application permission {} with admin consent, then \
             resume; those rows were not written to the report. If the app really is \
             installed for none of them, resume with --install-missing, or with --breaker 0 \
             to report them not_installed.",
            self.threshold, self.app_id, self.permissions
        )
    }
}

impl Hold for EmptyLists {
    fn observe(&mut self, row: RowResult) -> (Vec<RowResult>, Option<String>) {
        let lacking = row.outcome == Outcome::NotInstalled;
        match self.state {
            Guard::Passing => return (vec![row], None),
            Guard::Opened if lacking => return (Vec::new(), None),
            Guard::Opened => return (vec![row], None),
            Guard::Watching => {}
        }
        if lacking {
            self.held.push(row);
            if self.held.len() < self.threshold {
                return (Vec::new(), None);
            }
            self.held.clear();
            self.state = Guard::Opened;
            return (Vec::new(), Some(self.why()));
        }
        let shows_one = !row.installation.is_empty() || row.outcome == Outcome::Installed;
        if !shows_one {
            return (vec![row], None);
        }
        self.state = Guard::Passing;
        let mut rows = std::mem::take(&mut self.held);
        rows.push(row);
        (rows, None)
    }

    fn release(&mut self) -> Vec<RowResult> {
        std::mem::take(&mut self.held)
    }

    fn stop(&self, why: String) -> Stopped {
        Stopped::NothingVisible(why)
    }
}

fn signature_of(row: &RowResult) -> String {
    let status = row
        .http_status
        .map_or_else(|| "no answer".to_owned(), |s| format!("HTTP {s}"));
    let code = row.error_code.as_deref().unwrap_or("");
    let message = row.error_message.as_deref().unwrap_or("");
    format!("{status} {code}: {message}").trim().to_owned()
}

fn hint(row: &RowResult) -> &'static str {
    match (row.outcome, row.http_status) {
        (Outcome::Forbidden, _) => {
            "check that the app has the application permission \
             TeamsAppInstallation.ReadWriteForUser.All with admin consent; a 403 UnknownError \
             on every call usually means a Microsoft service incident (see the Microsoft 365 \
             service health page)."
        }
        (Outcome::Unauthorized, _) => "check the credentials and the tenant.",
        (_, None) => "check the network and --graph-url (DNS, proxy, firewall).",
        (Outcome::Rejected, _) => {
            "Graph refuses the request itself: check --graph-url (the root only, such as \
             https://graph.microsoft.com, without /v1.0) and --api-version."
        }
        _ => "Graph itself is failing; try again later.",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(outcome: Outcome, status: Option<u16>, message: &str) -> RowResult {
        let mut row = RowResult::new(2, "u".into(), "i".into());
        row.outcome = outcome;
        row.http_status = status;
        row.attempts = 1;
        row.error_code = Some("Forbidden".into());
        row.error_message = Some(message.into());
        row
    }

    fn looked_up(outcome: Outcome, installation: &str) -> RowResult {
        let mut row = row(outcome, Some(200), "");
        row.installation = installation.into();
        row
    }

    #[test]
    fn empty_lists_for_every_user_stop_the_run_and_drop_the_rows() {
        let mut guard = EmptyLists::new(Some("app"), 3, "P");
        let lacking = looked_up(Outcome::NotInstalled, "");
        assert_eq!(guard.observe(lacking.clone()), (vec![], None));
        let gone = looked_up(Outcome::NotFound, "");
        assert_eq!(
            guard.observe(gone.clone()).0,
            std::slice::from_ref(&gone),
            "per-user answers pass"
        );
        assert_eq!(guard.observe(lacking.clone()), (vec![], None));
        let (written, why) = guard.observe(lacking.clone());
        assert!(written.is_empty());
        assert!(why.unwrap().contains("\"Self\" permissions"));
        assert!(guard.release().is_empty());
        let late = guard.observe(lacking.clone());
        assert_eq!(
            late,
            (vec![], None),
            "rows still in flight are dropped, once told"
        );
        assert_eq!(guard.observe(gone.clone()).0, [gone]);
    }

    #[test]
    fn one_installation_seen_releases_the_held_rows() {
        let mut guard = EmptyLists::new(Some("app"), 3, "P");
        let lacking = looked_up(Outcome::NotInstalled, "");
        guard.observe(lacking.clone());
        let found = looked_up(Outcome::Upgraded, "abc=");
        let (written, why) = guard.observe(found.clone());
        assert_eq!((written, why), (vec![lacking.clone(), found], None));
        for _ in 0..5 {
            assert_eq!(guard.observe(lacking.clone()).0.len(), 1);
        }
        let mut unarmed = EmptyLists::new(None, 3, "P");
        assert_eq!(unarmed.observe(lacking.clone()).0.len(), 1);
        let mut never = EmptyLists::new(Some("app"), 0, "P");
        assert_eq!(never.observe(lacking).0.len(), 1);
    }

    #[test]
    fn the_same_tenant_wide_failure_opens_it_at_the_threshold() {
        let mut breaker = Breaker::new(3);
        let denied = row(Outcome::Forbidden, Some(403), "Missing scope permissions");
        assert_eq!(breaker.observe(denied.clone()), (vec![], None));
        assert_eq!(breaker.observe(denied.clone()), (vec![], None));
        let (written, why) = breaker.observe(denied.clone());
        assert!(written.is_empty(), "the streak is left for the resume");
        let why = why.unwrap();
        assert!(why.contains("last 3 rows"), "{why}");
        assert!(
            why.contains("TeamsAppInstallation.ReadWriteForUser.All"),
            "{why}"
        );
        assert_eq!(breaker.observe(denied), (vec![], None), "nor the late ones");
        assert!(breaker.release().is_empty());
    }

    #[test]
    fn a_streak_that_breaks_is_written_after_all() {
        let mut breaker = Breaker::new(3);
        let denied = row(Outcome::Forbidden, Some(403), "Missing scope permissions");
        breaker.observe(denied.clone());
        let missing = row(Outcome::NotFound, Some(404), "User not found");
        assert_eq!(breaker.observe(missing.clone()).0, [missing]);
        breaker.observe(denied.clone());
        let upgraded = row(Outcome::Upgraded, Some(204), "");
        let (written, why) = breaker.observe(upgraded.clone());
        assert_eq!(written, [denied.clone(), denied.clone(), upgraded]);
        assert_eq!(why, None);
        breaker.observe(denied.clone());
        assert_eq!(breaker.release(), [denied]);
    }

    #[test]
    fn scattered_per_user_failures_never_open_it() {
        let mut breaker = Breaker::new(3);
        for i in 0..100 {
            let upgraded = row(Outcome::Upgraded, Some(204), "");
            let missing = row(Outcome::NotFound, Some(404), "User not found");
            let unlicensed = row(
                Outcome::Forbidden,
                Some(403),
                &format!("User {i} unlicensed"),
            );
            for r in [
                &upgraded,
                &missing,
                &missing,
                &missing,
                &unlicensed,
                &unlicensed,
            ] {
                assert_eq!(breaker.observe(r.clone()).1, None);
            }
        }
    }

    #[test]
    fn a_success_resets_the_streak_and_zero_disables_it() {
        let mut breaker = Breaker::new(2);
        let refused = row(Outcome::Failed, None, "connection refused");
        breaker.observe(refused.clone());
        breaker.observe(row(Outcome::Upgraded, Some(204), ""));
        assert_eq!(breaker.observe(refused.clone()).1, None);
        let why = breaker.observe(refused.clone()).1.unwrap();
        assert!(why.contains("--graph-url"), "{why}");

        let mut never = Breaker::new(0);
        assert!((0..1000).all(|_| never.observe(refused.clone()) == (vec![refused.clone()], None)));
    }
}
