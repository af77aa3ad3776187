//! The checked run configuration, derived from the raw command line and the
//! environment. The engine only ever sees a `RunConfig`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::auth::{bare_token, Credentials, Secret};
use crate::cli::{AuthArgs, GraphArgs, JournalArgs, ModeArgs};
use crate::graph::GraphTarget;
use crate::input::{looks_like_guid, Needs};
use crate::retry::Backoff;

/// Environment variable holding a bearer token.
pub const TOKEN_ENV: &str = "GRAPH_TOKEN";
/// Environment variable holding the client secret.
pub const SECRET_ENV: &str = "FLEETUP_CLIENT_SECRET";

/// Graph roots where personal-scope app upgrade cannot work app-only.
const UNSUPPORTED_CLOUDS: &[(&str, &str)] = &[
    ("graph.microsoft.us", "GCC High"),
    ("dod-graph.microsoft.us", "DoD"),
    ("microsoftgraph.chinacloudapi.cn", "the China cloud"),
];

/// Everything a run needs, checked.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub input: PathBuf,
    /// The input's field delimiter; `None` to sniff it from the header.
    pub delimiter: Option<u8>,
    pub report: PathBuf,
    pub target: GraphTarget,
    pub credentials: Credentials,
    pub rate: f64,
    pub burst: u32,
    /// Calls in flight: the fixed limit, or where the adaptive one starts.
    pub concurrency: usize,
    /// Follow Graph's latency instead of holding `concurrency` fixed.
    pub adaptive_concurrency: bool,
    /// GET calls a second, per read class (audits and lookups).
    pub read_rate: f64,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub backoff: Backoff,
    pub progress: bool,
    /// Append to `report`, an earlier report, skipping the lines it settles.
    pub resume: bool,
    /// With `resume`: send again the rows that ended throttled, failed or
    /// unauthorized.
    pub retry_failed: bool,
    /// Identical failures in a row that stop the run (0: never).
    pub breaker: u32,
    pub mode: Mode,
}

/// What is done to each row, checked.
#[derive(Clone, Debug, Default)]
pub struct Mode {
    /// No writes: only read versions and report.
    pub dry_run: bool,
    /// Read the version first; upgrade only when behind.
    pub only_outdated: bool,
    /// Look each user's installation of this catalog app up.
    pub app_id: Option<String>,
    /// With `app_id`: install the app where it is missing.
    pub install_missing: bool,
}

impl Mode {
    /// Whether each row's installed version is compared with the newest.
    pub fn checks_version(&self) -> bool {
        self.dry_run || self.only_outdated
    }

    /// The application permissions this mode needs, as the admin grants them.
    pub fn permissions(&self) -> &'static str {
        match (self.dry_run, self.checks_version()) {
            (true, _) => "TeamsAppInstallation.ReadForUser.All and AppCatalog.Read.All",
            (false, true) => "TeamsAppInstallation.ReadWriteForUser.All and AppCatalog.Read.All",
            (false, false) => "TeamsAppInstallation.ReadWriteForUser.All",
        }
    }

    /// The input columns this mode reads.
    pub fn needs(&self) -> Needs {
        match self.app_id {
            Some(_) => Needs::User,
            None => Needs::UserAndInstallation,
        }
    }

    /// Check the raw flags.
    pub fn derive(args: &ModeArgs) -> Result<Mode, UsageError> {
        let app_id = args.app_id.as_deref().map(app_id).transpose()?;
        if args.install_missing && args.dry_run {
            return Err(usage(
                "--install-missing writes; it cannot go with --dry-run",
            ));
        }
        if args.install_missing && app_id.is_none() {
            return Err(usage(
                "--install-missing needs --app-id: which app to install",
            ));
        }
        Ok(Mode {
            dry_run: args.dry_run,
            only_outdated: args.only_outdated,
            app_id,
            install_missing: args.install_missing,
        })
    }
}

