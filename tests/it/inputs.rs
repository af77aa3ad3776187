//! Inputs as admins have them (Excel, Entra exports, PowerShell, many
//! locales), through `fleetup check` and through a run against the simulator.

use std::path::{Path, PathBuf};
use std::process::Command;

use fleetup::engine::RunError;
use fleetup::input::{InputError, InputFile};
use fleetup::simulator::SimConfig;
use proptest::prelude::*;

use crate::support::{by_line, read_report, Harness};

/// Users and installations whose bytes are easy to mangle on the way.
const ODD_PAIRS: &[(&str, &str)] = &[
    (
        "jo.smith_fabrikam.com#EXT#@contoso.onmicrosoft.com",
        "MCMjMTk6YTJjNjk2ZDYtYzA0YS00ZjBlLWE2N2ItNGY2NjU1YjM1YjU5IyMxYmE0ZTk5MC03OWY=",
    ),
    ("$admin@contoso.com", "a/b+c==;d"),
    ("$o'hara@contoso.com", "x,y"),
    ("first+tag@contoso.com", "say \"hi\""),
    ("o'neil@contoso.com", "it's%20literal"),
    ("józef.żółć@contoso.com", "ünïcode/ïd="),
    ("4F302B5E-4562-4792-8F6F-01842CC39122", "UPPER+lower/=="),
    ("4f302b5e-4562-4792-8f6f-01842cc39123", "lower"),
];

