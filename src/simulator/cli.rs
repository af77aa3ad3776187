//! `fleetup simulate`: the simulator's command-line flags, turned into a checked `SimConfig`,
//! and the foreground server that runs until Ctrl-C.

use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::{Behaviour, Fleet, RetryAfterForm, SimConfig, SimError, Simulator, Tenant};

/// Flags of `fleetup simulate`.
#[derive(Clone, clap::Args)]
pub struct SimulateArgs {
    /// Port on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// POST installedApps calls (upgrades, installs) per second the tenant allows; omit for
    /// no throttling.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Calls allowed at once before the rate applies [default: one second's worth of --rate].
    #[arg(long)]
    pub burst: Option<u32>,

    /// GET calls per second the tenant allows, for GET installedApps and GET appCatalogs
    /// each (two separate budgets, as in Graph); omit for no throttling.
    #[arg(long)]
    pub read_rate: Option<f64>,

    /// Reads allowed at once before --read-rate applies, per budget [default: one second's
    /// worth of --read-rate].
    #[arg(long)]
    pub read_burst: Option<u32>,

    /// How 429s spell Retry-After: seconds, decimal, http-date, absent or mixed.
    #[arg(long, default_value = "mixed")]
    pub retry_after: RetryAfterForm,

    /// Shortest wait a 429 announces, e.g. 1s.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub min_retry_after: Duration,

    /// Delay before each answer: one value (50ms) or a uniform range (20ms..120ms).
    #[arg(long, default_value = "0s", value_parser = parse_latency)]
    pub latency: (Duration, Duration),

    /// Probability per call of a 503 Service Unavailable.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub fault_503: f64,

    /// Probability per call of a 504 Gateway Timeout.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub fault_504: f64,

    /// Probability per call that the connection is closed without an answer.
    #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
    pub fault_drop: f64,

    /// Lifetime of tokens from the token endpoint.
    #[arg(long, default_value = "3599s", value_parser = humantime::parse_duration)]
    pub token_lifetime: Duration,

    /// Client id the token endpoint accepts.
    #[arg(long, default_value = "fleetup-sim")]
    pub client_id: String,

    /// Client secret the token endpoint accepts.
    #[arg(
        long,
        env = "FLEETUP_SIM_CLIENT_SECRET",
        default_value = "sim-secret",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub client_secret: String,

    /// CSV of users that fail: user,status[,code,message].
    #[arg(long)]
    pub fleet: Option<PathBuf>,

    /// Answer every user the fleet does not name with this status (e.g. 403 for a tenant
    /// missing the permission, or an incident).
    #[arg(long, value_name = "STATUS")]
    pub everyone: Option<u16>,

    /// Refuse every token, even fresh ones, with 401.
    #[arg(long)]
    pub reject_tokens: bool,

    /// How long after a 429 calls already on the wire are not counted as ignoring it.
    #[arg(long, default_value = "50ms", value_parser = humantime::parse_duration)]
    pub announce_grace: Duration,

    /// JSON file of the tenant's app catalog and installations, as
    /// inputs/demo-tenant.json (the README's "The simulator" shows the format).
    #[arg(long, value_name = "PATH")]
    pub tenant: Option<PathBuf>,

    /// Items per page of a list.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub page_size: u32,

    /// Answer the first page of every list with no items and a next link.
    #[arg(long)]
    pub empty_first_page: bool,

    /// Act as if the app had only the "Self" permissions: other apps' installations are
    /// invisible, and reading one, upgrading or installing is refused with 403.
    #[arg(long)]
    pub self_permissions_only: bool,
}

impl SimulateArgs {
    /// The checked configuration, with the fleet and tenant files read.
    pub fn to_config(&self) -> Result<SimConfig, SimError> {
        let fleet = match &self.fleet {
            Some(path) => Fleet::load(path)?,
            None => Fleet::default(),
        };
        let tenant = match &self.tenant {
            Some(path) => Tenant::load(path)?,
            None => Tenant::default(),
        };
        let burst = self.burst.unwrap_or_else(|| default_burst(self.rate));
        let read_burst = self
            .read_burst
            .unwrap_or_else(|| default_burst(self.read_rate));
        let config = SimConfig {
            rate: self.rate,
            burst,
            read_rate: self.read_rate,
            read_burst,
            retry_after: self.retry_after,
            min_retry_after: self.min_retry_after,
            latency: self.latency,
            fault_503: self.fault_503,
            fault_504: self.fault_504,
            fault_drop: self.fault_drop,
            token_lifetime: self.token_lifetime,
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            fleet,
            everyone: self.everyone.map(Behaviour::for_status),
            reject_tokens: self.reject_tokens,
            announce_grace: self.announce_grace,
            tenant,
            page_size: self.page_size as usize,
            empty_first_page: self.empty_first_page,
            self_permissions_only: self.self_permissions_only,
        };
        config.validate()?;
        Ok(config)
    }
}

/// One second's worth of calls, so `--rate 30` behaves like Graph's 30-per-second limit.
fn default_burst(rate: Option<f64>) -> u32 {
    rate.map_or(30, |r| r.ceil().clamp(1.0, f64::from(u32::MAX)) as u32)
}

