//! One row's life: the reads and writes its mode asks for, each waiting for
//! its class's pacer and judged by the retry policy, until the row settles.
//! Workers share the pacers, the token cache, the catalog cache and the stop
//! control.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::auth::{AuthError, TokenSource};
use crate::config::Mode;
use crate::graph::{Answer, GraphClient, Request, TransportError};
use crate::input::Row;
use crate::pacing::{Budgets, Pacer, RequestClass};
use crate::progress::Status;
use crate::report::{Outcome, RowResult};
use crate::retry::{judge, Backoff, Step};
use crate::slots::Slots;
use crate::stop::{StopControl, Stopped};
use crate::versions::{self, CatalogPage, Installed, Newest};

/// Pages of one list followed at most: a loop of next links must end.
const MAX_PAGES: usize = 100;

/// Counters the workers bump and the progress bar and summary read.
#[derive(Default)]
pub struct LiveCounts {
    pub calls: AtomicU64,
    pub throttled: AtomicU64,
}

/// What every worker shares.
pub struct Worker {
    pub graph: GraphClient,
    pub auth: TokenSource,
    pub budgets: Budgets,
    pub slots: Slots,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub live: LiveCounts,
    pub control: Arc<StopControl>,
    pub mode: Mode,
    /// The newest published version of each app, once read.
    pub newest: Newest,
}

/// Why a row's steps ended before the last one.
enum Ended {
    /// The run stopped before the row was settled: it stays out of the
    /// report, for a resume to pick up.
    Stopped,
    Settled(Outcome),
}

/// A row being worked on.
struct Job {
    result: RowResult,
    started: Instant,
    /// The one fresh token a row may ask for after a 401 is spent.
    refreshed: bool,
    /// Time spent waiting for Graph's answers, for the in-flight limit.
    network: Duration,
    /// What the row was doing, named in its error message unless that was
    /// the upgrade itself.
    step: Option<&'static str>,
}

impl Worker {
    pub fn status(&self, failures: u64) -> Status {
        let pacer = self.pacer();
        Status {
            failures,
            throttled: self.live.throttled.load(Ordering::Relaxed),
            rate: pacer.rate(),
            held_until: pacer.gate().closed_until(),
        }
    }

    /// The pacer every row goes through: the reads when each row starts with
    /// one, the upgrades otherwise. Its rate is the run's pace in rows.
    pub fn pacer(&self) -> &Pacer {
        let reads_first = self.mode.checks_version() || self.mode.app_id.is_some();
        match reads_first {
            true => self.budgets.of(RequestClass::InstalledAppsRead),
            false => self.budgets.of(RequestClass::InstalledAppsWrite),
        }
    }

    /// Work one row to its end, as the mode says, and say how it ended.
    /// `None` when the run stopped before the row was settled.
    pub async fn process(&self, row: Row) -> Option<RowResult> {
        let mut job = Job {
            result: RowResult::new(row.line, row.user, row.installation),
            started: Instant::now(),
            refreshed: false,
            network: Duration::ZERO,
            step: None,
        };
        let ended = self.steps(&mut job).await;
        if !job.network.is_zero() {
            self.slots.observe(job.network);
        }
        let outcome = match ended {
            Ok(outcome) | Err(Ended::Settled(outcome)) => outcome,
            Err(Ended::Stopped) => return None,
        };
        let mut result = job.result;
        if let (false, Some(step)) = (outcome.is_success(), job.step) {
            let said = result.error_message.take().unwrap_or_default();
            result.error_message = Some(format!("{step}: {said}").trim_end().to_owned());
        }
        result.outcome = outcome;
        result.elapsed = job.started.elapsed();
        Some(result)
    }

