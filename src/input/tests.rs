use super::*;
use std::io::Write;

fn file_with(content: &[u8]) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(content).unwrap();
    file
}

fn open(content: &[u8]) -> (tempfile::NamedTempFile, InputFile) {
    let file = file_with(content);
    let input = InputFile::open(file.path(), None).unwrap();
    (file, input)
}

fn rows(content: &[u8]) -> Vec<Row> {
    let (_file, mut input) = open(content);
    std::iter::from_fn(|| input.next_row())
        .map(Result::unwrap)
        .collect()
}

fn open_error(content: &[u8], delimiter: Option<u8>) -> (String, InputError) {
    let file = file_with(content);
    let err = InputFile::open(file.path(), delimiter).err().unwrap();
    (file.path().display().to_string(), err)
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
    let (_file, input) = open(b"\xEF\xBB\xBFuserId,installationId\nu1,i1\n");
    assert_eq!(input.layout().encoding, Encoding::Utf8Bom);
    assert_eq!(input.layout().user.name, "userId");
}

#[test]
fn a_semicolon_file_is_sniffed_from_its_header() {
    let (_file, mut input) = open(b"User Principal Name;Installation Id\r\na@x;i,1\r\n");
    let layout = input.layout().clone();
    assert_eq!((layout.delimiter, layout.sniffed), (b';', true));
    assert_eq!(layout.user.name, "User Principal Name");
    assert_eq!(layout.installation.as_ref().unwrap().number, 2);
    let row = input.next_row().unwrap().unwrap();
    assert_eq!(
        (row.user.as_str(), row.installation.as_str()),
        ("a@x", "i,1")
    );
}

#[test]
fn tab_and_pipe_files_are_sniffed_too() {
    let read = rows(b"upn\tinstallationId\na@x\ti;1\n");
    assert_eq!(read[0].installation, "i;1");
    let read = rows(b"upn|installationId\na@x|i,1\n");
    assert_eq!(read[0].installation, "i,1");
}

#[test]
fn sniffing_prefers_the_delimiter_that_finds_both_columns() {
    // A comma in an unquoted display-name header outnumbers the real one.
    let read = rows(b"Name, first, last;upn;installationId\nx;a@x;i1\n");
    assert_eq!(
        (read[0].user.as_str(), read[0].installation.as_str()),
        ("a@x", "i1")
    );
}

#[test]
fn a_forced_delimiter_is_used_as_given() {
    let file = file_with(b"upn;installationId;notes\na@x;i1,n;x\n");
    let mut input = InputFile::open(file.path(), Some(b';')).unwrap();
    assert!(!input.layout().sniffed);
    let row = input.next_row().unwrap().unwrap();
    assert_eq!(row.installation, "i1,n");

    let (_, err) = open_error(b"upn;installationId,notes\na@x;i1,n\n", Some(b','));
    assert!(err.to_string().contains("no user column"), "{err}");
}

