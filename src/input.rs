//! The input CSV: finds the user and installation columns in the header, then
//! streams data rows one at a time, turning a bad row into a reason, not a stop.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

/// Header names accepted for the user column, compared ignoring case and
/// surrounding spaces.
const USER_COLUMNS: &[&str] = &["userId", "user_id", "user", "userPrincipalName", "upn"];

/// Header names accepted for the installation column.
const INSTALLATION_COLUMNS: &[&str] = &[
    "installationId",
    "installation_id",
    "appInstallationId",
    "installation",
];

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read {path}: {source}. Check the path and that you may read the file.")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is empty. It needs a header row naming a user column (userId or \
         userPrincipalName) and an installation column (installationId), then one row per user."
    )]
    Empty { path: PathBuf },
    #[error(
        "{path}, line {line}: no {wanted} column in the header (found: {found}). \
         Name the column one of: {accepted}."
    )]
    MissingColumn {
        path: PathBuf,
        line: u64,
        wanted: &'static str,
        found: String,
        accepted: String,
    },
    #[error("{path}, line {line}: {reason}")]
    Read {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// One data row, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The input line the row starts on (the header is line 1).
    pub line: u64,
    pub user: String,
    pub installation: String,
    /// Why the row cannot be sent, if it cannot.
    pub problem: Option<String>,
    /// The line of an earlier row with the same user and installation.
    pub duplicate_of: Option<u64>,
}

/// A streaming reader over the data rows of an input file.
pub struct InputFile {
    path: PathBuf,
    reader: csv::Reader<BufReader<File>>,
    user_column: usize,
    installation_column: usize,
    record: csv::ByteRecord,
}

impl InputFile {
    /// Open `path` and read its header. Every file-level problem is found
    /// here, before any call is made.
    pub fn open(path: &Path) -> Result<InputFile, InputError> {
        let file = File::open(path).map_err(|source| InputError::Open {
            path: path.to_owned(),
            source,
        })?;
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(BufReader::new(file));

        let mut header = csv::ByteRecord::new();
        let read = reader
            .read_byte_record(&mut header)
            .map_err(|err| read_error(path, &err))?;
        if !read {
            return Err(InputError::Empty {
                path: path.to_owned(),
            });
        }
        let line = header.position().map_or(1, |p| p.line());
        let names: Vec<String> = header.iter().map(header_name).collect();
        let find = |wanted: &'static str, accepted: &[&str]| {
            names
                .iter()
                .position(|name| accepted.iter().any(|a| a.eq_ignore_ascii_case(name)))
                .ok_or_else(|| InputError::MissingColumn {
                    path: path.to_owned(),
                    line,
                    wanted,
                    found: describe_found(&header),
                    accepted: accepted.join(", "),
                })
        };
        let user_column = find("user", USER_COLUMNS)?;
        let installation_column = find("installation", INSTALLATION_COLUMNS)?;

        Ok(InputFile {
            path: path.to_owned(),
            reader,
            user_column,
            installation_column,
            record: csv::ByteRecord::new(),
        })
    }

    /// The next data row, `None` at the end of the file. An `Err` means the
    /// file itself could no longer be read.
    pub fn next_row(&mut self) -> Option<Result<Row, InputError>> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => Some(Ok(self.row())),
            Ok(false) => None,
            Err(err) => Some(Err(read_error(&self.path, &err))),
        }
    }

    fn row(&self) -> Row {
        let line = self.record.position().map_or(0, |p| p.line());
        let user = self.field(self.user_column, "user");
        let installation = self.field(self.installation_column, "installation");
        let problem = user.as_ref().err().or(installation.as_ref().err()).cloned();
        Row {
            line,
            user: user.unwrap_or_else(|_| lossy(&self.record, self.user_column)),
            installation: installation
                .unwrap_or_else(|_| lossy(&self.record, self.installation_column)),
            problem,
            duplicate_of: None,
        }
    }

    fn field(&self, column: usize, name: &str) -> Result<String, String> {
        let Some(bytes) = self.record.get(column) else {
            return Err(format!(
                "the row has {} field(s) but the {name} column is number {}; \
                 fill in the missing field or remove the row",
                self.record.len(),
                column + 1
            ));
        };
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Err(format!(
                "the {name} field is not valid UTF-8; save the file as \"CSV UTF-8\" and run again"
            ));
        };
        let text = text.trim();
        if text.is_empty() {
            return Err(format!(
                "the {name} field is empty; fill it in or remove the row"
            ));
        }
        Ok(text.to_owned())
    }
}