struct Checked {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Checked {
    /// Assert the exit code, and that stdout says each of `needles`.
    fn says(&self, code: i32, needles: &[&str]) {
        let shown = format!("{}{}", self.stdout, self.stderr);
        assert_eq!(self.code, Some(code), "{shown}");
        for needle in needles {
            assert!(self.stdout.contains(needle), "{needle:?} not in: {shown}");
        }
    }
}

/// `fleetup check` as a separate process, with `args` after the input.
fn check(input: &Path, args: &[&str]) -> Checked {
    let output = Command::new(env!("CARGO_BIN_EXE_fleetup"))
        .arg("check")
        .arg(input)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    Checked {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(harness: &Harness, name: &str, bytes: &[u8]) -> PathBuf {
    let path = harness.dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// `fields` joined by `delimiter`, each quoted by the csv writer only where
/// it must be, as Excel does.
fn csv_line(fields: &[&str], delimiter: u8) -> String {
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(csv::Terminator::CRLF)
        .from_writer(vec![]);
    writer.write_record(fields).unwrap();
    String::from_utf8(writer.into_inner().unwrap()).unwrap()
}

/// Every odd pair reached Graph once, byte for byte, and nothing else did.
fn assert_sent_exactly(harness: &Harness, pairs: &[(&str, &str)]) {
    let books = harness.sim.books();
    for (user, installation) in pairs {
        assert_eq!(
            books.calls_for(user, installation),
            1,
            "{user} / {installation} did not arrive intact: {:?}",
            books.calls.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(books.upgrade_calls, pairs.len() as u64, "{:?}", books.calls);
}

#[tokio::test]
async fn an_excel_semicolon_save_reaches_graph_byte_identical() {
    let harness = Harness::start(SimConfig::default()).await;
    // BOM, CRLF, `;`, a header as people write it, spaces around values,
    // quoted fields holding `;`, quotes and line breaks, trailing empty
    // columns, blank lines and Excel's rows of bare delimiters.
    let mut text = String::from("\u{feff}User Principal Name;Installation Id;Notes;;\r\n\r\n");
    for (i, (user, installation)) in ODD_PAIRS.iter().enumerate() {
        let padded_user = format!("  {user} ");
        let note = format!("row {i};\r\nsecond \"line\"");
        text.push_str(&csv_line(
            &[&padded_user, installation, &note, "", ""],
            b';',
        ));
        text.push_str(";;;;\r\n");
    }
    let input = write(&harness, "excel.csv", text.as_bytes());

    let checked = check(&input, &[]);
    checked.says(0, &["';' (guessed", "8 valid, 0 invalid, 0 duplicate"]);

    let summary = harness.run(&harness.config(&input)).await;
    assert!(summary.all_succeeded(), "{summary}");
    assert_sent_exactly(&harness, ODD_PAIRS);
    let lines: Vec<u64> = read_report(&harness.report_path())
        .iter()
        .map(|row| row["line"].parse().unwrap())
        .collect();
    // Each row takes two lines (its note has a break) plus a `;;;;` line.
    let mut lines = lines;
    lines.sort();
    assert_eq!(lines, [3, 6, 9, 12, 15, 18, 21, 24]);
}

#[tokio::test]
async fn excel_unicode_text_is_decoded_from_utf16() {
    let harness = Harness::start(SimConfig::default()).await;
    let mut text = String::from("UserPrincipalName\tInstallationId\r\n");
    for (user, installation) in ODD_PAIRS {
        text.push_str(&csv_line(&[user, installation], b'\t'));
    }
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    let input = write(&harness, "unicode.txt", &bytes);

    let checked = check(&input, &[]);
    checked.says(0, &["UTF-16LE", "tab (guessed"]);

    let summary = harness.run(&harness.config(&input)).await;
    assert!(summary.all_succeeded(), "{summary}");
    assert_sent_exactly(&harness, ODD_PAIRS);
}

#[tokio::test]
async fn utf16_without_a_byte_order_mark_is_refused_before_any_call() {
    let harness = Harness::start(SimConfig::default()).await;
    let bytes: Vec<u8> = "upn,installationId\r\na@contoso.com,i1\r\n"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    let input = write(&harness, "nobom.csv", &bytes);

    let checked = check(&input, &[]);
    checked.says(2, &[]);
    assert!(checked.stderr.contains("nobom.csv"), "{}", checked.stderr);
    assert!(checked.stderr.contains("CSV UTF-8"), "{}", checked.stderr);

    let err = fleetup::engine::run(&harness.config(&input)).await.err();
    assert!(matches!(
        err,
        Some(RunError::Input(InputError::NotText { .. }))
    ));
    assert_eq!(harness.sim.books().upgrade_calls, 0);
}

/// A `|` file whose header also splits into both columns on `,` (its last
/// name holds commas): a tie goes to the comma, so only `--delimiter` reads
/// it right.
fn pipe_file() -> String {
    let mut text = String::from("upn|installationId|notes,user,installation\n");
    for (user, installation) in ODD_PAIRS {
        text.push_str(&csv_line(&[user, installation, "x"], b'|'));
    }
    text
}

#[tokio::test]
async fn a_pipe_file_is_read_with_a_forced_delimiter() {
    let harness = Harness::start(SimConfig::default()).await;
    let text = pipe_file();
    let input = write(&harness, "pipes.csv", text.as_bytes());

    let guessed = check(&input, &[]);
    guessed.says(1, &[]);
    let checked = check(&input, &["--delimiter", "|"]);
    checked.says(0, &["'|' (from --delimiter)"]);

    let mut config = harness.config(&input);
    config.delimiter = Some(b'|');
    let summary = harness.run(&config).await;
    assert!(summary.all_succeeded(), "{summary}");
    assert_sent_exactly(&harness, ODD_PAIRS);
}

#[tokio::test]
async fn one_column_stops_before_any_call_blaming_the_delimiter() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = write(
        &harness,
        "semicolons.csv",
        b"userPrincipalName;installationId\na@contoso.com;i1\n",
    );

    let checked = check(&input, &["--delimiter", ","]);
    checked.says(2, &[]);
    for needed in [
        "semicolons.csv",
        "line 1",
        "delimiter is probably wrong",
        "--delimiter",
    ] {
        assert!(
            checked.stderr.contains(needed),
            "{needed}: {}",
            checked.stderr
        );
    }

    let mut config = harness.config(&input);
    config.delimiter = Some(b',');
    let err = fleetup::engine::run(&config).await.err();
    assert!(matches!(
        err,
        Some(RunError::Input(InputError::OneColumn { .. }))
    ));
    assert_eq!(harness.sim.books().upgrade_calls, 0);
    assert!(!harness.report_path().exists());
}

#[tokio::test]
async fn entra_export_headers_pick_the_upn_and_never_id_as_installation() {
    let harness = Harness::start(SimConfig::default()).await;
    let mut text = String::from("id,displayName,userPrincipalName,App Installation Id\n");
    for (i, (user, installation)) in ODD_PAIRS.iter().enumerate() {
        let id = format!("00000000-0000-0000-0000-{i:012}");
        text.push_str(&csv_line(&[&id, "Some One", user, installation], b','));
    }
    let input = write(&harness, "export.csv", text.as_bytes());

    let checked = check(&input, &[]);
    checked.says(0, &["column 3 \"userPrincipalName\""]);

    let summary = harness.run(&harness.config(&input)).await;
    assert!(summary.all_succeeded(), "{summary}");
    assert_sent_exactly(&harness, ODD_PAIRS);
}

#[tokio::test]
async fn object_id_exports_are_sent_in_the_case_they_came_in() {
    let harness = Harness::start(SimConfig::default()).await;
    let pairs = [
        ("4F302B5E-4562-4792-8F6F-01842CC39122", "i1"),
        ("{not-a-guid}", "i2"),
        ("4f302b5e-4562-4792-8f6f-01842cc39124", "i3"),
    ];
    let mut text = String::from("ObjectId,Id,Installation_Id\n");
    for (user, installation) in pairs {
        text.push_str(&csv_line(&[user, "ignored", installation], b','));
    }
    let input = write(&harness, "objects.csv", text.as_bytes());

    assert!(check(&input, &[]).stdout.contains("column 1 \"ObjectId\""));
    let summary = harness.run(&harness.config(&input)).await;
    assert!(summary.all_succeeded(), "{summary}");
    assert_sent_exactly(&harness, &pairs);
}

#[tokio::test]
async fn windows_1252_bytes_are_refused_by_line_and_never_sent() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = write(
        &harness,
        "ansi.csv",
        b"upn,installationId\r\njos\xE9@contoso.com,i1\r\nana@contoso.com,i2\r\n",
    );

    let checked = check(&input, &[]);
    checked.says(1, &["1 valid, 1 invalid"]);
    assert!(checked
        .stdout
        .contains("line 2: the user field is not valid UTF-8"));
    assert!(
        checked.stdout.contains("\"CSV UTF-8\""),
        "{}",
        checked.stdout
    );

    harness.run(&harness.config(&input)).await;
    assert_sent_exactly(&harness, &[("ana@contoso.com", "i2")]);
    let report = by_line(&read_report(&harness.report_path()));
    assert_eq!(report[&2]["outcome"], "invalid_input");
    assert!(report[&2]["error_message"].contains("CSV UTF-8"));
}

#[tokio::test]
async fn a_guid_installation_is_invalid_input_hinting_at_the_app_id() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = write(
        &harness,
        "appid.csv",
        b"upn,installationId\na@contoso.com,{2C8B9A3E-1F6D-4E0A-9B7C-5D4E3F2A1B0C}\nb@contoso.com,aW5zdA==\n",
    );

    let checked = check(&input, &[]);
    checked.says(1, &["line 2: the installation field", "catalog id"]);

    harness.run(&harness.config(&input)).await;
    assert_sent_exactly(&harness, &[("b@contoso.com", "aW5zdA==")]);
    let report = by_line(&read_report(&harness.report_path()));
    assert_eq!(report[&2]["outcome"], "invalid_input");
    assert!(report[&2]["error_message"].contains("--app-id"));
}

#[tokio::test]
async fn later_copies_are_duplicates_and_never_sent_again() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = write(
        &harness,
        "dups.csv",
        b"upn,installationId\n\
          Ana@Contoso.com,aW5z+A==\n\
          4F302B5E-4562-4792-8F6F-01842CC39122,i\n\
          ana@contoso.COM,aW5z+A==\n\
          ana@contoso.com,AW5Z+a==\n\
          4f302b5e-4562-4792-8f6f-01842cc39122,i\n",
    );

    let checked = check(&input, &[]);
    checked.says(1, &["3 valid, 0 invalid, 2 duplicate"]);
    assert!(checked
        .stdout
        .contains("line 4: same user and installation as line 2"));
    assert!(checked
        .stdout
        .contains("line 6: same user and installation as line 3"));

    harness.run(&harness.config(&input)).await;
    assert_sent_exactly(
        &harness,
        &[
            ("Ana@Contoso.com", "aW5z+A=="),
            ("4F302B5E-4562-4792-8F6F-01842CC39122", "i"),
            ("ana@contoso.com", "AW5Z+a=="),
        ],
    );
    let report = by_line(&read_report(&harness.report_path()));
    for (line, first) in [(4, "line 2"), (6, "line 3")] {
        assert_eq!(report[&line]["outcome"], "duplicate");
        assert_eq!(report[&line]["attempts"], "0");
        assert!(report[&line]["error_message"].contains(first));
    }
}

/// Field contents: arbitrary text, text dense in what CSV must quote, or
/// one of a few ids in varying case so that duplicates happen.
fn field() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => any::<String>(),
        2 => "[a-zA-Zü@#$'+/=,;|\t\r\n\" ]{0,12}",
        1 => prop::sample::select(vec!["a@x", "A@X", " a@x ", "ß@x", "i+/=", "I+/="])
            .prop_map(String::from),
    ]
}