/// A catalog app id: a GUID, as the Teams admin center shows it ("App ID").
pub fn app_id(raw: &str) -> Result<String, UsageError> {
    let id = raw.trim().trim_start_matches('{').trim_end_matches('}');
    if !looks_like_guid(id) {
        return Err(usage(format!(
            "--app-id {raw:?} is not an app's catalog id. It is a GUID such as \
             5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11: the \"App ID\" the Teams admin center shows \
             for the app, or `id` of GET /appCatalogs/teamsApps"
        )));
    }
    Ok(id.to_ascii_lowercase())
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

impl RunConfig {
    /// Check the raw values and derive the run's configuration. `env` reads
    /// an environment variable (a seam for tests).
    #[allow(clippy::too_many_arguments)] // one per group of flags, each checked here
    pub fn derive(
        input: PathBuf,
        report: Option<PathBuf>,
        delimiter: Option<u8>,
        graph: &GraphArgs,
        auth: &AuthArgs,
        journal: &JournalArgs,
        mode: &ModeArgs,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<RunConfig, UsageError> {
        let mode = Mode::derive(mode)?;
        let target = graph_target(&graph.graph_url, &graph.api_version)?;
        if !(graph.rate.is_finite() && graph.rate > 0.0) {
            return Err(usage(
                "--rate must be a positive number of calls per second",
            ));
        }
        if !(graph.read_rate.is_finite() && graph.read_rate > 0.0) {
            return Err(usage(
                "--read-rate must be a positive number of calls per second",
            ));
        }
        if graph.max_attempts == 0 {
            return Err(usage("--max-attempts must be at least 1"));
        }
        if graph.concurrency == Some(0) {
            return Err(usage("--concurrency must be at least 1"));
        }
        if graph.timeout.is_zero() {
            return Err(usage("--timeout must be longer than zero"));
        }
        let credentials = credentials(auth, &target, env)?;
        let report = match (&journal.resume, report) {
            (Some(earlier), _) => earlier.clone(),
            (None, Some(report)) => report,
            (None, None) => unused(default_report(&input, SystemTime::now())),
        };
        if graph.rate > 30.0 {
            tracing::warn!(
                "--rate {} is above Graph's 30 upgrade calls a second per tenant; \
                 fleetup will slow down on the first 429s",
                graph.rate
            );
        }

        Ok(RunConfig {
            input,
            delimiter,
            report,
            target,
            credentials,
            rate: graph.rate,
            burst: burst_for(graph.rate),
            concurrency: graph
                .concurrency
                .unwrap_or_else(|| ((graph.rate * 2.0).ceil() as usize).clamp(4, 256)),
            adaptive_concurrency: graph.concurrency.is_none(),
            read_rate: graph.read_rate,
            max_attempts: graph.max_attempts,
            timeout: graph.timeout,
            backoff: Backoff::default(),
            progress: !graph.no_progress,
            resume: journal.resume.is_some(),
            retry_failed: journal.retry_failed,
            breaker: journal.breaker,
            mode,
        })
    }
}

/// Calls that may leave at once at the start: half a second's worth, and
/// never more than half Graph's per-tenant second (30), which a `--rate` set
/// too high would otherwise spend in 429s before the first answer. Half,
/// because the first calls open their connections and reach Graph spread
/// out, while its budget is already full and refills no further.
pub fn burst_for(rate: f64) -> u32 {
    (rate.min(30.0) / 2.0).ceil().max(1.0) as u32
}

/// Tokens and secrets travel only over https, or plain http to loopback (a
/// local simulator).
fn check_url(flag: &str, url: &str) -> Result<(), UsageError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| usage(format!("{flag} {url:?} is not a URL: {err}")))?;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    let loopback = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(usage(format!(
            "{flag} {url:?} must be https (plain http only for a local simulator), \
             so that tokens and secrets never travel in clear"
        ))),
    }
}

