//! The field delimiter: `--delimiter` as typed, or guessed from the header
//! line among the ones that spreadsheets and scripts write.

/// Delimiters fleetup reads, in the order that breaks a tie: comma first,
/// then `;` (Excel in most European locales), tab, `|`.
pub const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Parse `--delimiter`: `,` `;` `|`, or a tab written as `tab`, `\t` or a
/// literal tab character.
pub fn parse_delimiter(text: &str) -> Result<u8, String> {
    match text {
        "," => Ok(b','),
        ";" => Ok(b';'),
        "|" => Ok(b'|'),
        "\t" | "\\t" => Ok(b'\t'),
        _ if text.eq_ignore_ascii_case("tab") => Ok(b'\t'),
        _ => Err(format!(
            "{text:?} is not a delimiter fleetup reads; use ',', ';', tab or '|'"
        )),
    }
}

/// How a delimiter is written in messages and on the command line.
pub fn describe(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".to_owned(),
        other => format!("'{}'", other as char),
    }
}

/// The candidates that occur in `line` outside double quotes, most frequent
/// first; ties keep the order of `CANDIDATES`.
pub fn ranked(line: &[u8]) -> Vec<u8> {
    let mut counts = [0usize; CANDIDATES.len()];
    let mut quoted = false;
    for &byte in line {
        if byte == b'"' {
            quoted = !quoted;
        } else if let Some(i) = CANDIDATES.iter().position(|&c| c == byte) {
            counts[i] += usize::from(!quoted);
        }
    }
    let mut found: Vec<(u8, usize)> = CANDIDATES
        .into_iter()
        .zip(counts)
        .filter(|&(_, count)| count > 0)
        .collect();
    found.sort_by_key(|&(_, count)| std::cmp::Reverse(count));
    found.into_iter().map(|(delimiter, _)| delimiter).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_spelling_parses() {
        assert_eq!(parse_delimiter(","), Ok(b','));
        assert_eq!(parse_delimiter(";"), Ok(b';'));
        assert_eq!(parse_delimiter("|"), Ok(b'|'));
        assert_eq!(parse_delimiter("tab"), Ok(b'\t'));
        assert_eq!(parse_delimiter("TAB"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\\t"), Ok(b'\t'));
        assert_eq!(parse_delimiter("\t"), Ok(b'\t'));
        let err = parse_delimiter(":").unwrap_err();
        assert!(err.contains("';'"), "{err}");
    }

    #[test]
    fn the_most_frequent_delimiter_comes_first() {
        assert_eq!(ranked(b"Name, first;upn;installationId"), [b';', b',']);
        assert_eq!(ranked(b"upn\tinstallationId\tnotes"), [b'\t']);
        assert_eq!(ranked(b"a|b|c,d"), [b'|', b',']);
    }

    #[test]
    fn ties_prefer_the_comma() {
        assert_eq!(ranked(b"a,b;c"), [b',', b';']);
    }

    #[test]
    fn delimiters_inside_quotes_do_not_count() {
        assert_eq!(ranked(b"\"a;b;c\",\"d;e\""), [b',']);
        assert_eq!(ranked(b"\"User, Principal\";\"Id\""), [b';']);
    }

    #[test]
    fn a_line_without_candidates_ranks_none() {
        assert!(ranked(b"userPrincipalName").is_empty());
    }
}
