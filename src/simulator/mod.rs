//! A Microsoft Graph simulator: a real HTTP server on loopback that answers the Teams app
//! upgrade call, the token endpoint and throttling the way Graph does, and keeps books of it.
//!
//! Real Graph cannot be reached from tests, so the engine is exercised against this server.
//! It must never be kinder than Graph: a bug that Graph would expose has to show here too.
//! Besides the upgrade it serves the reads an audit needs (one installation, a user's
//! installations, the app catalog) and the install, answered from a `Tenant` directory.

mod auth;
mod base64;
mod books;
mod catalog;
mod cli;
mod fleet;
mod graph;
mod installed;
mod odata;
mod path;
mod server;
mod tenant;
mod throttle;
mod wire;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use books::Books;
pub use cli::{serve_foreground, SimulateArgs};
pub use fleet::{Behaviour, Fleet};
pub use server::Simulator;
pub use tenant::{AppDefinition, CatalogApp, Installation, PublishingState, Tenant};
pub use throttle::RequestClass;

/// How a 429 (and a 503 that carries one) spells its `Retry-After` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryAfterForm {
    /// Whole seconds, rounded up: `5`.
    Seconds,
    /// Seconds with three decimals, rounded up: `0.249`.
    Decimal,
    /// An IMF-fixdate: `Wed, 21 Oct 2015 07:28:00 GMT`.
    HttpDate,
    /// No header at all; the client has to back off on its own.
    Absent,
    /// Seconds, then Decimal, then HttpDate, one per 429, round and round.
    Mixed,
}

impl RetryAfterForm {
    const NAMES: [(&'static str, RetryAfterForm); 5] = [
        ("seconds", RetryAfterForm::Seconds),
        ("decimal", RetryAfterForm::Decimal),
        ("http-date", RetryAfterForm::HttpDate),
        ("absent", RetryAfterForm::Absent),
        ("mixed", RetryAfterForm::Mixed),
    ];
}

impl FromStr for RetryAfterForm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, form)| *form)
            .ok_or_else(|| {
                format!(
                    "unknown Retry-After form '{s}' \
                     (expected seconds, decimal, http-date, absent or mixed)"
                )
            })
    }
}

impl fmt::Display for RetryAfterForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, form)| form == self)
            .map(|(name, _)| *name);
        f.write_str(name.unwrap_or("?"))
    }
}

/// Everything the simulator can be told. `Default` is a calm tenant; `graph_like` a busy one.
#[derive(Clone)]
pub struct SimConfig {
    /// POST installedApps calls (upgrades and installs) per second the write class's bucket
    /// refills; `None` = no throttling.
    pub rate: Option<f64>,
    /// The write class's bucket capacity.
    pub burst: u32,
    /// GET calls per second each read class's bucket refills (GET installedApps and GET
    /// appCatalogs are two buckets, each at this rate); `None` = no throttling.
    pub read_rate: Option<f64>,
    /// Each read class's bucket capacity.
    pub read_burst: u32,
    pub retry_after: RetryAfterForm,
    /// Floor for the announced wait (Graph often says at least a second).
    pub min_retry_after: Duration,
    /// Uniform `min..=max` delay before answering a Graph call that passed the throttle,
    /// and before the token endpoint answers. 429s and 401s go out at once.
    pub latency: (Duration, Duration),
    /// Probability per call; half of the 503s carry a `Retry-After` of one second.
    pub fault_503: f64,
    pub fault_504: f64,
    /// Probability that the connection is closed without any response.
    pub fault_drop: f64,
    /// Lifetime of tokens issued by the token endpoint.
    pub token_lifetime: Duration,
    /// Credentials the token endpoint accepts.
    pub client_id: String,
    pub client_secret: String,
    /// Users that do not simply succeed.
    pub fleet: Fleet,
    /// The answer for every user the fleet does not name, and for the catalog, which names
    /// no user: a tenant-wide 403 for a missing permission, or Graph's 403 `UnknownError`
    /// during a service incident.
    pub everyone: Option<Behaviour>,
    /// Refuse every token, even fresh ones (a token for the wrong tenant or audience).
    pub reject_tokens: bool,
    /// How long after a 429 went out a call inside its window is still not counted in
    /// `Books::calls_in_window`: such a call was already on the wire when the client heard of
    /// the window, so it says nothing about whether the client honours `Retry-After`. Keep it
    /// small (default 50 ms), or a client that ignores the window hides inside the grace.
    pub announce_grace: Duration,
    /// The catalog and the installations. Empty by default, which upgrades any installation.
    pub tenant: Tenant,
    /// Items per page of a list (installations, catalog apps).
    pub page_size: usize,
    /// Answer the first page of every list with no items and a next link, as Graph is known
    /// to: a client that stops at an empty page misses everything.
    pub empty_first_page: bool,
    /// The app was granted only the "Self" variants of the permissions: another app's
    /// installations are listed as none, reading one is a 403, upgrading or installing a 403.
    pub self_permissions_only: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rate: None,
            burst: 30,
            retry_after: RetryAfterForm::Mixed,
            min_retry_after: Duration::ZERO,
            latency: (Duration::ZERO, Duration::ZERO),
            fault_503: 0.0,
            fault_504: 0.0,
            fault_drop: 0.0,
            token_lifetime: Duration::from_secs(3599),
            client_id: "fleetup-sim".to_string(),
            client_secret: "sim-secret".to_string(),
            fleet: Fleet::default(),
            everyone: None,
            reject_tokens: false,
            announce_grace: Duration::from_millis(50),
            read_rate: None,
            read_burst: 30,
            tenant: Tenant::default(),
            page_size: 20,
            empty_first_page: false,
            self_permissions_only: false,
        }
    }
}

