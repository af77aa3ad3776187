//! Resuming from a report: the digest that ties a report to its input, which
//! input lines the report already settles, and the crash-safe rewrite that
//! `--retry-failed` needs.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::report::{Outcome, COLUMNS};

/// Outcomes that `--retry-failed` sends again.
pub const RETRYABLE: [Outcome; 3] = [Outcome::Throttled, Outcome::Failed, Outcome::Unauthorized];

#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot use {path} to resume: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {reason}. Is it a report written by fleetup?")]
    NotAReport {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error(
        "{report} was written for another input than {input} (the input's digest differs from \
         the one kept in {digest}). Resume with the input the run started from, or start a \
         new report."
    )]
    DifferentInput {
        report: PathBuf,
        input: PathBuf,
        digest: PathBuf,
    },
    #[error(
        "the report {report} does not exist. --resume takes the report of the run to go on \
         with (the path its summary printed); to start afresh, leave --resume out."
    )]
    NoReport { report: PathBuf },
    #[error(
        "{digest} is missing, so fleetup cannot tell whether {report} belongs to {input}. \
         Start a new report, or restore that file."
    )]
    NoDigest {
        report: PathBuf,
        input: PathBuf,
        digest: PathBuf,
    },
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ResumeError + '_ {
    move |source| ResumeError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The file beside a report that holds its input's digest.
pub fn digest_path(report: &Path) -> PathBuf {
    let mut name = report.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// SHA-256 of the input, read as a stream.
pub fn input_digest(input: &Path) -> Result<String, ResumeError> {
    let mut file = File::open(input).map_err(io_error(input))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(io_error(input))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Keep the input's digest beside a new report.
pub fn write_digest(report: &Path, input: &Path) -> Result<(), ResumeError> {
    let digest = input_digest(input)?;
    let path = digest_path(report);
    let name = input.file_name().unwrap_or_default().to_string_lossy();
    std::fs::write(&path, format!("{digest}  {name}\n")).map_err(io_error(&path))
}

/// Refuse to resume `report` with an input other than the one it was for.
pub fn check_digest(report: &Path, input: &Path) -> Result<(), ResumeError> {
    if !report.exists() {
        return Err(ResumeError::NoReport {
            report: report.to_owned(),
        });
    }
    let path = digest_path(report);
    let kept = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Err(ResumeError::NoDigest {
                report: report.to_owned(),
                input: input.to_owned(),
                digest: path,
            })
        }
        Err(err) => return Err(io_error(&path)(err)),
    };
    let kept = kept.split_whitespace().next().unwrap_or_default();
    match kept == input_digest(input)? {
        true => Ok(()),
        false => Err(ResumeError::DifferentInput {
            report: report.to_owned(),
            input: input.to_owned(),
            digest: path,
        }),
    }
}

/// The input lines an earlier report settles, as a bit set: one bit a line
/// keeps memory small even for a million rows.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    bits: Vec<u64>,
    /// Outcomes of the settled rows, for the summary.
    pub outcomes: BTreeMap<Outcome, u64>,
}

