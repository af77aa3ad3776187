//! The per-row report: what happened to each input row, written and flushed
//! as each row finishes, so a crash never loses a row that was settled.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The report's columns, in order. The last three are filled by version
/// checks (`--dry-run`, `--only-outdated`) and app-id lookups.
pub const COLUMNS: [&str; 14] = [
    "line",
    "user",
    "installation",
    "outcome",
    "http_status",
    "attempts",
    "elapsed_ms",
    "request_id",
    "client_request_id",
    "error_code",
    "error_message",
    "app_id",
    "installed_version",
    "latest_version",
];

/// How a row ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// 204: the installation now runs the newest published version.
    Upgraded,
    /// 404: the user or the installation does not exist.
    NotFound,
    /// 403: unlicensed user, app blocked by policy, or missing permission.
    Forbidden,
    /// 401 even after a fresh token.
    Unauthorized,
    /// Any other final 4xx.
    Rejected,
    /// Attempts used up while Graph still answered 429.
    Throttled,
    /// Attempts used up on 5xx, timeouts or connection errors.
    Failed,
    /// The input row could not be sent.
    InvalidInput,
    /// The same user and installation as an earlier row: not sent again.
    Duplicate,
    /// Already on the newest published version: no upgrade sent.
    UpToDate,
    /// `--dry-run`: behind the newest published version.
    WouldUpgrade,
    /// `--app-id`: the user does not have the app.
    NotInstalled,
    /// `--install-missing`: installed for a user who lacked it (201).
    Installed,
}

impl Outcome {
    pub const ALL: [Outcome; 13] = [
        Outcome::Upgraded,
        Outcome::UpToDate,
        Outcome::Installed,
        Outcome::WouldUpgrade,
        Outcome::NotInstalled,
        Outcome::NotFound,
        Outcome::Forbidden,
        Outcome::Unauthorized,
        Outcome::Rejected,
        Outcome::Throttled,
        Outcome::Failed,
        Outcome::InvalidInput,
        Outcome::Duplicate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Upgraded => "upgraded",
            Outcome::NotFound => "not_found",
            Outcome::Forbidden => "forbidden",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Rejected => "rejected",
            Outcome::Throttled => "throttled",
            Outcome::Failed => "failed",
            Outcome::InvalidInput => "invalid_input",
            Outcome::Duplicate => "duplicate",
            Outcome::UpToDate => "up_to_date",
            Outcome::WouldUpgrade => "would_upgrade",
            Outcome::NotInstalled => "not_installed",
            Outcome::Installed => "installed",
        }
    }

    /// The row got what the run asked for: the user is on the newest
    /// version now, or (in a dry run) the audit could tell where they are.
    pub fn is_success(self) -> bool {
        matches!(
            self,
            Outcome::Upgraded | Outcome::UpToDate | Outcome::Installed | Outcome::WouldUpgrade
        )
    }

    /// Maps a final HTTP status to its outcome.
    pub fn from_final_status(status: u16) -> Outcome {
        match status {
            200..=299 => Outcome::Upgraded,
            401 => Outcome::Unauthorized,
            403 => Outcome::Forbidden,
            404 => Outcome::NotFound,
            429 => Outcome::Throttled,
            400..=499 => Outcome::Rejected,
            _ => Outcome::Failed,
        }
    }
}

impl std::str::FromStr for Outcome {
    type Err = String;

