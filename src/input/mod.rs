//! The input CSV: decodes it, finds its delimiter and columns, then streams
//! data rows one at a time, turning a bad or repeated row into a reason.

mod duplicates;
mod header;
mod sniff;
mod stream;
mod validate;

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

pub use sniff::{describe as describe_delimiter, parse_delimiter};
pub use stream::Encoding;
pub use validate::looks_like_guid;

use duplicates::Seen;
use stream::{Text, Tracked, Tracker};
use validate::Field;

/// The most of the first line read to guess the delimiter from.
const SNIFF_LIMIT: u64 = 64 << 10;

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
        "{path}: the first line holds NUL bytes, so the file is UTF-16 without a byte-order \
         mark, or not text at all (an .xlsx workbook, say). Save it from Excel as \
         \"CSV UTF-8 (Comma delimited)\" and run again."
    )]
    NotText { path: PathBuf },
    #[error(
        "{path}, line {line}: split on {delimiter}, the header is one column ({header:?}), but \
         fleetup needs a user and an installation column. The delimiter is probably wrong: {fix} \
         (A file of users alone works with --app-id APP.)"
    )]
    OneColumn {
        path: PathBuf,
        line: u64,
        delimiter: String,
        header: String,
        fix: &'static str,
    },
    #[error(
        "{path}, line {line}: no {wanted} column in the header (found: {found}). \
         Name the column one of: {accepted} (any case; spaces, _ and - are ignored)."
    )]
    MissingColumn {
        path: PathBuf,
        line: u64,
        wanted: &'static str,
        found: String,
        accepted: &'static str,
    },
    #[error(
        "{path}, line {line}: a record starting on this line runs on for more than {} MiB, \
         so a quote opened there is probably never closed. Fix the quotes on that line \
         (a field that starts with \" must end with \") and run again.",
        stream::RECORD_LIMIT >> 20
    )]
    Runaway { path: PathBuf, line: u64 },
    #[error(
        "{path}, line {line}: a quote opened on this line is never closed, so the lines after \
         it (to line {last}) were read as one field and their rows would be lost. Fix the \
         quotes on line {line} (a field that starts with \" must end with \"; a quote inside \
         a field is written \"\"), check the file again with `fleetup check`, and run again."
    )]
    UnclosedQuote { path: PathBuf, line: u64, last: u64 },
    #[error("{path}, line {line}: {reason}")]
    Read {
        path: PathBuf,
        line: u64,
        reason: String,
    },
}

/// How the file was read: what `fleetup check` shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub encoding: Encoding,
    pub delimiter: u8,
    /// True when the delimiter was guessed, false when `--delimiter` gave it.
    pub sniffed: bool,
    pub user: Column,
    /// `None` when only users are read (`--app-id`).
    pub installation: Option<Column>,
}

/// The columns a run reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Needs {
    /// A user and their installation id on every row.
    #[default]
    UserAndInstallation,
    /// Users only: the installation is looked up by app id.
    User,
}

/// One of the columns used, as the header names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Counted from 1, as a spreadsheet user counts.
    pub number: usize,
    pub name: String,
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

/// The start of the file, read to sniff the delimiter, then the rest.
type Chained = std::io::Chain<Cursor<Vec<u8>>, BufReader<Text>>;

/// A streaming reader over the data rows of an input file.
pub struct InputFile {
    path: PathBuf,
    records: Records,
    layout: Layout,
    columns: (usize, Option<usize>),
    record: csv::ByteRecord,
    seen: Option<Seen>,
}

impl InputFile {
    /// Open `path` and read its header, with `delimiter` or a guessed one.
    /// Every file-level problem is found here, before any call is made.
    pub fn open(path: &Path, delimiter: Option<u8>) -> Result<InputFile, InputError> {
        InputFile::open_for(path, delimiter, Needs::UserAndInstallation)
    }