    async fn steps(&self, job: &mut Job) -> Result<Outcome, Ended> {
        let installed = match &self.mode.app_id {
            Some(app_id) => match self.find(job, app_id).await? {
                Some(found) => found,
                None if self.mode.install_missing => match self.install(job, app_id).await? {
                    Some(found) => found,
                    None => return self.installed(job, app_id).await,
                },
                None => return Ok(Outcome::NotInstalled),
            },
            None if self.mode.checks_version() => self.read_installation(job).await?,
            None => return self.upgrade(job).await,
        };
        job.result.installation = installed.id;
        if installed.app_id.is_some() {
            job.result.app_id = installed.app_id;
        }
        job.result.installed_version = installed.version;
        if !self.mode.checks_version() {
            return self.upgrade(job).await;
        }

        let Some(app_id) = job.result.app_id.clone() else {
            return Err(refuse(
                job,
                "UnknownApp",
                "Graph did not say which app this installation is of",
            ));
        };
        let Some(newest) = self.newest(job, &app_id).await? else {
            let message = format!(
                "app {app_id} has no published version in the tenant's app catalog, so \
                 whether users are behind cannot be told"
            );
            return Err(refuse(job, "NoPublishedVersion", &message));
        };
        job.result.latest_version = Some(newest.clone());
        job.step = Some("comparing versions");
        let Some(installed) = job.result.installed_version.clone() else {
            return Err(refuse(
                job,
                "UnknownVersion",
                "Graph did not say which version this installation runs",
            ));
        };
        let behind = versions::compare(&installed, &newest).is_lt();
        match (behind, self.mode.dry_run) {
            (false, _) => Ok(Outcome::UpToDate),
            (true, true) => Ok(Outcome::WouldUpgrade),
            (true, false) => self.upgrade(job).await,
        }
    }

    async fn upgrade(&self, job: &mut Job) -> Result<Outcome, Ended> {
        job.step = None;
        let request = self
            .graph
            .target()
            .upgrade(&job.result.user, &job.result.installation);
        let answer = self.call(job, &request).await?;
        Ok(Outcome::from_final_status(answer.status))
    }

    async fn read_installation(&self, job: &mut Job) -> Result<Installed, Ended> {
        job.step = Some("reading the installation");
        let request = self
            .graph
            .target()
            .installation(&job.result.user, &job.result.installation);
        let answer = self.call_ok(job, &request).await?;
        versions::installation(&answer.body).map_err(|err| unreadable(job, err))
    }

    /// The user's installation of `app_id`, following every page.
    async fn find(&self, job: &mut Job, app_id: &str) -> Result<Option<Installed>, Ended> {
        job.step = Some("finding the app's installation");
        job.result.app_id = Some(app_id.to_owned());
        let mut request = self
            .graph
            .target()
            .find_installation(&job.result.user, app_id);
        for _ in 0..MAX_PAGES {
            let answer = self.call_ok(job, &request).await?;
            let (found, next) =
                versions::installation_page(&answer.body).map_err(|err| unreadable(job, err))?;
            // The filter asked for this app only; a Graph that ignored it
            // must still not get another app upgraded.
            let mine = found.into_iter().find(|i| {
                i.app_id
                    .as_deref()
                    .is_none_or(|id| id.eq_ignore_ascii_case(app_id))
            });
            if mine.is_some() {
                return Ok(mine);
            }
            let Some(link) = next else { return Ok(None) };
            request = self.next_page(job, &link, RequestClass::InstalledAppsRead)?;
        }
        Err(too_many_pages(job))
    }

    /// Install `app_id` for the user. `None` when it was installed now;
    /// the installation found when Graph says it is already there (409).
    async fn install(&self, job: &mut Job, app_id: &str) -> Result<Option<Installed>, Ended> {
        job.step = Some("installing the app");
        let request = self.graph.target().install(&job.result.user, app_id);
        let answer = self.call(job, &request).await?;
        match answer.status {
            200..=299 => Ok(None),
            409 => match self.find(job, app_id).await? {
                Some(found) => Ok(Some(found)),
                None => Err(refuse(
                    job,
                    "Conflict",
                    "Graph answered 409 (already installed) to the install, yet lists no \
                     installation of the app for this user",
                )),
            },
            status => Err(Ended::Settled(Outcome::from_final_status(status))),
        }
    }