impl SimConfig {
    /// A tenant at Graph's published limits (30 per second for POST installedApps, and as
    /// much for each of GET installedApps and GET appCatalogs), with Graph's rough edges.
    pub fn graph_like() -> Self {
        SimConfig {
            rate: Some(30.0),
            burst: 30,
            read_rate: Some(30.0),
            read_burst: 30,
            retry_after: RetryAfterForm::Mixed,
            latency: (Duration::from_millis(20), Duration::from_millis(120)),
            fault_503: 0.01,
            fault_504: 0.005,
            fault_drop: 0.005,
            ..SimConfig::default()
        }
    }

    /// Refuses settings the server could not honour, naming the setting.
    pub fn validate(&self) -> Result<(), SimError> {
        check_limit("rate", "burst", self.rate, self.burst)?;
        check_limit("read-rate", "read-burst", self.read_rate, self.read_burst)?;
        if self.page_size == 0 {
            return Err(SimError::Config("page size must be at least 1".to_string()));
        }
        if self.latency.0 > self.latency.1 {
            return Err(SimError::Config(
                "latency minimum is above its maximum".to_string(),
            ));
        }
        let faults = [
            ("503", self.fault_503),
            ("504", self.fault_504),
            ("drop", self.fault_drop),
        ];
        for (name, p) in faults {
            if !(0.0..=1.0).contains(&p) {
                return Err(SimError::Config(format!(
                    "fault-{name} must be between 0 and 1, not {p}"
                )));
            }
        }
        if self.fault_503 + self.fault_504 + self.fault_drop > 1.0 {
            return Err(SimError::Config(
                "the fault probabilities add up to more than 1".to_string(),
            ));
        }
        if self.min_retry_after > throttle::MAX_WAIT {
            return Err(SimError::Config(
                "min-retry-after must be at most a day".to_string(),
            ));
        }
        if self.token_lifetime.is_zero() {
            return Err(SimError::Config(
                "token lifetime must be above zero".to_string(),
            ));
        }
        Ok(())
    }
}

/// A throttle line: a positive finite rate with a bucket of at least one call, or none.
fn check_limit(
    rate_name: &str,
    burst_name: &str,
    rate: Option<f64>,
    burst: u32,
) -> Result<(), SimError> {
    let Some(rate) = rate else {
        return Ok(());
    };
    if !(rate.is_finite() && rate > 0.0) {
        return Err(SimError::Config(format!(
            "{rate_name} must be above 0, not {rate}"
        )));
    }
    if burst == 0 {
        return Err(SimError::Config(format!("{burst_name} must be at least 1")));
    }
    Ok(())
}

// Written by hand so that the secret never reaches a log line.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("retry_after", &self.retry_after)
            .field("min_retry_after", &self.min_retry_after)
            .field("latency", &self.latency)
            .field("fault_503", &self.fault_503)
            .field("fault_504", &self.fault_504)
            .field("fault_drop", &self.fault_drop)
            .field("token_lifetime", &self.token_lifetime)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .field("fleet", &self.fleet)
            .field("everyone", &self.everyone)
            .field("reject_tokens", &self.reject_tokens)
            .field("announce_grace", &self.announce_grace)
            .field("read_rate", &self.read_rate)
            .field("read_burst", &self.read_burst)
            .field("tenant", &self.tenant)
            .field("page_size", &self.page_size)
            .field("empty_first_page", &self.empty_first_page)
            .field("self_permissions_only", &self.self_permissions_only)
            .finish()
    }
}

/// What can go wrong when setting up or running the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read fleet file {}: {source}", path.display())]
    FleetRead { path: PathBuf, source: csv::Error },

    #[error("fleet file {}, line {line}: {reason}", path.display())]
    FleetLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },

    #[error("cannot read tenant file {}: {source}", path.display())]
    TenantRead {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("tenant file {}, line {line}, column {column}: {reason}", path.display())]
    TenantFile {
        path: PathBuf,
        line: usize,
        column: usize,
        reason: String,
    },

    #[error("tenant file {}: {reason}", path.display())]
    TenantEntry { path: PathBuf, reason: String },

    #[error("invalid simulator setting: {0}")]
    Config(String),

    #[error("cannot listen on 127.0.0.1:{port}: {source} (is the port taken? try --port 0)")]
    Bind { port: u16, source: std::io::Error },

    #[error("cannot write to stdout: {0}")]
    Stdout(std::io::Error),

    #[error("cannot wait for Ctrl-C: {0}")]
    Signal(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms_round_trip_through_their_names() {
        for (name, form) in RetryAfterForm::NAMES {
            assert_eq!(name.parse::<RetryAfterForm>().unwrap(), form);
            assert_eq!(form.to_string(), name);
        }
        assert!("sometimes".parse::<RetryAfterForm>().is_err());
    }

    #[test]
    fn debug_output_masks_the_client_secret() {
        let config = SimConfig {
            client_secret: "hunter2".to_string(),
            ..SimConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn validate_names_the_bad_setting() {
        let config = SimConfig {
            rate: Some(0.0),
            ..SimConfig::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("rate"));
        let config = SimConfig {
            fault_drop: 1.5,
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("fault-drop"));
        assert!(SimConfig::graph_like().validate().is_ok());

        let config = SimConfig {
            read_rate: Some(f64::NAN),
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("read-rate"));
        let config = SimConfig {
            read_rate: Some(1.0),
            read_burst: 0,
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("read-burst"));
        let config = SimConfig {
            page_size: 0,
            ..SimConfig::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("page size"));
    }
}