impl Settled {
    pub fn contains(&self, line: u64) -> bool {
        let (word, bit) = ((line / 64) as usize, line % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    fn insert(&mut self, line: u64, outcome: Outcome) {
        let (word, bit) = ((line / 64) as usize, line % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & (1 << bit) == 0 {
            *self.outcomes.entry(outcome).or_default() += 1;
        }
        self.bits[word] |= 1 << bit;
    }

    pub fn count(&self) -> u64 {
        self.outcomes.values().sum()
    }
}

/// Make an earlier report ready to be appended to, and say which lines it
/// settles. A partial last row (the process was killed while writing it) is
/// cut off. With `retry_failed`, the rows to retry are first removed by
/// writing a new file and renaming it over the old one, so a crash at any
/// moment leaves either the old or the new report, whole.
pub fn prepare(report: &Path, retry_failed: bool) -> Result<Settled, ResumeError> {
    let rows = read_report(report)?;
    let keep = |outcome: &Outcome| !(retry_failed && RETRYABLE.contains(outcome));

    if rows.complete_len < rows.file_len {
        tracing::warn!(
            "{}: dropping a partial last row left by an interrupted run",
            report.display()
        );
        let file = OpenOptions::new()
            .write(true)
            .open(report)
            .map_err(io_error(report))?;
        file.set_len(rows.complete_len).map_err(io_error(report))?;
        file.sync_all().map_err(io_error(report))?;
    }
    if rows.records.iter().any(|(_, outcome, _)| !keep(outcome)) {
        rewrite(report, &rows.records, &keep)?;
    }

    let mut settled = Settled::default();
    for (line, outcome, _) in &rows.records {
        if keep(outcome) {
            settled.insert(*line, *outcome);
        }
    }
    Ok(settled)
}

struct ReportRows {
    records: Vec<(u64, Outcome, csv::ByteRecord)>,
    /// Where the last complete row ends.
    complete_len: u64,
    file_len: u64,
}

// TODO: records are held in memory while a resume reads its report (a few
// hundred bytes a row); stream them in two passes if reports of millions of
// rows need resuming on small machines.
fn read_report(report: &Path) -> Result<ReportRows, ResumeError> {
    let mut file = File::open(report).map_err(io_error(report))?;
    let file_len = file.metadata().map_err(io_error(report))?.len();
    let ends_with_newline = file_len > 0 && {
        let mut last = [0u8];
        file.seek(SeekFrom::End(-1)).map_err(io_error(report))?;
        file.read_exact(&mut last).map_err(io_error(report))?;
        file.rewind().map_err(io_error(report))?;
        last[0] == b'\n'
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(BufReader::new(file));
    let not_a_report = |line: u64, reason: String| ResumeError::NotAReport {
        path: report.to_owned(),
        line,
        reason,
    };

    let header = reader
        .byte_headers()
        .map_err(|err| not_a_report(1, err.to_string()))?;
    if header.iter().ne(COLUMNS.iter().map(|c| c.as_bytes())) {
        return Err(not_a_report(
            1,
            "its header is not fleetup's report header".into(),
        ));
    }
    let mut complete_len = reader.position().byte();
    let mut before_last = complete_len;
    let mut records = Vec::new();
    let mut broken: Option<(u64, String)> = None;
    let mut record = csv::ByteRecord::new();
    loop {
        let start_line = reader.position().line();
        let read = reader.read_byte_record(&mut record);
        if let Some((line, reason)) = broken.take() {
            // Only the very last row may be damaged.
            if !matches!(read, Ok(false)) {
                return Err(not_a_report(line, reason));
            }
        }
        match read {
            Ok(false) => break,
            Ok(true) => match parse_row(&record) {
                Ok((line, outcome)) => {
                    records.push((line, outcome, record.clone()));
                    before_last = complete_len;
                    complete_len = reader.position().byte();
                }
                Err(reason) => broken = Some((start_line, reason)),
            },
            Err(err) => broken = Some((start_line, err.to_string())),
        }
    }
    if !ends_with_newline && complete_len == file_len {
        // The last row parsed, but its line end never reached the disk.
        records.pop();
        complete_len = before_last;
    }
    Ok(ReportRows {
        records,
        complete_len,
        file_len,
    })
}

fn parse_row(record: &csv::ByteRecord) -> Result<(u64, Outcome), String> {
    if record.len() != COLUMNS.len() {
        return Err(format!(
            "{} fields instead of {}",
            record.len(),
            COLUMNS.len()
        ));
    }
    let text = |i: usize| String::from_utf8_lossy(&record[i]).into_owned();
    let line = text(0)
        .parse()
        .map_err(|_| format!("line {:?} is not a number", text(0)))?;
    let outcome = text(3).parse()?;
    Ok((line, outcome))
}

fn rewrite(
    report: &Path,
    records: &[(u64, Outcome, csv::ByteRecord)],
    keep: &dyn Fn(&Outcome) -> bool,
) -> Result<(), ResumeError> {
    let mut temporary = report.as_os_str().to_owned();
    temporary.push(".rewrite");
    let temporary = PathBuf::from(temporary);
    let file = File::create(&temporary).map_err(io_error(&temporary))?;
    let mut writer = csv::Writer::from_writer(file);
    let csv_error = |err: csv::Error| io_error(&temporary)(err.into());
    writer.write_record(COLUMNS).map_err(csv_error)?;
    for (_, outcome, record) in records {
        if keep(outcome) {
            writer.write_byte_record(record).map_err(csv_error)?;
        }
    }
    let mut file = writer
        .into_inner()
        .map_err(|err| io_error(&temporary)(err.into_error()))?;
    file.flush().map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, report).map_err(io_error(report))?;
    if let Some(folder) = report.parent().filter(|p| !p.as_os_str().is_empty()) {
        // The rename itself must reach the disk before rows are appended.
        if let Ok(folder) = File::open(folder) {
            let _ = folder.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "line,user,installation,outcome,http_status,attempts,elapsed_ms,\
                          request_id,client_request_id,error_code,error_message,\
                          app_id,installed_version,latest_version\n";

    fn row(line: u64, outcome: &str) -> String {
        format!("{line},u{line}@contoso.com,i{line},{outcome},204,1,5,r,c,,,,,\n")
    }

    fn report_with(body: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, format!("{HEADER}{body}")).unwrap();
        (dir, path)
    }

    #[test]
    fn settled_lines_are_read_back_and_counted_by_outcome() {
        let (_dir, path) = report_with(&(row(2, "upgraded") + &row(4, "not_found")));
        let settled = prepare(&path, false).unwrap();
        assert!(settled.contains(2) && settled.contains(4));
        assert!(!settled.contains(3) && !settled.contains(1_000_000));
        assert_eq!(settled.count(), 2);
        assert_eq!(settled.outcomes[&Outcome::NotFound], 1);
    }

    #[test]
    fn a_partial_last_row_is_cut_off_and_its_line_left_to_run() {
        let body = row(2, "upgraded") + "3,u3@contoso.com,i3,upgr";
        let (_dir, path) = report_with(&body);
        let settled = prepare(&path, false).unwrap();
        assert!(settled.contains(2));
        assert!(!settled.contains(3));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{HEADER}{}", row(2, "upgraded")));
    }

    #[test]
    fn a_last_row_without_its_line_end_is_not_trusted() {
        let mut body = row(2, "upgraded") + &row(3, "upgraded");
        body.pop();
        let (_dir, path) = report_with(&body);
        let settled = prepare(&path, false).unwrap();
        assert!(settled.contains(2) && !settled.contains(3));
    }

    #[test]
    fn damage_before_the_last_row_is_refused() {
        let body = row(2, "upgraded") + "garbage\n" + &row(4, "upgraded");
        let (_dir, path) = report_with(&body);
        let err = prepare(&path, false).unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn retry_failed_rewrites_the_report_without_the_rows_to_retry() {
        let body = row(2, "upgraded")
            + &row(3, "failed")
            + &row(4, "throttled")
            + &row(5, "forbidden")
            + &row(6, "unauthorized");
        let (dir, path) = report_with(&body);
        let settled = prepare(&path, true).unwrap();
        assert!(settled.contains(2) && settled.contains(5));
        assert!(!settled.contains(3) && !settled.contains(4) && !settled.contains(6));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            format!("{HEADER}{}{}", row(2, "upgraded"), row(5, "forbidden"))
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn a_foreign_csv_is_not_taken_for_a_report() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.csv");
        std::fs::write(&path, "user,installation\nu,i\n").unwrap();
        let err = prepare(&path, false).unwrap_err().to_string();
        assert!(err.contains("not fleetup's report header"), "{err}");
    }

    #[test]
    fn the_digest_ties_a_report_to_its_input() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("in.csv");
        let other = dir.path().join("other.csv");
        let report = dir.path().join("report.csv");
        std::fs::write(&input, "user,installation\nu,i\n").unwrap();
        std::fs::write(&other, "user,installation\nv,j\n").unwrap();
        assert!(matches!(
            check_digest(&report, &input),
            Err(ResumeError::NoReport { .. })
        ));
        std::fs::write(&report, COLUMNS.join(",") + "\n").unwrap();
        assert!(matches!(
            check_digest(&report, &input),
            Err(ResumeError::NoDigest { .. })
        ));
        write_digest(&report, &input).unwrap();
        check_digest(&report, &input).unwrap();
        assert!(matches!(
            check_digest(&report, &other),
            Err(ResumeError::DifferentInput { .. })
        ));
    }
}