#[test]
fn one_column_means_the_delimiter_is_probably_wrong() {
    let (path, err) = open_error(b"userPrincipalName:installationId\na:b\n", None);
    assert!(matches!(err, InputError::OneColumn { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&path), "{message}");
    assert!(message.contains("line 1"), "{message}");
    assert!(message.contains("delimiter is probably wrong"), "{message}");
    assert!(message.contains("--delimiter"), "{message}");

    let (_, err) = open_error(b"upn;installationId\na;b\n", Some(b','));
    let message = err.to_string();
    assert!(message.contains("split on ','"), "{message}");
    assert!(message.contains("leave --delimiter out"), "{message}");
}

#[test]
fn a_missing_column_names_the_file_and_the_accepted_names() {
    let (path, err) = open_error(b"userId,appId\nu1,a1\n", None);
    let err = err.to_string();
    assert!(err.contains(&path), "{err}");
    assert!(err.contains("line 1"), "{err}");
    assert!(err.contains("installationId"), "{err}");
    assert!(err.contains("\"appId\""), "{err}");
}

#[test]
fn an_entra_export_uses_the_upn_and_never_id_as_installation() {
    let (_, err) = open_error(b"id,displayName,userPrincipalName\n1,x,a@x\n", None);
    assert!(err.to_string().contains("no installation column"), "{err}");
    let (_file, input) = open(b"id,userPrincipalName,installationId\n1,a@x,i\n");
    assert_eq!(input.layout().user.number, 2);
}

#[test]
fn an_empty_file_is_a_file_error() {
    let (_, err) = open_error(b"", None);
    assert!(matches!(err, InputError::Empty { .. }), "{err}");
    let (_, err) = open_error(b"\r\n\n  \n", None);
    assert!(matches!(err, InputError::Empty { .. }), "{err}");
}

#[test]
fn utf16_with_a_byte_order_mark_is_decoded() {
    let mut bytes = vec![0xFF, 0xFE];
    let text = "UserPrincipalName\tInstallationId\r\nżółć@x\tp+q/r=\r\n";
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let (_file, mut input) = open(&bytes);
    assert_eq!(input.layout().encoding, Encoding::Utf16Le);
    assert_eq!(input.layout().delimiter, b'\t');
    let row = input.next_row().unwrap().unwrap();
    assert_eq!(
        (row.user.as_str(), row.installation.as_str()),
        ("żółć@x", "p+q/r=")
    );
    assert_eq!((row.line, row.problem), (2, None));
}

#[test]
fn utf16_without_a_byte_order_mark_is_refused_naming_the_fix() {
    let bytes: Vec<u8> = "upn,installationId\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let (path, err) = open_error(&bytes, None);
    let message = err.to_string();
    assert!(
        message.contains(&path) && message.contains("CSV UTF-8"),
        "{message}"
    );
}

#[test]
fn short_and_empty_rows_carry_a_reason_and_keep_their_line() {
    let read = rows(b"user,installation\nu1\n , i2\nu3,i3\n");
    assert_eq!(read.len(), 3);
    assert_eq!(read[0].line, 2);
    assert!(read[0].problem.as_deref().unwrap().contains("1 field(s)"));
    assert_eq!(read[1].line, 3);
    let problem = read[1].problem.as_deref().unwrap();
    assert!(problem.contains("user field is empty"), "{problem}");
    assert_eq!(read[2].problem, None);
}

#[test]
fn blank_rows_and_rows_of_delimiters_are_skipped_without_losing_lines() {
    let read = rows(b"\n\nupn;installationId;;\r\n\r\na;i;;\r\n;;;\r\n  ; \r\nb;j;;\r\n");
    let lines: Vec<u64> = read.iter().map(|r| r.line).collect();
    assert_eq!(lines, [5, 8]);
    assert!(read.iter().all(|r| r.problem.is_none()));
}

#[test]
fn quoted_fields_keep_delimiters_quotes_and_report_their_starting_line() {
    let read =
        rows(b"notes,user,installation\n\"two\nlines\",\"a,b\",\"say \"\"hi\"\"\"\n,u2,i2\n");
    assert_eq!(read[0].user, "a,b");
    assert_eq!(read[0].installation, "say \"hi\"");
    assert_eq!(read[0].line, 2);
    assert_eq!(read[1].line, 4);
}

#[test]
fn invalid_utf8_is_a_row_problem_with_the_fix() {
    let read = rows(b"user,installation\nJos\xE9@contoso.com,i1\n");
    let problem = read[0].problem.as_deref().unwrap();
    assert!(problem.contains("CSV UTF-8"), "{problem}");
    assert_eq!(read[0].duplicate_of, None);
}

#[test]
fn a_guid_installation_is_a_row_problem() {
    let read = rows(b"user,installation\na@x,{4F302B5E-4562-4792-8F6F-01842CC39122}\n");
    assert!(read[0].problem.as_deref().unwrap().contains("catalog id"));
}

#[test]
fn later_copies_are_duplicates_of_the_first_line() {
    let read = rows(b"user,installation\nA@x,I\nb@x,I\na@X,I\na@x,i\nbad,\na@x,I\n");
    let duplicates: Vec<Option<u64>> = read.iter().map(|r| r.duplicate_of).collect();
    assert_eq!(duplicates, [None, None, Some(2), None, None, Some(2)]);
}

#[test]
fn an_unclosed_quote_stops_reading_instead_of_swallowing_the_file() {
    let mut content = b"user,installation\na@x,i\n\"b@x,j\n".to_vec();
    for i in 0..200_000 {
        content.extend(format!("user{i}@contoso.com,installation{i}\n").bytes());
    }
    let (_file, mut input) = open(&content);
    assert!(input.next_row().unwrap().is_ok());
    let err = input.next_row().unwrap().unwrap_err();
    assert!(matches!(err, InputError::Runaway { line: 3, .. }), "{err}");
    assert!(err.to_string().contains("quote"), "{err}");
}

#[test]
fn rows_are_counted_without_the_header_or_blank_lines() {
    let file = file_with(b"user,installation\nu1,i1\nu2,i2\n\n,\nu3,i3\nu3,i3\n");
    assert_eq!(
        count_rows(file.path(), None, Needs::UserAndInstallation).unwrap(),
        4
    );
}

// A stray quote on one line of a file took every line after it into one
// field: the rows after it were neither sent nor reported.
#[test]
fn a_quote_left_open_to_the_end_of_the_file_stops_at_its_line() {
    for (content, line) in [
        (
            &b"upn,installationId\nu1,i1\nu2,i2\n\"u3,i3\nu4,i4\nu5,i5\n"[..],
            4,
        ),
        (b"upn,installationId\r\n\"u1,i1\r\nu2,i2\r\n", 2),
        (
            b"upn,installationId,notes\nu1,i1,\"two\nlines\"\nu2,i2,\"oops\nu3,i3,x\n",
            4,
        ),
    ] {
        let (_file, mut input) = open(content);
        let read: Vec<_> = std::iter::from_fn(|| input.next_row()).collect();
        let (last, before) = read.split_last().unwrap();
        assert!(before.iter().all(Result::is_ok), "rows before it are read");
        match last {
            Err(InputError::UnclosedQuote { line: at, .. }) => assert_eq!(*at, line),
            other => panic!("expected an unclosed quote at line {line}, got {other:?}"),
        }
        assert!(input.next_row().is_none());
    }
}

#[test]
fn a_quote_closed_lines_later_names_the_lines_it_took() {
    let read = rows(b"upn,installationId\nu1,i1\n\"u2\nu3,i3\nu4\",i4\nu5,i5\n");
    assert_eq!(read.len(), 3);
    let problem = read[1].problem.as_deref().unwrap();
    assert_eq!(read[1].line, 3);
    assert!(problem.contains("lines 3 to 5"), "{problem}");
    assert_eq!(read[2].line, 6);
}

#[test]
fn a_field_longer_than_any_id_is_a_row_problem() {
    let long = "a".repeat(5000);
    let read = rows(format!("upn,installationId\n{long}@x,i1\nu2,i2\n").as_bytes());
    assert!(
        read[0].problem.as_deref().unwrap().contains("5002 bytes"),
        "{:?}",
        read[0]
    );
    assert!(read[1].problem.is_none());
}

// A stray quote in a display-name column, closed fifty lines later, took
// those fifty users into one field: check said every row was valid and the
// run never named them.
#[test]
fn rows_swallowed_by_a_quote_in_another_column_are_named() {
    let read = rows(
        b"upn,installationId,displayName\nu1@x.com,i1,\"Smith, J\nu2@x.com,i2,Two\nu3@x.com,i3,Jones\" Jr\nu4@x.com,i4,Four\n",
    );
    assert_eq!(read.len(), 2);
    let problem = read[0]
        .problem
        .as_deref()
        .expect("the merged row is refused");
    assert!(problem.contains("lines 2 to 4"), "{problem}");
    assert!(read[1].problem.is_none());

    // A note that really spans lines is left alone.
    let read = rows(b"upn,installationId,notes\nu1@x.com,i1,\"12 Main St,\nSpringfield\"\n");
    assert!(read[0].problem.is_none(), "{:?}", read[0].problem);
}
