//! `fleetup check`: reads an input exactly as `run` would and says what it
//! found, without any network call, so a bad file is fixed before a run.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::input::{describe_delimiter, InputError, InputFile, Layout, Needs};

/// Problems listed in full; the rest are only counted.
const SHOWN: usize = 10;

/// What `check` found in one input.
#[derive(Debug)]
pub struct CheckReport {
    pub path: PathBuf,
    pub layout: Layout,
    pub valid: u64,
    pub invalid: u64,
    pub duplicate: u64,
    /// The first problems, in file order, as (line, what is wrong).
    pub problems: Vec<(u64, String)>,
}

impl CheckReport {
    pub fn rows(&self) -> u64 {
        self.valid + self.invalid + self.duplicate
    }

    /// True when `run` would send every row, and there is one at least.
    pub fn all_valid(&self) -> bool {
        self.valid > 0 && self.invalid == 0 && self.duplicate == 0
    }

    fn note(&mut self, line: u64, problem: String) {
        if self.problems.len() < SHOWN {
            self.problems.push((line, problem));
        }
    }
}

/// Read every row of `input` through the same validation as `run`. An
/// `Err` is a file-level problem that would stop `run` before any call.
pub fn check(input: &Path, delimiter: Option<u8>, needs: Needs) -> Result<CheckReport, InputError> {
    let mut file = InputFile::open_for(input, delimiter, needs)?;
    let mut report = CheckReport {
        path: input.to_owned(),
        layout: file.layout().clone(),
        valid: 0,
        invalid: 0,
        duplicate: 0,
        problems: Vec::new(),
    };
    while let Some(row) = file.next_row() {
        let row = row?;
        if let Some(problem) = row.problem {
            report.invalid += 1;
            report.note(row.line, problem);
        } else if let Some(first) = row.duplicate_of {
            report.duplicate += 1;
            let why =
                format!("same user and installation as line {first}; run will not send it again");
            report.note(row.line, why);
        } else {
            report.valid += 1;
        }
    }
    Ok(report)
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = &self.layout;
        let how = match layout.sniffed {
            true => "guessed from the header",
            false => "from --delimiter",
        };
        writeln!(f, "{}", self.path.display())?;
        writeln!(f, "  encoding      {}", layout.encoding)?;
        writeln!(
            f,
            "  delimiter     {} ({how})",
            describe_delimiter(layout.delimiter)
        )?;
        writeln!(
            f,
            "  user          column {} {:?}",
            layout.user.number, layout.user.name
        )?;
        match &layout.installation {
            Some(column) => writeln!(
                f,
                "  installation  column {} {:?}",
                column.number, column.name
            )?,
            None => writeln!(f, "  installation  looked up by --app-id")?,
        }
        writeln!(
            f,
            "  rows          {}: {} valid, {} invalid, {} duplicate",
            self.rows(),
            self.valid,
            self.invalid,
            self.duplicate
        )?;
        if self.problems.is_empty() {
            return match self.rows() {
                0 => writeln!(f, "No data rows: add one row per user below the header."),
                _ => writeln!(
                    f,
                    "All rows are valid: `fleetup run` would send one call per row."
                ),
            };
        }
        writeln!(f, "First problems:")?;
        for (line, problem) in &self.problems {
            writeln!(f, "  line {line}: {problem}")?;
        }
        let more = self.invalid + self.duplicate - self.problems.len() as u64;
        if more > 0 {
            writeln!(f, "  … and {more} more")?;
        }
        writeln!(
            f,
            "`fleetup run` would send {} of the {} rows and report the others as \
             invalid_input or duplicate.",
            self.valid,
            self.rows()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn checked(content: &[u8]) -> CheckReport {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(content).unwrap();
        check(file.path(), None, Needs::UserAndInstallation).unwrap()
    }

    #[test]
    fn counts_and_first_problems_come_in_file_order() {
        let report = checked(b"upn;installationId\r\na;i\r\n;j\r\nA;i\r\nb;k\r\n");
        assert_eq!((report.valid, report.invalid, report.duplicate), (2, 1, 1));
        assert!(!report.all_valid());
        let lines: Vec<u64> = report.problems.iter().map(|(line, _)| *line).collect();
        assert_eq!(lines, [3, 4]);
        let text = report.to_string();
        assert!(
            text.contains("delimiter     ';' (guessed from the header)"),
            "{text}"
        );
        assert!(
            text.contains("line 4: same user and installation as line 2"),
            "{text}"
        );
    }

    #[test]
    fn only_the_first_problems_are_listed() {
        let mut content = b"upn,installationId\n".to_vec();
        for _ in 0..25 {
            content.extend(b"a,\n");
        }
        let report = checked(&content);
        assert_eq!(report.invalid, 25);
        assert_eq!(report.problems.len(), SHOWN);
        assert!(report.to_string().contains("and 15 more"), "{report}");
    }

    #[test]
    fn a_list_of_users_is_enough_when_the_app_id_is_given() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"userPrincipalName\na@x\nb@x\nA@X\n")
            .unwrap();
        let report = check(file.path(), None, Needs::User).unwrap();
        assert_eq!((report.valid, report.duplicate), (2, 1));
        assert!(
            report.to_string().contains("looked up by --app-id"),
            "{report}"
        );
        let both = check(file.path(), None, Needs::UserAndInstallation);
        assert!(both.is_err(), "a one-column file needs --app-id");
    }

    #[test]
    fn a_clean_file_is_all_valid() {
        let report = checked(b"upn,installationId\na,i\nb,i\n");
        assert!(report.all_valid());
        assert!(report.to_string().contains("one call per row"), "{report}");
    }
}
