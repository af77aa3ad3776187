use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use fleetup::cli::{CheckArgs, Cli, Command, RunArgs};
use fleetup::config::RunConfig;
use fleetup::engine::RunError;
use fleetup::exit;
use fleetup::stop::Stopped;
use fleetup::summary::Summary;

/// Writes a line to stderr, ignoring a closed pipe (`fleetup … 2>&1 | head`):
/// the exit code must still tell what happened.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the async runtime");
    let code = runtime.block_on(execute(cli));
    // Calls abandoned after an interruption must not hold the exit.
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn execute(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Check(args) => check(&args),
        Command::Simulate(args) => match fleetup::simulator::serve_foreground(args).await {
            Ok(()) => exit::DONE,
            Err(err) => fail(&err, exit::USAGE),
        },
        Command::Demo(args) => match fleetup::demo::demo(args).await {
            Ok(summary) => {
                say!("{summary}");
                say!("(the demo fleet holds users that answer 404 and 403 on purpose)");
                match &summary.stopped {
                    None => exit::DONE,
                    Some(stopped) => stopped_code(stopped),
                }
            }
            Err(fleetup::demo::DemoError::Run(err)) => fail(&err, code_of(&err)),
            Err(err) => fail(&err, exit::USAGE),
        },
    }
}

/// Results on stdout, so they can be piped; file-level errors on stderr.
fn check(args: &CheckArgs) -> u8 {
    let needs = match &args.app_id {
        None => fleetup::input::Needs::UserAndInstallation,
        Some(raw) => match fleetup::config::app_id(raw) {
            Ok(_) => fleetup::input::Needs::User,
            Err(err) => return fail(&err, exit::USAGE),
        },
    };
    match fleetup::check::check(&args.input, args.delimiter, needs) {
        Ok(report) if report.all_valid() => {
            print!("{report}");
            exit::DONE
        }
        Ok(report) => {
            print!("{report}");
            exit::NOT_ALL_VALID
        }
        Err(err) => fail(&err, exit::USAGE),
    }
}

async fn run(args: RunArgs) -> u8 {
    let config = RunConfig::derive(
        args.input,
        args.report,
        args.delimiter,
        &args.graph,
        &args.auth,
        &args.journal,
        &args.mode,
        |name| std::env::var(name).ok(),
    );
    let config = match config {
        Ok(config) => config,
        Err(err) => return fail(&err, exit::USAGE),
    };
    match fleetup::engine::run(&config).await {
        Ok(summary) => finish(&summary, &config),
        Err(err) => fail(&err, code_of(&err)),
    }
}

fn finish(summary: &Summary, config: &RunConfig) -> u8 {
    say!("{summary}");
    if let Some(stopped) = &summary.stopped {
        say!("fleetup: stopped early ({stopped}).");
        if let Stopped::Input(_) = stopped {
            // A fixed file has another digest, which a resume refuses.
            say!(
                "The report keeps every row done so far. Fix the file, check it with \
                 `fleetup check`, then run it again with a new report: rows already \
                 upgraded are upgraded again harmlessly, or end up_to_date with \
                 --only-outdated."
            );
            return stopped_code(stopped);
        }
        // Rows an auth failure settled as unauthorized, or that outlasted
        // their attempts, are sent again only with --retry-failed.
        say!(
            "To go on where it stopped, run:\n  {}",
            resume_command(config, summary.retryable() > 0)
        );
        return stopped_code(stopped);
    }
    if summary.rows() == 0 && summary.earlier.is_empty() {
        say!(
            "fleetup: {} holds no data rows, so nothing was sent. Add one row per user below \
             the header.",
            config.input.display()
        );
    }
    if summary.retryable() > 0 {
        say!(
            "{} rows ended throttled, failed or unauthorized; to send them again, run:\n  {}",
            summary.retryable(),
            resume_command(config, true)
        );
    }
    match summary.all_succeeded() {
        true => exit::DONE,
        false => exit::NOT_ALL_UPGRADED,
    }
}

/// The command that resumes this run: the same program and arguments, with
/// the report named by `--resume` instead of `--report`.
fn resume_command(config: &RunConfig, retry_failed: bool) -> String {
    let mut args = std::env::args();
    // As it was started (`target/release/fleetup`, say): `fleetup` alone
    // is often not on the PATH.
    let program = args.next().unwrap_or_else(|| "fleetup".into());
    let mut words = vec![quote(&program)];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--report" | "--resume" => {
                args.next();
            }
            "--retry-failed" => {}
            _ if arg.starts_with("--report=") || arg.starts_with("--resume=") => {}
            _ => words.push(quote(&arg)),
        }
    }
    words.push("--resume".into());
    words.push(quote(&config.report.to_string_lossy()));
    if retry_failed {
        words.push("--retry-failed".into());
    }
    words.join(" ")
}

fn quote(word: &str) -> String {
    let plain = word
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:@,+".contains(c));
    match plain && !word.is_empty() {
        true => word.to_owned(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

fn stopped_code(stopped: &Stopped) -> u8 {
    match stopped {
        Stopped::Interrupted => exit::INTERRUPTED,
        Stopped::AuthBroken(_) | Stopped::Breaker(_) | Stopped::NothingVisible(_) => exit::STOPPED,
        Stopped::Input(_) => exit::USAGE,
    }
}

fn code_of(err: &RunError) -> u8 {
    use fleetup::auth::AuthError;
    match err {
        RunError::Auth(AuthError::TokenFile { .. } | AuthError::EmptyTokenFile { .. }) => {
            exit::USAGE
        }
        RunError::Auth(_) => exit::STOPPED,
        RunError::Input(_) | RunError::Report(_) | RunError::Resume(_) => exit::USAGE,
        RunError::Http(_) => exit::NOT_ALL_UPGRADED,
    }
}

fn fail(err: &dyn std::fmt::Display, code: u8) -> u8 {
    say!("fleetup: {err}");
    code
}

/// Operator logs on stderr; `RUST_LOG` overrides the default level.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("fleetup=info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| fleetup::progress::LogWriter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