// Written by hand so that the secret never reaches a log line.
impl fmt::Debug for SimulateArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulateArgs")
            .field("port", &self.port)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("read_rate", &self.read_rate)
            .field("read_burst", &self.read_burst)
            .field("retry_after", &self.retry_after)
            .field("latency", &self.latency)
            .field("fleet", &self.fleet)
            .field("tenant", &self.tenant)
            .field("client_id", &self.client_id)
            .field("client_secret", &"***")
            .finish_non_exhaustive()
    }
}

/// `MIN..MAX` or a single duration, each in humantime form.
fn parse_latency(text: &str) -> Result<(Duration, Duration), String> {
    let parse = |s: &str| humantime::parse_duration(s.trim()).map_err(|e| format!("'{s}': {e}"));
    let (min, max) = match text.split_once("..") {
        Some((min, max)) => (parse(min)?, parse(max)?),
        None => {
            let one = parse(text)?;
            (one, one)
        }
    };
    if min > max {
        return Err(format!("the minimum of '{text}' is above its maximum"));
    }
    Ok((min, max))
}

fn parse_probability(text: &str) -> Result<f64, String> {
    let p: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number"))?;
    if !(0.0..=1.0).contains(&p) {
        return Err(format!("{p} is not a probability between 0 and 1"));
    }
    Ok(p)
}

/// Runs the simulator in the foreground until Ctrl-C.
///
/// Prints one line to stdout, `fleetup simulator listening on http://127.0.0.1:PORT`, so a
/// script that started it can read the port.
pub async fn serve_foreground(args: SimulateArgs) -> Result<(), SimError> {
    let config = args.to_config()?;
    let port = args.port;
    let simulator = Simulator::start_on(port, config)
        .await
        .map_err(|source| SimError::Bind { port, source })?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "fleetup simulator listening on {}", simulator.url())
        .map_err(SimError::Stdout)?;
    stdout.flush().map_err(SimError::Stdout)?;
    drop(stdout);

    tokio::signal::ctrl_c().await.map_err(SimError::Signal)?;
    simulator.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(argv: &[&str]) -> Result<SimulateArgs, clap::Error> {
        let argv = std::iter::once("simulate").chain(argv.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.args)
    }

    #[test]
    fn defaults_are_a_calm_tenant() {
        let config = parse(&[]).unwrap().to_config().unwrap();
        assert_eq!(config.rate, None);
        assert_eq!(config.latency, (Duration::ZERO, Duration::ZERO));
        assert_eq!(config.token_lifetime, Duration::from_secs(3599));
        assert_eq!(
            (config.client_id.as_str(), config.client_secret.as_str()),
            ("fleetup-sim", "sim-secret")
        );
    }

    #[test]
    fn flags_become_the_config() {
        let args = parse(&[
            "--rate",
            "12.5",
            "--retry-after",
            "http-date",
            "--min-retry-after",
            "1s",
            "--latency",
            "20ms..120ms",
            "--fault-503",
            "0.01",
            "--token-lifetime",
            "10m",
        ])
        .unwrap();
        let config = args.to_config().unwrap();
        assert_eq!((config.rate, config.burst), (Some(12.5), 13));
        assert_eq!(config.retry_after, RetryAfterForm::HttpDate);
        assert_eq!(config.min_retry_after, Duration::from_secs(1));
        assert_eq!(
            config.latency,
            (Duration::from_millis(20), Duration::from_millis(120))
        );
        assert_eq!(config.fault_503, 0.01);
        assert_eq!(config.token_lifetime, Duration::from_secs(600));
        assert_eq!((config.read_rate, config.read_burst), (None, 30));
    }

    #[test]
    fn read_flags_and_the_tenant_file_become_the_config() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        let json = r#"{"apps": [{"id": "app", "displayName": "App",
            "definitions": [{"version": "1.0.0", "publishingState": "published"}]}]}"#;
        file.write_all(json.as_bytes()).unwrap();
        let args = parse(&[
            "--read-rate",
            "7.5",
            "--tenant",
            file.path().to_str().unwrap(),
            "--page-size",
            "5",
            "--empty-first-page",
            "--self-permissions-only",
        ])
        .unwrap();
        let config = args.to_config().unwrap();
        assert_eq!((config.read_rate, config.read_burst), (Some(7.5), 8));
        assert_eq!(config.tenant.newest_published("app"), Some("1.0.0"));
        assert_eq!(config.page_size, 5);
        assert!(config.empty_first_page && config.self_permissions_only);
        assert_eq!(config.rate, None);

        let args = parse(&["--read-rate", "1", "--read-burst", "3"]).unwrap();
        assert_eq!(args.to_config().unwrap().read_burst, 3);
        assert!(parse(&["--page-size", "0"]).is_err());
        let missing = parse(&["--tenant", "/nonexistent/tenant.json"]).unwrap();
        assert!(missing
            .to_config()
            .unwrap_err()
            .to_string()
            .contains("tenant.json"));
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse(&["--latency", "120ms..20ms"]).is_err());
        assert!(parse(&["--fault-drop", "2"]).is_err());
        assert!(parse(&["--retry-after", "sometimes"]).is_err());
        assert!(parse(&["--rate", "0"]).unwrap().to_config().is_err());
        assert_eq!(
            parse(&["--latency", "5ms"]).unwrap().latency.1,
            Duration::from_millis(5)
        );
    }
}