    /// Like [`InputFile::open`], reading only the columns `needs` names.
    pub fn open_for(
        path: &Path,
        delimiter: Option<u8>,
        needs: Needs,
    ) -> Result<InputFile, InputError> {
        let open_error = |source| InputError::Open {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(open_error)?;
        let (text, encoding) = stream::decode(file).map_err(open_error)?;
        let mut text = BufReader::new(text);
        let (start, first_line) = first_line(&mut text).map_err(open_error)?;
        if first_line.contains(&0) {
            return Err(InputError::NotText {
                path: path.to_owned(),
            });
        }

        let chosen = delimiter.unwrap_or_else(|| sniff(&first_line));
        let mut records = Records::new(Cursor::new(start).chain(text), chosen);
        let mut header = csv::ByteRecord::new();
        let Some(line) = records.next(path, &mut header)? else {
            return Err(InputError::Empty {
                path: path.to_owned(),
            });
        };

        let forced = delimiter.is_some();
        let (columns, user, installation) =
            find_columns(path, line, &header, chosen, forced, needs)?;
        Ok(InputFile {
            path: path.to_owned(),
            records,
            layout: Layout {
                encoding,
                delimiter: chosen,
                sniffed: delimiter.is_none(),
                user,
                installation,
            },
            columns,
            record: csv::ByteRecord::new(),
            seen: Some(Seen::default()),
        })
    }

    /// How the file is being read.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The next data row, `None` at the end of the file. Blank rows are
    /// skipped. An `Err` means the file itself could no longer be read.
    pub fn next_row(&mut self) -> Option<Result<Row, InputError>> {
        match self.records.next(&self.path, &mut self.record) {
            Ok(Some(line)) => Some(Ok(self.row(line))),
            Ok(None) => None,
            Err(err) => Some(Err(err)),
        }
    }

    fn row(&mut self, line: u64) -> Row {
        let (user_column, installation_column) = self.columns;
        let user = validate::field(&self.record, user_column, Field::User);
        let installation = match installation_column {
            Some(column) => validate::field(&self.record, column, Field::Installation),
            None => Ok(""),
        };

        let (user, installation) = match (user, installation) {
            (Ok(user), Ok(installation)) => (user, installation),
            (user, installation) => {
                return Row {
                    line,
                    user: lossy(&self.record, user_column),
                    installation: installation_column
                        .map(|column| lossy(&self.record, column))
                        .unwrap_or_default(),
                    problem: user.err().or(installation.err()).map(|problem| {
                        let last = self.records.last_line();
                        match last > line {
                            true => format!(
                                "{problem} (lines {line} to {last} were read as this one row)"
                            ),
                            false => problem,
                        }
                    }),
                    duplicate_of: None,
                }
            }
        };
        if let Some(problem) = self.swallowed_rows(line) {
            return Row {
                line,
                user: user.to_owned(),
                installation: installation.to_owned(),
                problem: Some(problem),
                duplicate_of: None,
            };
        }
        let seen = self.seen.as_mut();
        Row {
            line,
            duplicate_of: seen.and_then(|s| s.first_line(user, installation, line)),
            user: user.to_owned(),
            installation: installation.to_owned(),
            problem: None,
        }
    }

    /// Why the record is really several rows run together, if it is: a
    /// column fleetup ignores (a display name, a note) holds a line break
    /// followed by a line with a user where this file keeps its users. A
    /// quote opened there and closed lines later took those rows in, and
    /// they must not vanish without a word.
    fn swallowed_rows(&self, line: u64) -> Option<String> {
        let (user_column, installation_column) = self.columns;
        let delimiter = self.layout.delimiter;
        let (column, _) = self.record.iter().enumerate().find(|(column, field)| {
            *column != user_column
                && Some(*column) != installation_column
                && field
                    .split(|&b| b == b'\n')
                    .skip(1)
                    .any(|inner| looks_like_a_row(inner, delimiter, user_column))
        })?;
        let last = self.records.last_line();
        Some(format!(
            "column {} holds lines {line} to {last}, and some of them look like rows of their \
             own: a quote opened on line {line} is probably closed only on line {last}. \
             Fix the quotes (a quote inside a field is written \"\"); none of these lines \
             is sent",
            column + 1
        ))
    }
}

/// Whether `line`, split on `delimiter` without regard to quotes, holds a
/// user id (a UPN or an object id) in column `user_column`.
fn looks_like_a_row(line: &[u8], delimiter: u8, user_column: usize) -> bool {
    let Some(field) = line.split(|&b| b == delimiter).nth(user_column) else {
        return false;
    };
    let Ok(text) = std::str::from_utf8(field) else {
        return false;
    };
    let text = text.trim().trim_matches('"');
    let upn = text.split_once('@').is_some_and(|(name, domain)| {
        !name.is_empty() && domain.contains('.') && !text.contains(char::is_whitespace)
    });
    upn || looks_like_guid(text)
}

/// The CSV reader, with true line numbers and a bound on each record.
struct Records {
    reader: csv::Reader<Tracked<Chained>>,
    tracker: Tracker,
}

impl Records {
    fn new(text: Chained, delimiter: u8) -> Records {
        let (source, tracker) = Tracked::new(text);
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .delimiter(delimiter)
            .from_reader(source);
        Records { reader, tracker }
    }

    /// Read the next record that is not blank into `record` and return the
    /// line it starts on, or `None` at the end of the file.
    fn next(
        &mut self,
        path: &Path,
        record: &mut csv::ByteRecord,
    ) -> Result<Option<u64>, InputError> {
        loop {
            let before = self.reader.position().byte();
            // No record starts before the line after the last one; counting
            // back from the end alone is one short when a quote left open
            // swallowed the file's last line end.
            let earliest = self.tracker.line_of(before + 1);
            let read = self.reader.read_byte_record(record);
            if self.tracker.exceeded() {
                return Err(InputError::Runaway {
                    path: path.to_owned(),
                    line: self.tracker.line_of(before + 1),
                });
            }
            self.tracker.record_done();
            match read.map_err(|err| read_error(path, &err))? {
                false => return Ok(None),
                true if validate::is_blank(record) => continue,
                true => {}
            }
            let line = self.start_line(record).max(earliest);
            // The file ended inside a quoted field: every line after the
            // quote was taken into it.
            let open = self.tracker.ended_inside_quotes();
            if open && record.as_slice().contains(&b'\n') {
                return Err(InputError::UnclosedQuote {
                    path: path.to_owned(),
                    line,
                    last: self.last_line(),
                });
            }
            return Ok(Some(line));
        }
    }