fn graph_target(url: &str, version: &str) -> Result<GraphTarget, UsageError> {
    if version != "v1.0" && version != "beta" {
        return Err(usage(format!(
            "--api-version must be v1.0 or beta, not {version:?}"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| usage(format!("--graph-url {url:?} is not a URL: {err}")))?;
    let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
    if let Some((_, cloud)) = UNSUPPORTED_CLOUDS.iter().find(|(h, _)| *h == host) {
        return Err(usage(format!(
            "Graph does not support upgrading personal-scope apps app-only in {cloud} \
             ({host}); fleetup cannot run there"
        )));
    }
    check_url("--graph-url", url)?;
    let last = parsed
        .path_segments()
        .and_then(|mut s| s.rfind(|s| !s.is_empty()));
    if let Some(version) = last.filter(|s| matches!(*s, "v1.0" | "beta")) {
        return Err(usage(format!(
            "--graph-url {url:?} names the API version; give Graph's root only, such as \
             https://graph.microsoft.com (the version goes in --api-version, now {version:?})"
        )));
    }
    Ok(GraphTarget {
        root: url.trim_end_matches('/').to_owned(),
        version: version.to_owned(),
    })
}

/// Explicit flags win over `GRAPH_TOKEN`, so that a token left in the shell
/// from another task never silently replaces the credentials asked for.
fn credentials(
    auth: &AuthArgs,
    target: &GraphTarget,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, UsageError> {
    let env_token = env(TOKEN_ENV).filter(|t| !t.trim().is_empty());
    let explicit = auth.token_file.is_some() || auth.tenant.is_some() || auth.client_id.is_some();
    if env_token.is_some() && explicit {
        tracing::warn!("{TOKEN_ENV} is set but ignored: the command line names other credentials");
    }
    if let Some(path) = &auth.token_file {
        return Ok(Credentials::TokenFile(path.clone()));
    }
    match (&auth.tenant, &auth.client_id, env_token) {
        (Some(tenant), Some(client_id), _) => {
            let secret = env(SECRET_ENV).filter(|s| !s.is_empty()).ok_or_else(|| {
                usage(format!(
                    "--tenant and --client-id need the client secret in {SECRET_ENV}"
                ))
            })?;
            check_url("--authority-url", &auth.authority_url)?;
            Ok(Credentials::ClientSecret {
                authority: auth.authority_url.trim_end_matches('/').to_owned(),
                tenant: tenant.clone(),
                client_id: client_id.clone(),
                secret: Secret::new(secret),
                scope: format!("{}/.default", target.root),
            })
        }
        (Some(_), None, _) | (None, Some(_), _) => Err(usage(
            "the client-credentials flow needs both --tenant and --client-id",
        )),
        (None, None, Some(token)) => Ok(Credentials::EnvToken(Secret::new(bare_token(&token)))),
        (None, None, None) => Err(usage(format!(
            "no credentials: pass --tenant and --client-id with the secret in {SECRET_ENV}, \
             pass --token-file, or set {TOKEN_ENV}. The app needs the application \
             permission TeamsAppInstallation.ReadWriteForUser.All"
        ))),
    }
}

/// `path`, or the first of `path-2`, `path-3`… that does not exist yet, so
/// that two runs started in the same second do not collide.
fn unused(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    let stem = path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    (2..)
        .map(|n| path.with_file_name(format!("{stem}-{n}.csv")))
        .find(|candidate| !candidate.exists())
        .expect("some suffix is free")
}

/// `reports/<input stem>-<UTC time>.csv`, e.g. `reports/fleet-20261203T191500Z.csv`.
pub fn default_report(input: &Path, now: SystemTime) -> PathBuf {
    let stem = input
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "run".into());
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(|c| !matches!(c, '-' | ':'))
        .collect();
    Path::new("reports").join(format!("{stem}-{stamp}.csv"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph_args(url: &str) -> GraphArgs {
        GraphArgs {
            graph_url: url.into(),
            api_version: "v1.0".into(),
            rate: 30.0,
            read_rate: 30.0,
            concurrency: None,
            max_attempts: 8,
            timeout: Duration::from_secs(30),
            no_progress: true,
        }
    }

    fn auth_args() -> AuthArgs {
        AuthArgs {
            token_file: None,
            tenant: None,
            client_id: None,
            authority_url: "https://login.microsoftonline.com".into(),
        }
    }

    fn derive(url: &str, auth: &AuthArgs, token: Option<&str>) -> Result<RunConfig, UsageError> {
        let token = token.map(String::from);
        let journal = JournalArgs {
            resume: None,
            retry_failed: false,
            breaker: 50,
        };
        RunConfig::derive(
            "in/fleet.csv".into(),
            None,
            None,
            &graph_args(url),
            auth,
            &journal,
            &ModeArgs::default(),
            |name| (name == TOKEN_ENV).then(|| token.clone()).flatten(),
        )
    }

    #[test]
    fn the_default_report_is_named_after_the_input_and_utc_time() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_325_300);
        let path = default_report(Path::new("in/fleet.csv"), now);
        assert_eq!(path, Path::new("reports/fleet-20261203T191500Z.csv"));
    }

    #[test]
    fn defaults_hold_the_rate_for_two_second_calls() {
        let config = derive("https://graph.microsoft.com", &auth_args(), Some("t")).unwrap();
        assert_eq!(config.concurrency, 60);
        assert_eq!(config.burst, 15);
        assert_eq!(
            config.target.upgrade_url("u", "i").split('/').nth(3),
            Some("v1.0")
        );
    }

    #[test]
    fn sovereign_clouds_without_personal_scope_support_are_refused_up_front() {
        let err = derive("https://graph.microsoft.us", &auth_args(), Some("t")).unwrap_err();
        assert!(err.0.contains("GCC High"), "{err}");
        let err = derive(
            "https://microsoftgraph.chinacloudapi.cn",
            &auth_args(),
            Some("t"),
        );
        assert!(err.unwrap_err().0.contains("China"));
    }

    #[test]
    fn a_graph_url_with_the_version_in_it_is_refused_before_any_call() {
        let err = derive("https://graph.microsoft.com/v1.0/", &auth_args(), Some("t")).unwrap_err();
        assert!(err.0.contains("--api-version"), "{err}");
        assert!(derive("http://127.0.0.1:8400/", &auth_args(), Some("t")).is_ok());
    }

    #[test]
    fn plain_http_is_only_for_loopback() {
        assert!(derive("http://127.0.0.1:8080", &auth_args(), Some("t")).is_ok());
        let err = derive("http://graph.example.com", &auth_args(), Some("t")).unwrap_err();
        assert!(err.0.contains("https"), "{err}");
    }

    #[test]
    fn missing_credentials_name_every_way_to_give_them() {
        let err = derive("https://graph.microsoft.com", &auth_args(), None).unwrap_err();
        assert!(
            err.0.contains(TOKEN_ENV) && err.0.contains("--token-file"),
            "{err}"
        );
        assert!(
            err.0.contains("TeamsAppInstallation.ReadWriteForUser.All"),
            "{err}"
        );
    }

    #[test]
    fn flags_win_over_a_token_left_in_the_environment() {
        let mut auth = auth_args();
        auth.token_file = Some("token.txt".into());
        let config = derive("https://graph.microsoft.com", &auth, Some("stale")).unwrap();
        assert!(matches!(config.credentials, Credentials::TokenFile(_)));
    }

    #[test]
    fn a_pasted_bearer_prefix_is_dropped() {
        let config = derive(
            "https://graph.microsoft.com",
            &auth_args(),
            Some("Bearer abc"),
        )
        .unwrap();
        let Credentials::EnvToken(token) = config.credentials else {
            panic!("expected the environment token");
        };
        assert_eq!(token.expose(), "abc");
    }

    #[test]
    fn the_secret_never_goes_to_a_plain_http_authority() {
        let mut auth = auth_args();
        auth.tenant = Some("contoso.onmicrosoft.com".into());
        auth.client_id = Some("app".into());
        auth.authority_url = "http://192.168.1.1".into();
        let config = RunConfig::derive(
            "in.csv".into(),
            None,
            None,
            &graph_args("https://graph.microsoft.com"),
            &auth,
            &JournalArgs {
                resume: None,
                retry_failed: false,
                breaker: 50,
            },
            &ModeArgs::default(),
            |name| (name == SECRET_ENV).then(|| "s".to_owned()),
        );
        let err = config.unwrap_err();
        assert!(err.0.contains("--authority-url"), "{err}");
    }

    #[test]
    fn an_app_id_must_be_a_catalog_guid() {
        let id = app_id("{5D1AB7E8-0B4E-4A1F-9C1E-0C2A8F1C9E11}").unwrap();
        assert_eq!(id, "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11");
        let err = app_id("com.contoso.helpdesk").unwrap_err();
        assert!(err.0.contains("App ID"), "{err}");
    }

    #[test]
    fn install_missing_needs_an_app_and_cannot_dry_run() {
        let mut args = ModeArgs {
            install_missing: true,
            ..ModeArgs::default()
        };
        assert!(Mode::derive(&args).unwrap_err().0.contains("--app-id"));
        args.app_id = Some("5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11".into());
        args.dry_run = true;
        assert!(Mode::derive(&args).unwrap_err().0.contains("--dry-run"));
        args.dry_run = false;
        let mode = Mode::derive(&args).unwrap();
        assert_eq!(mode.needs(), Needs::User);
        assert!(!mode.checks_version());
    }

    #[test]
    fn client_credentials_need_the_secret_from_the_environment() {
        let mut auth = auth_args();
        auth.tenant = Some("contoso.onmicrosoft.com".into());
        auth.client_id = Some("app".into());
        let err = derive("https://graph.microsoft.com", &auth, None).unwrap_err();
        assert!(err.0.contains(SECRET_ENV), "{err}");
    }
}