    /// A row whose user just got the app: the report names the new
    /// installation and its version, which Graph's 201 does not say.
    /// These reads are for the report only: whatever they meet, the row
    /// ended installed.
    async fn installed(&self, job: &mut Job, app_id: &str) -> Result<Outcome, Ended> {
        // The row tells of the install, not of the reads after it.
        let install = job.result.clone();
        let found = self.find(job, app_id).await.ok().flatten();
        let latest = match self.mode.checks_version() && !self.control.is_stopped() {
            true => self.newest(job, app_id).await.ok().flatten(),
            false => None,
        };
        job.result = RowResult {
            attempts: job.result.attempts,
            installation: found.as_ref().map(|f| f.id.clone()).unwrap_or_default(),
            installed_version: found.and_then(|f| f.version),
            latest_version: latest,
            ..install
        };
        Ok(Outcome::Installed)
    }

    /// The newest published version of `app_id`, read from the catalog by
    /// the first row that needs it while the others wait.
    async fn newest(&self, job: &mut Job, app_id: &str) -> Result<Option<String>, Ended> {
        job.step = Some("reading the app catalog");
        let cell = self.newest.cell(app_id);
        let newest = cell
            .get_or_try_init(|| self.read_catalog(job, app_id))
            .await?;
        Ok(newest.clone())
    }

    async fn read_catalog(&self, job: &mut Job, app_id: &str) -> Result<Option<String>, Ended> {
        let mut request = self.graph.target().catalog_app(app_id);
        for _ in 0..MAX_PAGES {
            let answer = self.call_ok(job, &request).await?;
            let page =
                versions::catalog_page(&answer.body, app_id).map_err(|err| unreadable(job, err))?;
            let link = match page {
                CatalogPage::Found(newest) => return Ok(newest),
                CatalogPage::NotHere(None) => return Ok(None),
                CatalogPage::NotHere(Some(link)) => link,
            };
            request = self.next_page(job, &link, RequestClass::CatalogRead)?;
        }
        Err(too_many_pages(job))
    }

    fn next_page(&self, job: &mut Job, link: &str, class: RequestClass) -> Result<Request, Ended> {
        let target = self.graph.target();
        target.next_page(link, class).ok_or_else(|| {
            let message = format!(
                "Graph's @odata.nextLink {link:?} leads away from {}; fleetup does not send \
                 the token there",
                target.root
            );
            refuse(job, "ForeignNextLink", &message)
        })
    }

    /// Send `request` and settle the row unless Graph answered 2xx.
    async fn call_ok(&self, job: &mut Job, request: &Request) -> Result<Answer, Ended> {
        let answer = self.call(job, request).await?;
        match answer.status {
            200..=299 => Ok(answer),
            status => Err(Ended::Settled(Outcome::from_final_status(status))),
        }
    }