    /// The line the record just read ends on.
    fn last_line(&self) -> u64 {
        let end = self.reader.position().byte();
        self.tracker.line_of(end.saturating_sub(1))
    }

    /// The CSV reader's own record positions go wrong after CRLF line ends
    /// and blank lines, so count back from the record's last byte, over
    /// the line breaks inside its quoted fields.
    fn start_line(&self, record: &csv::ByteRecord) -> u64 {
        let end = self.reader.position().byte();
        let last = self.tracker.line_of(end.saturating_sub(1));
        let inside = record.as_slice().iter().filter(|&&b| b == b'\n').count();
        last - inside as u64
    }
}

/// Count the data rows of `path` without keeping any of them, for the
/// progress bar's total.
pub fn count_rows(path: &Path, delimiter: Option<u8>, needs: Needs) -> Result<u64, InputError> {
    let mut input = InputFile::open_for(path, delimiter, needs)?;
    // Counting needs no duplicate detection, and so none of its memory.
    input.seen = None;
    let mut count = 0;
    while let Some(row) = input.next_row() {
        row?;
        count += 1;
    }
    Ok(count)
}

/// Read up to the end of the first line that is not blank (within
/// `SNIFF_LIMIT`), and return all bytes read, to be read again by the CSV
/// reader so that line numbers stay true, with that line alone.
fn first_line(text: &mut impl BufRead) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut start = Vec::new();
    loop {
        let from = start.len();
        let read = text
            .by_ref()
            .take(SNIFF_LIMIT)
            .read_until(b'\n', &mut start)?;
        let line = &start[from..];
        let blank = line.iter().all(u8::is_ascii_whitespace);
        if read == 0 || !blank || start.len() as u64 >= SNIFF_LIMIT {
            let line = line.to_vec();
            return Ok((start, line));
        }
    }
}

/// The delimiter that splits `line` into a header with both columns, the
/// most frequent one first; failing that the most frequent, or a comma.
fn sniff(line: &[u8]) -> u8 {
    let ranked = sniff::ranked(line);
    let both = ranked.iter().copied().find(|&delimiter| {
        let columns = header::find(split(line, delimiter).iter());
        columns.user.is_some() && columns.installation.is_some()
    });
    both.or(ranked.first().copied()).unwrap_or(b',')
}

fn split(line: &[u8], delimiter: u8) -> csv::ByteRecord {
    let mut record = csv::ByteRecord::new();
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(line);
    // A header the CSV reader cannot split is judged when it is read for real.
    let _ = reader.read_byte_record(&mut record);
    record
}

type Found = ((usize, Option<usize>), Column, Option<Column>);

/// The columns `needs` names in `header`, or the file-level error that
/// stops the run.
fn find_columns(
    path: &Path,
    line: u64,
    header: &csv::ByteRecord,
    delimiter: u8,
    forced: bool,
    needs: Needs,
) -> Result<Found, InputError> {
    let found = header::find(header.iter());
    // A lone column of users is a list for --app-id, not a wrong delimiter.
    let lone_users = header.len() < 2 && found.user.is_some();
    if header.len() < 2 && needs == Needs::UserAndInstallation && !lone_users {
        return Err(InputError::OneColumn {
            path: path.to_owned(),
            line,
            delimiter: sniff::describe(delimiter),
            header: String::from_utf8_lossy(header.as_slice()).trim().to_owned(),
            fix: match forced {
                true => {
                    "pass the one the file uses (--delimiter ',', ';', tab or '|'), \
                         or leave --delimiter out to have it guessed."
                }
                false => {
                    "none of ',', ';', tab or '|' is in it. Save the file as CSV, \
                          or pass --delimiter."
                }
            },
        });
    }
    let missing = |wanted, accepted| InputError::MissingColumn {
        path: path.to_owned(),
        line,
        wanted,
        found: describe_found(header),
        accepted,
    };
    let user = found
        .user
        .ok_or_else(|| missing("user", header::USER_NAMES))?;
    let installation = match needs {
        Needs::UserAndInstallation => Some(
            found
                .installation
                .ok_or_else(|| missing("installation", header::INSTALLATION_NAMES))?,
        ),
        Needs::User => None,
    };
    let column = |index| Column {
        number: index + 1,
        name: lossy(header, index),
    };
    Ok(((user, installation), column(user), installation.map(column)))
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
mod tests;
