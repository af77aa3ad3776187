//! The pipeline: rows stream in from the input, workers send their calls
//! through the shared pacers, and one collector owns the report and the counts.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::auth::TokenSource;
use crate::breaker::{Breaker, EmptyLists, Hold};
use crate::config::RunConfig;
use crate::graph::GraphClient;
use crate::input::{count_rows, InputError, InputFile, Row};
use crate::pacing::Budgets;
use crate::progress::Progress;
use crate::report::{Outcome, ReportError, ReportWriter, RowResult};
use crate::resume::{self, ResumeError, Settled};
use crate::slots::Slots;
use crate::stop::{watch_signals, StopControl, Stopped};
use crate::summary::Summary;
use crate::worker::{LiveCounts, Worker};

/// Rows read ahead of the workers; enough to keep them fed, small enough
/// that a huge input never sits in memory.
const READ_AHEAD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Input(#[from] InputError),
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(transparent)]
    Resume(#[from] ResumeError),
    #[error("{0}")]
    Auth(#[from] crate::auth::AuthError),
    #[error("cannot set up the HTTP client: {0}")]
    Http(String),
}

/// Run the whole job described by `config`. Ctrl-C and SIGTERM stop it
/// cleanly; the summary says why a run stopped early.
pub async fn run(config: &RunConfig) -> Result<Summary, RunError> {
    let control = Arc::new(StopControl::default());
    let signals = tokio::spawn(watch_signals(control.clone()));
    let summary = run_until_stopped(config, control).await;
    signals.abort();
    summary
}

/// Run the job; `control` can stop it from outside (tests, signals).
pub async fn run_until_stopped(
    config: &RunConfig,
    control: Arc<StopControl>,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let needs = config.mode.needs();
    let input = InputFile::open_for(&config.input, config.delimiter, needs)?;
    let http = reqwest::Client::builder()
        .build()
        .map_err(|err| RunError::Http(err.to_string()))?;
    let auth = TokenSource::new(config.credentials.clone(), http.clone());
    // Credentials that do not work are found before the first upgrade call,
    // and before a report is created for a run that cannot start.
    auth.token().await?;
    let (report, settled) = open_report(config)?;

    // Reading the whole input for its digest and its size runs beside the
    // upgrades, so that a huge input does not delay the first call.
    let digest = (!config.resume).then(|| {
        let (report, input) = (config.report.clone(), config.input.clone());
        tokio::task::spawn_blocking(move || resume::write_digest(&report, &input))
    });
    let progress = Progress::new(None, config.progress);
    if progress.is_drawn() {
        let (progress, path, delimiter) =
            (progress.clone(), config.input.clone(), config.delimiter);
        let already = settled.count();
        tokio::task::spawn_blocking(move || {
            if let Ok(total) = count_rows(&path, delimiter, needs) {
                progress.set_total(total.saturating_sub(already));
            }
        });
    }

    let worker = Arc::new(Worker {
        graph: GraphClient::new(http, config.target.clone(), config.timeout),
        auth,
        budgets: Budgets::new(config.rate, config.burst, config.read_rate),
        slots: match config.adaptive_concurrency {
            true => Slots::adaptive(config.concurrency),
            false => Slots::fixed(config.concurrency),
        },
        max_attempts: config.max_attempts,
        backoff: config.backoff,
        live: LiveCounts::default(),
        control: control.clone(),
        mode: config.mode.clone(),
        newest: Default::default(),
    });
    let (results, collected) = mpsc::channel(READ_AHEAD);
    let collector = tokio::spawn(collect(
        collected,
        report,
        progress,
        worker.clone(),
        vec![
            Box::new(Breaker::new(config.breaker)),
            Box::new(EmptyLists::new(
                config.mode.app_id.as_deref(),
                config.breaker,
                config.mode.permissions(),
            )),
        ],
    ));

    let unreadable = feed(input, &worker, &settled, results).await;

    let mut summary = collector.await.expect("the collector does not panic")?;
    if let Some(err) = unreadable {
        // Told only now, so that the rows read before it were finished.
        control.stop(Stopped::Input(err.to_string()));
    }
    summary.elapsed = started.elapsed();
    summary.calls = worker.live.calls.load(Ordering::Relaxed);
    summary.throttled = worker.live.throttled.load(Ordering::Relaxed);
    summary.held = worker.budgets.held();
    summary.pace = worker.pacer().rate();
    summary.earlier = settled.outcomes;
    summary.stopped = control.reason();
    if let Some(digest) = digest {
        if let Err(err) = digest.await.expect("the digest does not panic") {
            tracing::warn!("{err}; a resume of this report will be refused");
        }
    }
    Ok(summary)
}

/// A new report, or the earlier report of a resume with the lines it
/// already settles.
fn open_report(config: &RunConfig) -> Result<(ReportWriter, Settled), RunError> {
    if !config.resume {
        return Ok((ReportWriter::create(&config.report)?, Settled::default()));
    }
    resume::check_digest(&config.report, &config.input)?;
    let settled = resume::prepare(&config.report, config.retry_failed)?;
    Ok((ReportWriter::append(&config.report)?, settled))
}

/// Read rows on a blocking thread and hand each to a worker task, as many at
/// once as the slots allow, until the input ends or the run is stopped.
/// Returns the error that ended the input early, if one did; the rows read
/// before it still finish.
async fn feed(
    mut input: InputFile,
    worker: &Arc<Worker>,
    settled: &Settled,
    results: mpsc::Sender<RowResult>,
) -> Option<InputError> {
    let (rows, mut read) = mpsc::channel(READ_AHEAD);
    let reader = tokio::task::spawn_blocking(move || {
        while let Some(row) = input.next_row() {
            let failed = row.is_err();
            if rows.blocking_send(row).is_err() || failed {
                break;
            }
        }
    });

    let control = &worker.control;
    let mut unreadable = None;
    while let Some(row) = read.recv().await {
        let row = match row {
            Ok(row) => row,
            Err(err) => {
                unreadable = Some(err);
                break;
            }
        };
        if settled.contains(row.line) {
            continue;
        }
        if let Some(result) = unsent(&row) {
            let _ = results.send(result).await;
            continue;
        }
        let slot = tokio::select! {
            slot = worker.slots.acquire() => slot,
            _ = control.stopped() => break,
        };
        if control.is_stopped() {
            break;
        }
        let worker = worker.clone();
        let results = results.clone();
        tokio::spawn(async move {
            let result = worker.process(row).await;
            drop(slot);
            if let Some(result) = result {
                let _ = results.send(result).await;
            }
        });
    }
    // Dropping the receiver ends the reading thread at its next row.
    drop(read);
    reader.await.expect("the reader does not panic");
    unreadable
}

/// Rows written between two flushes at most, when many finish at once.
const FLUSH_EVERY: usize = 256;

/// The one task that owns the report: writes each row as it arrives, and
/// refreshes the progress bar even while no row finishes (a long wait).
async fn collect(
    mut collected: mpsc::Receiver<RowResult>,
    report: ReportWriter,
    progress: Progress,
    worker: Arc<Worker>,
    holds: Vec<Box<dyn Hold>>,
) -> Result<Summary, ReportError> {
    let mut collector = Collector {
        summary: Summary::new(report.path().to_owned()),
        report,
        progress,
        holds,
        worker,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            row = collected.recv() => {
                let Some(row) = row else { break };
                collector.take(row)?;
                // Rows that finished meanwhile share one flush; none waits
                // for another to arrive.
                for _ in 1..FLUSH_EVERY {
                    let Ok(row) = collected.try_recv() else { break };
                    collector.take(row)?;
                }
                collector.report.flush()?;
            }
            _ = tick.tick() => collector.tick(),
            // Calls still in flight are given up; their rows stay out of the
            // report, for the resume.
            _ = collector.worker.control.abandoned() => break,
        }
    }
    for at in 0..collector.holds.len() {
        let held = collector.holds[at].release();
        collector.pass(at + 1, held)?;
    }
    collector.report.flush()?;
    collector.tick();
    collector.progress.finish();
    Ok(collector.summary)
}