    /// Send `request` until Graph gives a final answer, retrying as the
    /// policy says. Throttling, failures that outlast the attempts, and
    /// broken authentication settle the row.
    async fn call(&self, job: &mut Job, request: &Request) -> Result<Answer, Ended> {
        let pacer = self.budgets.of(request.class);
        let mut attempts = 0;
        loop {
            tokio::select! {
                _ = pacer.ready() => {}
                _ = self.control.stopped() => return Err(Ended::Stopped),
            }
            if self.control.is_stopped() {
                return Err(Ended::Stopped);
            }
            // Taken after the pacer's wait, so that a token never ages in a
            // queue before it is used.
            let token = match self.auth.token().await {
                Ok(token) => token,
                Err(err) => return Err(self.auth_failed(job, err)),
            };
            let client_request_id = uuid::Uuid::new_v4().to_string();
            let sent_at = Instant::now();
            attempts += 1;
            job.result.attempts += 1;
            self.live.calls.fetch_add(1, Ordering::Relaxed);
            let attempt = self
                .graph
                .send(request, token.value.expose(), &client_request_id)
                .await;
            record_attempt(&mut job.result, &attempt, client_request_id);
            let throttled = attempt.as_ref().is_ok_and(|a| a.status == 429);
            if attempt.is_ok() {
                job.network += sent_at.elapsed();
            }
            if !throttled {
                pacer.answered();
            }

            let refreshable = !job.refreshed && self.auth.can_refresh();
            match judge(&attempt, attempts, self.max_attempts, !refreshable) {
                Step::Done(Outcome::Unauthorized) => {
                    // A token that was just replaced, or cannot be, was
                    // refused: every other row would be refused too.
                    let hint = self.unauthorized_hint(&job.result);
                    self.control.stop(Stopped::AuthBroken(hint));
                    return Err(Ended::Settled(Outcome::Unauthorized));
                }
                Step::Done(outcome @ (Outcome::Throttled | Outcome::Failed)) => {
                    return Err(Ended::Settled(outcome))
                }
                Step::Done(outcome) => {
                    return attempt.map_err(|_| Ended::Settled(outcome));
                }
                Step::Refresh => {
                    job.refreshed = true;
                    self.auth.invalidate(&token).await;
                }
                Step::Retry { hold_run, wait } => {
                    let wait =
                        wait.unwrap_or_else(|| self.backoff.delay(attempts, fastrand::f64()));
                    if throttled {
                        self.live.throttled.fetch_add(1, Ordering::Relaxed);
                        pacer.throttled(sent_at, wait);
                    } else if hold_run {
                        pacer.hold_for(wait);
                    } else {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.control.stopped() => return Err(Ended::Stopped),
                        }
                    }
                }
            }
        }
    }

    fn unauthorized_hint(&self, result: &RowResult) -> String {
        let graph_said = format!(
            "Graph answered 401 {}: {}",
            result.error_code.as_deref().unwrap_or(""),
            result
                .error_message
                .as_deref()
                .unwrap_or("")
                .trim_end_matches('.')
        );
        if let Some(path) = self.auth.token_file() {
            return format!(
                "{graph_said}, even after {} was read again. Put a fresh token for this Graph \
                 and tenant in it (tokens last about an hour), from an app with {} \
                 (application permission, admin consent), then resume.",
                path.display(),
                self.mode.permissions()
            );
        }
        match self.auth.can_refresh() {
            true => format!(
                "{graph_said}, even to a freshly issued token. Check that the token is for this \
                 Graph (--graph-url matches --authority-url's cloud) and the right tenant, \
                 and that the app has {} with admin consent.",
                self.mode.permissions()
            ),
            false => format!(
                "{graph_said}. The token in GRAPH_TOKEN has probably expired (tokens last about \
                 an hour): get a fresh one, or use --tenant/--client-id so fleetup can renew it, \
                 then resume."
            ),
        }
    }

    fn auth_failed(&self, job: &mut Job, err: AuthError) -> Ended {
        self.control.stop(Stopped::AuthBroken(err.to_string()));
        if job.result.attempts == 0 {
            // Never sent: leave the row for the resume.
            return Ended::Stopped;
        }
        job.result.error_code = Some("token_unavailable".into());
        job.result.error_message = Some(err.to_string());
        Ended::Settled(Outcome::Unauthorized)
    }
}

/// Settle a row for a reason of fleetup's own, after a 2xx that cannot be
/// acted on.
fn refuse(job: &mut Job, code: &str, message: &str) -> Ended {
    job.result.error_code = Some(code.to_owned());
    job.result.error_message = Some(message.to_owned());
    Ended::Settled(Outcome::Rejected)
}

fn unreadable(job: &mut Job, err: versions::BodyError) -> Ended {
    refuse(job, "UnreadableAnswer", &err.to_string())
}

fn too_many_pages(job: &mut Job) -> Ended {
    let message = format!("the list ran past {MAX_PAGES} pages without an end");
    refuse(job, "EndlessList", &message)
}

fn record_attempt(
    result: &mut RowResult,
    attempt: &Result<Answer, TransportError>,
    client_request_id: String,
) {
    result.client_request_id = Some(client_request_id);
    match attempt {
        Ok(answer) => {
            result.http_status = Some(answer.status);
            result.request_id = answer.request_id.clone();
            result.error_code = answer.error_code.clone();
            result.error_message = answer.error_message.clone();
        }
        Err(err) => {
            result.http_status = None;
            result.request_id = None;
            let code = match (err.local, err.timed_out) {
                (true, _) => "invalid_request",
                (false, true) => "timeout",
                (false, false) => "connection_error",
            };
            result.error_code = Some(code.to_owned());
            result.error_message = Some(err.message.clone());
        }
    }
}