/// Count the data rows of `path` without keeping any of them, for the
/// progress bar's total.
pub fn count_rows(path: &Path) -> Result<u64, InputError> {
    let mut input = InputFile::open(path)?;
    let mut count = 0;
    while let Some(row) = input.next_row() {
        row?;
        count += 1;
    }
    Ok(count)
}

fn header_name(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .trim_start_matches('\u{feff}')
        .trim()
        .to_ascii_lowercase()
}

fn describe_found(header: &csv::ByteRecord) -> String {
    let names: Vec<String> = header
        .iter()
        .map(|raw| format!("{:?}", String::from_utf8_lossy(raw).trim()))
        .collect();
    names.join(", ")
}

fn lossy(record: &csv::ByteRecord, column: usize) -> String {
    record
        .get(column)
        .map(|bytes| String::from_utf8_lossy(bytes).trim().to_owned())
        .unwrap_or_default()
}

fn read_error(path: &Path, err: &csv::Error) -> InputError {
    let line = err.position().map_or(0, |p| p.line());
    InputError::Read {
        path: path.to_owned(),
        line,
        reason: format!("{err}. Check that the file is a CSV and readable."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        file
    }

    fn rows(content: &[u8]) -> Vec<Row> {
        let file = file_with(content);
        let mut input = InputFile::open(file.path()).unwrap();
        std::iter::from_fn(|| input.next_row())
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn header_aliases_match_in_any_case_and_with_spaces() {
        let read = rows(b" UPN ,Other, AppInstallationId \nalice@contoso.com,x,abc=\n");
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].user, "alice@contoso.com");
        assert_eq!(read[0].installation, "abc=");
        assert_eq!(read[0].line, 2);
        assert_eq!(read[0].problem, None);
    }

    #[test]
    fn a_byte_order_mark_does_not_hide_the_first_column() {
        let read = rows(b"\xEF\xBB\xBFuserId,installationId\nu1,i1\n");
        assert_eq!(read[0].user, "u1");
    }

    #[test]
    fn a_missing_column_names_the_file_and_the_accepted_names() {
        let file = file_with(b"userId,appId\nu1,a1\n");
        let err = InputFile::open(file.path()).err().unwrap().to_string();
        assert!(err.contains(&file.path().display().to_string()), "{err}");
        assert!(err.contains("line 1"), "{err}");
        assert!(err.contains("installationId"), "{err}");
        assert!(err.contains("\"appId\""), "{err}");
    }

    #[test]
    fn an_empty_file_is_a_file_error() {
        let file = file_with(b"");
        let err = InputFile::open(file.path()).err().unwrap();
        assert!(matches!(err, InputError::Empty { .. }), "{err}");
    }

    #[test]
    fn short_and_empty_rows_carry_a_reason_and_keep_their_line() {
        let read = rows(b"user,installation\nu1\n , i2\nu3,i3\n");
        assert_eq!(read.len(), 3);
        assert_eq!(read[0].line, 2);
        assert!(read[0].problem.as_deref().unwrap().contains("1 field(s)"));
        assert_eq!(read[1].line, 3);
        assert!(read[1]
            .problem
            .as_deref()
            .unwrap()
            .contains("user field is empty"));
        assert_eq!(read[2].problem, None);
    }

    #[test]
    fn quoted_fields_keep_commas_and_report_their_starting_line() {
        let read = rows(b"user,installation\n\"a,b\",\"x\ny\"\nu2,i2\n");
        assert_eq!(read[0].user, "a,b");
        assert_eq!(read[0].installation, "x\ny");
        assert_eq!(read[1].line, 4);
    }

    #[test]
    fn invalid_utf8_is_a_row_problem_with_the_fix() {
        let read = rows(b"user,installation\nJos\xE9@contoso.com,i1\n");
        let problem = read[0].problem.as_deref().unwrap();
        assert!(problem.contains("CSV UTF-8"), "{problem}");
    }

    #[test]
    fn rows_are_counted_without_the_header() {
        let file = file_with(b"user,installation\nu1,i1\nu2,i2\n\nu3,i3\n");
        assert_eq!(count_rows(file.path()).unwrap(), 3);
    }
}
