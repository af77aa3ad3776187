use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use fleetup::cli::{Cli, Command, RunArgs};
use fleetup::config::RunConfig;
use fleetup::engine::RunError;
use fleetup::exit;
use fleetup::summary::Summary;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = tokio::runtime::Runtime::new().expect("cannot start the async runtime");
    ExitCode::from(runtime.block_on(execute(cli)))
}

async fn execute(cli: Cli) -> u8 {
    match cli.command {
        Command::Run(args) => run(args).await,
        Command::Simulate(args) => match fleetup::simulator::serve_foreground(args).await {
            Ok(()) => exit::DONE,
            Err(err) => fail(&err, exit::USAGE),
        },
        Command::Demo(args) => match fleetup::demo::demo(args).await {
            Ok(summary) => {
                eprintln!("{summary}");
                eprintln!("(the demo fleet holds users that answer 404 and 403 on purpose)");
                match summary.stopped {
                    None => exit::DONE,
                    Some(_) => exit::NOT_ALL_UPGRADED,
                }
            }
            Err(fleetup::demo::DemoError::Run(err)) => fail(&err, code_of(&err)),
            Err(err) => fail(&err, exit::USAGE),
        },
    }
}

async fn run(args: RunArgs) -> u8 {
    let config = RunConfig::derive(args.input, args.report, &args.graph, &args.auth, |name| {
        std::env::var(name).ok()
    });
    let config = match config {
        Ok(config) => config,
        Err(err) => return fail(&err, exit::USAGE),
    };
    match fleetup::engine::run(&config).await {
        Ok(summary) => finish(&summary),
        Err(err) => fail(&err, code_of(&err)),
    }
}

fn finish(summary: &Summary) -> u8 {
    eprintln!("{summary}");
    if let Some(reason) = &summary.stopped {
        eprintln!("fleetup: stopped early: {reason}");
        return exit::USAGE;
    }
    match summary.all_upgraded() {
        true => exit::DONE,
        false => exit::NOT_ALL_UPGRADED,
    }
}

fn code_of(err: &RunError) -> u8 {
    match err {
        RunError::Auth(_) => exit::AUTH,
        RunError::Input(_) | RunError::Report(_) => exit::USAGE,
        RunError::Http(_) => exit::NOT_ALL_UPGRADED,
    }
}

fn fail(err: &dyn std::fmt::Display, code: u8) -> u8 {
    eprintln!("fleetup: {err}");
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