struct Collector {
    report: ReportWriter,
    summary: Summary,
    progress: Progress,
    /// The breaker, then the empty-list guard: each may hold rows back.
    holds: Vec<Box<dyn Hold>>,
    worker: Arc<Worker>,
}

impl Collector {
    fn take(&mut self, row: RowResult) -> Result<(), ReportError> {
        self.pass(0, vec![row])
    }

    /// Pass `rows` through the holds from number `first` on, then write
    /// what comes out.
    fn pass(&mut self, first: usize, mut rows: Vec<RowResult>) -> Result<(), ReportError> {
        for hold in &mut self.holds[first..] {
            let mut passed = Vec::new();
            for row in rows {
                let (out, why) = hold.observe(row);
                if let Some(why) = why {
                    self.worker.control.stop(hold.stop(why));
                }
                passed.extend(out);
            }
            rows = passed;
        }
        for row in rows {
            self.write(row)?;
        }
        Ok(())
    }

    fn write(&mut self, row: RowResult) -> Result<(), ReportError> {
        self.report.write_buffered(&row)?;
        self.summary.count(&row);
        self.progress.row_done();
        Ok(())
    }

    fn tick(&self) {
        let worker = &self.worker;
        worker.slots.adjust(worker.pacer().rate());
        self.progress.show(&worker.status(self.summary.not_done()));
    }
}

/// The report row for an input row that is never sent, if it is one.
fn unsent(row: &Row) -> Option<RowResult> {
    let (outcome, why) = match (&row.problem, row.duplicate_of) {
        (Some(problem), _) => (Outcome::InvalidInput, problem.clone()),
        (None, Some(first)) if row.installation.is_empty() => (
            Outcome::Duplicate,
            format!("same user as line {first}; not sent again"),
        ),
        (None, Some(first)) => (
            Outcome::Duplicate,
            format!("same user and installation as line {first}; not sent again"),
        ),
        (None, None) => return None,
    };
    let mut result = RowResult::new(row.line, row.user.clone(), row.installation.clone());
    result.outcome = outcome;
    result.error_message = Some(why);
    Some(result)
}