    fn from_str(text: &str) -> Result<Outcome, String> {
        Outcome::ALL
            .into_iter()
            .find(|outcome| outcome.as_str() == text)
            .ok_or_else(|| format!("{text:?} is not an outcome"))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything the report says about one row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowResult {
    pub line: u64,
    pub user: String,
    pub installation: String,
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub elapsed: Duration,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The app's catalog id, when a read told it or `--app-id` gave it.
    pub app_id: Option<String>,
    pub installed_version: Option<String>,
    /// The app's newest published version in the catalog.
    pub latest_version: Option<String>,
}

impl RowResult {
    /// A row not yet tried: no attempt, no answer.
    pub fn new(line: u64, user: String, installation: String) -> RowResult {
        RowResult {
            line,
            user,
            installation,
            outcome: Outcome::Failed,
            http_status: None,
            attempts: 0,
            elapsed: Duration::ZERO,
            request_id: None,
            client_request_id: None,
            error_code: None,
            error_message: None,
            app_id: None,
            installed_version: None,
            latest_version: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "the report {path} already exists; fleetup never overwrites a report. \
         Pass another --report path or move the old report away."
    )]
    Exists { path: PathBuf },
    #[error("cannot write the report {path}: {source}. Pass a --report path you may write to.")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Writes report rows, one flush per row.
pub struct ReportWriter {
    path: PathBuf,
    writer: csv::Writer<File>,
}

impl ReportWriter {
    /// Create the report at `path` (and its folder), refusing to replace an
    /// existing file, and write the header.
    pub fn create(path: &Path) -> Result<ReportWriter, ReportError> {
        let io_error = |source| ReportError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|source| match source.kind() {
                std::io::ErrorKind::AlreadyExists => ReportError::Exists {
                    path: path.to_owned(),
                },
                _ => io_error(source),
            })?;
        let mut report = ReportWriter {
            path: path.to_owned(),
            writer: csv::Writer::from_writer(file),
        };
        report.write_record(COLUMNS)?;
        report.flush()?;
        Ok(report)
    }

    /// Open an earlier report to add rows to it (for a resume).
    pub fn append(path: &Path) -> Result<ReportWriter, ReportError> {
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|source| ReportError::Io {
                path: path.to_owned(),
                source,
            })?;
        Ok(ReportWriter {
            path: path.to_owned(),
            writer: csv::Writer::from_writer(file),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append one row and flush it to the operating system, so that it
    /// survives the process being killed.
    pub fn write(&mut self, row: &RowResult) -> Result<(), ReportError> {
        self.write_buffered(row)?;
        self.flush()
    }

    /// Append one row; it reaches the operating system at the next flush.
    pub fn write_buffered(&mut self, row: &RowResult) -> Result<(), ReportError> {
        let opt = |value: &Option<String>| value.clone().unwrap_or_default();
        self.write_record(&[
            row.line.to_string(),
            row.user.clone(),
            row.installation.clone(),
            row.outcome.to_string(),
            row.http_status.map(|s| s.to_string()).unwrap_or_default(),
            row.attempts.to_string(),
            row.elapsed.as_millis().to_string(),
            opt(&row.request_id),
            opt(&row.client_request_id),
            opt(&row.error_code),
            opt(&row.error_message),
            opt(&row.app_id),
            opt(&row.installed_version),
            opt(&row.latest_version),
        ])
    }

    pub fn flush(&mut self) -> Result<(), ReportError> {
        self.writer.flush().map_err(|source| ReportError::Io {
            path: self.path.clone(),
            source,
        })
    }

    fn write_record<I, T>(&mut self, record: I) -> Result<(), ReportError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        self.writer
            .write_record(record)
            .map_err(|err| ReportError::Io {
                path: self.path.clone(),
                source: err.into(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(line: u64) -> RowResult {
        RowResult {
            line,
            user: "guest_contoso.com#EXT#@fabrikam.onmicrosoft.com".into(),
            installation: "a/b+c==".into(),
            outcome: Outcome::NotFound,
            http_status: Some(404),
            attempts: 1,
            elapsed: Duration::from_millis(42),
            request_id: Some("r-1".into()),
            client_request_id: Some("c-1".into()),
            error_code: Some("NotFound".into()),
            error_message: Some("User, \"quoted\"\nand broken".into()),
            app_id: Some("app-1".into()),
            installed_version: Some("1.2.0".into()),
            latest_version: None,
        }
    }

    #[test]
    fn rows_read_back_with_the_documented_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/report.csv");
        let mut report = ReportWriter::create(&path).unwrap();
        report.write(&sample(7)).unwrap();

        let mut reader = csv::Reader::from_path(&path).unwrap();
        let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
        assert_eq!(header, COLUMNS);
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "7");
        assert_eq!(
            &rows[0][1],
            "guest_contoso.com#EXT#@fabrikam.onmicrosoft.com"
        );
        assert_eq!(&rows[0][3], "not_found");
        assert_eq!(&rows[0][6], "42");
        assert_eq!(&rows[0][10], "User, \"quoted\"\nand broken");
        assert_eq!(&rows[0][11], "app-1");
        assert_eq!(&rows[0][12], "1.2.0");
        assert_eq!(&rows[0][13], "");
    }

    #[test]
    fn an_existing_report_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        std::fs::write(&path, "precious").unwrap();
        let err = ReportWriter::create(&path).err().unwrap();
        assert!(matches!(err, ReportError::Exists { .. }), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
    }

    #[test]
    fn final_statuses_map_to_outcomes() {
        assert_eq!(Outcome::from_final_status(204), Outcome::Upgraded);
        assert_eq!(Outcome::from_final_status(400), Outcome::Rejected);
        assert_eq!(Outcome::from_final_status(409), Outcome::Rejected);
        assert_eq!(Outcome::from_final_status(401), Outcome::Unauthorized);
        assert_eq!(Outcome::from_final_status(403), Outcome::Forbidden);
        assert_eq!(Outcome::from_final_status(404), Outcome::NotFound);
        assert_eq!(Outcome::from_final_status(503), Outcome::Failed);
    }
}

#[cfg(test)]
mod roundtrip {
    use super::*;
    use proptest::prelude::*;

    fn any_text() -> impl Strategy<Value = String> {
        // Any characters, with the ones CSV must quote well represented.
        proptest::string::string_regex("([,\"\r\n ;\t']|\\PC){0,40}").expect("valid regex")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Whatever Graph or the input put in a field, the report reads back
        /// exactly, so a resume can trust it.
        #[test]
        fn any_field_contents_read_back_exactly(
            user in any_text(),
            installation in any_text(),
            message in any_text(),
            code in any_text(),
            line in 2u64..u64::MAX,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("report.csv");
            let row = RowResult {
                line,
                user: user.clone(),
                installation: installation.clone(),
                outcome: Outcome::Rejected,
                http_status: Some(400),
                attempts: 1,
                elapsed: Duration::from_millis(3),
                request_id: None,
                client_request_id: Some("c".into()),
                error_code: Some(code.clone()),
                error_message: Some(message.clone()),
                app_id: None,
                installed_version: Some(code.clone()),
                latest_version: Some(user.clone()),
            };
            let mut report = ReportWriter::create(&path).unwrap();
            report.write(&row).unwrap();
            report.write(&row).unwrap();

            let mut reader = csv::Reader::from_path(&path).unwrap();
            let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
            prop_assert_eq!(rows.len(), 2);
            prop_assert_eq!(&rows[0][0], line.to_string());
            prop_assert_eq!(&rows[0][1], user.as_str());
            prop_assert_eq!(&rows[0][2], installation.as_str());
            prop_assert_eq!(&rows[0][3], "rejected");
            prop_assert_eq!(&rows[0][9], code.as_str());
            prop_assert_eq!(&rows[0][10], message.as_str());
            prop_assert_eq!(&rows[0][12], code.as_str());
            prop_assert_eq!(&rows[0][13], user.as_str());
        }
    }
}
