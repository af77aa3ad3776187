//! What a row must hold before anything is sent: both fields present, UTF-8,
//! not blank, not mangled, and an installation id that is not a GUID.

use csv::ByteRecord;

/// The two fields a row needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    User,
    Installation,
}

impl Field {
    fn name(self) -> &'static str {
        match self {
            Field::User => "user",
            Field::Installation => "installation",
        }
    }
}

/// The longest user or installation id sent; anything longer is not an id.
const MAX_FIELD: usize = 1024;

/// True for a row with nothing in it but delimiters and spaces, as Excel
/// writes below the data (`;;`). Such a row is skipped, not reported.
pub fn is_blank(record: &ByteRecord) -> bool {
    record
        .iter()
        .all(|field| field.iter().all(u8::is_ascii_whitespace))
}

/// The trimmed text of `field` in column `column`, or why it cannot be sent.
pub fn field(record: &ByteRecord, column: usize, field: Field) -> Result<&str, String> {
    let name = field.name();
    let Some(bytes) = record.get(column) else {
        return Err(format!(
            "the row has {} field(s) but the {name} column is number {}; \
             fill in the missing field or remove the row",
            record.len(),
            column + 1
        ));
    };
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(format!(
            "the {name} field is not valid UTF-8 (the file was probably saved as \
             ANSI/Windows-1252); save it as \"CSV UTF-8\" and run again"
        ));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(format!(
            "the {name} field is empty; fill it in or remove the row"
        ));
    }
    mangled(text, name)?;
    if text.len() > MAX_FIELD {
        return Err(format!(
            "the {name} field is {} bytes long; no user or installation id is longer than \
             {MAX_FIELD} (a UPN has at most 113 characters, an installation id about 100), so \
             the column or the quotes are probably wrong on this line",
            text.len()
        ));
    }
    if field == Field::Installation {
        guid_instead_of_installation(text)?;
    }
    Ok(text)
}

/// Text that no id holds, and that only a broken save or a broken quote
/// puts there: sending it would only earn an error from Graph.
fn mangled(text: &str, name: &str) -> Result<(), String> {
    // Every character looked for below starts with one of these bytes: a
    // control below 0x20, DEL, C2 (U+0080 to U+009F) or EF (U+FFFD). Most
    // ids hold none, and one pass over the bytes clears them.
    if !text
        .bytes()
        .any(|b| b < 0x20 || matches!(b, 0x7F | 0xC2 | 0xEF))
    {
        return Ok(());
    }
    if text.contains('\u{FFFD}') {
        return Err(format!(
            "the {name} field contains U+FFFD (\u{FFFD}), left where text was converted \
             from the wrong encoding; export the file again as \"CSV UTF-8\""
        ));
    }
    if text.contains(['\n', '\r']) {
        return Err(format!(
            "the {name} field runs over several lines, probably because of an \
             unclosed quote; check the quotes on this line"
        ));
    }
    if text.chars().any(char::is_control) {
        return Err(format!(
            "the {name} field contains a control character (a tab or similar); \
             remove it or check the delimiter"
        ));
    }
    Ok(())
}

/// Installation ids are long base64 strings; a GUID in their place is
/// almost always the app's id copied from the catalog or the manifest.
fn guid_instead_of_installation(text: &str) -> Result<(), String> {
    if !looks_like_guid(text) {
        return Ok(());
    }
    Err(format!(
        "the installation field {text:?} looks like a GUID, probably the app's catalog id; \
         installation ids are long base64 strings from \
         GET /users/{{user}}/teamwork/installedApps. To upgrade by app, run with \
         --app-id {text} and a list of users"
    ))
}

/// A GUID in any case, hyphenated, with or without braces.
pub fn looks_like_guid(text: &str) -> bool {
    let bare = text
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .unwrap_or(text);
    bare.len() == 36
        && bare.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&[u8]]) -> ByteRecord {
        ByteRecord::from(fields.to_vec())
    }

    #[test]
    fn guids_are_recognised_in_any_case_and_with_braces() {
        assert!(looks_like_guid("4f302b5e-4562-4792-8f6f-01842cc39122"));
        assert!(looks_like_guid("4F302B5E-4562-4792-8F6F-01842CC39122"));
        assert!(looks_like_guid("{4f302b5e-4562-4792-8F6F-01842cc39122}"));
        assert!(!looks_like_guid("{4f302b5e-4562-4792-8f6f-01842cc39122"));
        assert!(!looks_like_guid("4f302b5e45624792-8f6f-01842cc39122a"));
        assert!(!looks_like_guid("4f302b5g-4562-4792-8f6f-01842cc39122"));
        assert!(!looks_like_guid(
            "MCMjMTk6YTJjNjk2ZDYtYzA0YS00ZjBlLWE2N2ItNGY2NjU1YjM1YjU5IyMxYmE0ZTk5MC03OWY="
        ));
    }

    #[test]
    fn a_guid_installation_is_refused_with_the_hint() {
        let row = record(&[b"u@x", b"{4F302B5E-4562-4792-8F6F-01842CC39122}"]);
        let problem = field(&row, 1, Field::Installation).unwrap_err();
        assert!(problem.contains("catalog id"), "{problem}");
        assert!(problem.contains("installedApps"), "{problem}");
        assert!(problem.contains("--app-id"), "{problem}");
    }

    #[test]
    fn a_guid_user_is_an_object_id_and_fine() {
        let row = record(&[b"4F302B5E-4562-4792-8F6F-01842CC39122", b"i"]);
        let user = field(&row, 0, Field::User).unwrap();
        assert_eq!(user, "4F302B5E-4562-4792-8F6F-01842CC39122");
    }

    #[test]
    fn spaces_around_values_are_trimmed_and_inner_text_kept() {
        let row = record(&[b"  o'neil+tag@x \t", b" a/b+c== "]);
        assert_eq!(field(&row, 0, Field::User).unwrap(), "o'neil+tag@x");
        assert_eq!(field(&row, 1, Field::Installation).unwrap(), "a/b+c==");
    }

    #[test]
    fn mangled_text_is_refused() {
        let row = record(&[b"Jos\xEF\xBF\xBD@x", b"a\nb", b"a\x07b"]);
        let replacement = field(&row, 0, Field::User).unwrap_err();
        assert!(replacement.contains("CSV UTF-8"), "{replacement}");
        let newline = field(&row, 1, Field::Installation).unwrap_err();
        assert!(newline.contains("unclosed quote"), "{newline}");
        let control = field(&row, 2, Field::User).unwrap_err();
        assert!(control.contains("control character"), "{control}");
    }

    #[test]
    fn rows_of_only_delimiters_and_spaces_are_blank() {
        assert!(is_blank(&record(&[b"", b" ", b""])));
        assert!(!is_blank(&record(&[b"", b"x"])));
    }
}