fn written(
    delimiter: u8,
    quoting: csv::QuoteStyle,
    crlf: bool,
    rows: &[(String, String, String)],
) -> (Vec<u8>, Vec<u64>) {
    let terminator = match crlf {
        true => csv::Terminator::CRLF,
        false => csv::Terminator::Any(b'\n'),
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .quote_style(quoting)
        .terminator(terminator)
        .from_writer(vec![]);
    writer
        .write_record(["Notes, free text", "User Principal Name", "Installation_Id"])
        .unwrap();
    let mut lines = Vec::new();
    for (notes, user, installation) in rows {
        writer.flush().unwrap();
        let before = writer.get_ref().iter().filter(|&&b| b == b'\n').count();
        lines.push(before as u64 + 1);
        writer.write_record([notes, user, installation]).unwrap();
    }
    (writer.into_inner().unwrap(), lines)
}

fn clean(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && !text.contains('\u{FFFD}') && !text.chars().any(char::is_control)
}

fn blank(fields: [&str; 3]) -> bool {
    fields
        .iter()
        .all(|f| f.bytes().all(|b| b.is_ascii_whitespace()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever the csv writer writes, fleetup reads back: the same fields
    /// (trimmed), on the lines they start on, refused only when unsendable,
    /// and duplicates named by their first line.
    #[test]
    fn fields_written_by_a_csv_writer_are_read_back_exactly(
        delimiter in prop::sample::select(vec![b',', b';', b'\t', b'|']),
        quoting in prop::sample::select(vec![
            csv::QuoteStyle::Necessary,
            csv::QuoteStyle::Always,
            csv::QuoteStyle::NonNumeric,
        ]),
        crlf in any::<bool>(),
        rows in prop::collection::vec((field(), field(), field()), 0..12),
    ) {
        let (bytes, lines) = written(delimiter, quoting, crlf, &rows);
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();

        let mut input = InputFile::open(file.path(), None).unwrap();
        prop_assert_eq!(input.layout().delimiter, delimiter);
        let mut firsts = std::collections::HashMap::new();
        for ((notes, user, installation), line) in rows.iter().zip(lines) {
            if blank([notes, user, installation]) {
                continue;
            }
            let row = input.next_row().expect("a row per record").unwrap();
            prop_assert_eq!(row.line, line);
            prop_assert_eq!(&row.user, user.trim());
            prop_assert_eq!(&row.installation, installation.trim());
            let sendable = clean(user) && clean(installation);
            prop_assert_eq!(row.problem.is_none(), sendable, "{:?}", row.problem);
            if sendable {
                let key: String = user.trim().chars().flat_map(char::to_lowercase).collect();
                let first = *firsts.entry((key, installation.trim())).or_insert(line);
                prop_assert_eq!(row.duplicate_of, (first != line).then_some(first));
            }
        }
        prop_assert!(input.next_row().is_none());
    }
}

#[tokio::test]
async fn run_takes_the_delimiter_from_the_command_line() {
    let harness = Harness::start(SimConfig::default()).await;
    let input = write(&harness, "pipes.csv", pipe_file().as_bytes());
    let report = harness.report_path();
    let args: Vec<String> = [
        "run",
        input.to_str().unwrap(),
        "--delimiter",
        "|",
        "--graph-url",
        &harness.sim.url(),
        "--report",
        report.to_str().unwrap(),
        "--no-progress",
    ]
    .map(String::from)
    .into();
    let token = harness.sim.mint_token(std::time::Duration::from_secs(60));

    // The simulator answers on this test's runtime: wait off it.
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_fleetup"))
            .args(&args)
            .env("GRAPH_TOKEN", token)
            .env_remove("FLEETUP_CLIENT_SECRET")
            .env_remove("RUST_LOG")
            .output()
            .expect("the binary runs")
    })
    .await
    .unwrap();

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_sent_exactly(&harness, ODD_PAIRS);
}

#[tokio::test]
async fn a_quote_left_open_stops_the_run_at_its_line_and_keeps_the_rows_before() {
    let harness = Harness::start(SimConfig::default()).await;
    let mut text = String::from("upn,installationId\n");
    for (user, installation) in ODD_PAIRS {
        text.push_str(&csv_line(&[user, installation], b','));
    }
    let quoted_at = ODD_PAIRS.len() as u64 + 2;
    text.push_str("\"stray@contoso.com,abc\nlost@contoso.com,def\n");
    let input = write(&harness, "stray.csv", text.as_bytes());
    let report = harness.report_path();
    let token = harness.sim.mint_token(std::time::Duration::from_secs(60));

    let output = harness
        .run_binary(
            &input,
            &harness.sim.url(),
            &["--report", report.to_str().unwrap(), "--no-progress"],
            &token,
        )
        .await;

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("line {quoted_at}: a quote")),
        "{stderr}"
    );
    assert_sent_exactly(&harness, ODD_PAIRS);
    let rows = crate::support::read_report(&report);
    assert_eq!(
        rows.len(),
        ODD_PAIRS.len(),
        "the rows before it are reported"
    );

    let checked = check(&input, &[]);
    checked.says(2, &[]);
}
