//! OData query options as Graph reads them on the routes served here (`$filter`, `$expand`,
//! `$skiptoken`), and server-side paging with an absolute `@odata.nextLink`.

use std::ops::Range;

use percent_encoding::{percent_decode_str, utf8_percent_encode, NON_ALPHANUMERIC};
use serde::Serialize;

use super::base64;
use super::path::unquote;

/// Options Graph accepts on every route here and the simulator ignores.
const IGNORED: [&str; 2] = ["$select", "$top"];

/// The query options of one request, decoded.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) filter: Option<String>,
    pub(crate) expand: Option<String>,
    pub(crate) skiptoken: Option<String>,
    /// Every pair but `$skiptoken`, exactly as received, for the next page's link.
    kept: Vec<String>,
}

impl Options {
    /// Reads a raw query string. `allowed` lists the system options (`$…`) the route takes
    /// besides `$select` and `$top`; any other, or one given twice, is Graph's 400.
    pub(crate) fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Options, String> {
        let mut options = Options::default();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (key, value) = (decode(key)?, decode(value)?);
            let slot = match key.to_ascii_lowercase().as_str() {
                "$filter" if allowed.contains(&"$filter") => &mut options.filter,
                "$expand" if allowed.contains(&"$expand") => &mut options.expand,
                "$skiptoken" if allowed.contains(&"$skiptoken") => &mut options.skiptoken,
                k if IGNORED.contains(&k) || !k.starts_with('$') => {
                    options.kept.push(pair.to_string());
                    continue;
                }
                _ => {
                    return Err(format!(
                        "Query option '{key}' is not allowed on this resource."
                    ))
                }
            };
            if slot.replace(value).is_some() {
                return Err(format!(
                    "Query option '{key}' was specified more than once."
                ));
            }
            if !key.eq_ignore_ascii_case("$skiptoken") {
                options.kept.push(pair.to_string());
            }
        }
        Ok(options)
    }
}

/// A list request's options, checked: a filter on one of the properties the
/// route can filter on, the page asked for, and all of them as received.
pub(crate) struct ListOptions {
    pub(crate) options: Options,
    pub(crate) filter: Option<Equals>,
    pub(crate) skip: Option<usize>,
}

impl ListOptions {
    pub(crate) fn parse(
        query: Option<&str>,
        filterable: &[&'static str],
    ) -> Result<ListOptions, String> {
        let options = Options::parse(query, &["$filter", "$expand", "$skiptoken"])?;
        let filter = options
            .filter
            .as_deref()
            .map(|f| parse_filter(f, filterable))
            .transpose()?;
        let skip = options
            .skiptoken
            .as_deref()
            .map(read_skiptoken)
            .transpose()?;
        Ok(ListOptions {
            options,
            filter,
            skip,
        })
    }
}

/// Query strings are form-encoded: `+` is a space, then `%XX` escapes.
fn decode(text: &str) -> Result<String, String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| "The query specified in the URI is not valid.".to_string())
}

/// `$filter={property} eq '{value}'`, the one form the simulator reads.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Equals {
    pub(crate) property: String,
    pub(crate) value: String,
}

/// Reads a filter of the form `property eq 'literal'` (keyword and property in any case,
/// `''` for a quote inside the literal) where the property is one of `properties`; returns the
/// property as spelled in `properties`. Anything else is refused like Graph refuses it.
pub(crate) fn parse_filter(text: &str, properties: &[&'static str]) -> Result<Equals, String> {
    let invalid = || format!("Invalid filter clause: {text}");
    let (property, rest) = text
        .trim()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    let (keyword, literal) = rest
        .trim_start()
        .split_once(char::is_whitespace)
        .ok_or_else(invalid)?;
    if !keyword.eq_ignore_ascii_case("eq") {
        return Err(invalid());
    }
    let value = unquote(literal.trim()).ok_or_else(invalid)?;
    let property = properties
        .iter()
        .find(|p| p.eq_ignore_ascii_case(property))
        .ok_or_else(|| {
            format!("Invalid filter clause: filtering on '{property}' is not supported.")
        })?;
    Ok(Equals {
        property: property.to_string(),
        value,
    })
}

/// Reads `$expand`: navigation properties separated by commas, each maybe with options in
/// parentheses (ignored). Returns the properties as spelled in `properties`.
pub(crate) fn parse_expand(
    text: &str,
    properties: &[&'static str],
    type_name: &str,
) -> Result<Vec<&'static str>, String> {
    let mut expanded = Vec::new();
    for item in split_top_level(text) {
        let name = item.split('(').next().unwrap_or("").trim();
        let Some(found) = properties.iter().find(|p| p.eq_ignore_ascii_case(name)) else {
            return Err(format!(
                "Could not find a property named '{name}' on type '{type_name}'."
            ));
        };
        expanded.push(*found);
    }
    Ok(expanded)
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut items, mut depth, mut start) = (Vec::new(), 0usize, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&text[start..]);
    items
}

const SKIP_PREFIX: &str = "fleetup-sim##skip##";

/// An opaque skip token for the page starting at `offset`.
pub(crate) fn skiptoken(offset: usize) -> String {
    base64::encode(format!("{SKIP_PREFIX}{offset}").as_bytes())
}

/// The offset a skip token stands for, if the simulator made it.
pub(crate) fn read_skiptoken(token: &str) -> Result<usize, String> {
    let invalid = || "The skip token is not valid.".to_string();
    let bytes = base64::decode(token).ok_or_else(invalid)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let offset = text.strip_prefix(SKIP_PREFIX).ok_or_else(invalid)?;
    offset.parse().map_err(|_| invalid())
}

/// How a collection is cut into pages.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paging {
    pub(crate) size: usize,
    /// Graph sometimes answers a first page with nothing in it but a next link.
    pub(crate) empty_first: bool,
}

impl Paging {
    /// The items of the page a request asks for (`skip` from its skip token, `None` for the
    /// first page), and where the next page starts, if there is one.
    pub(crate) fn page(&self, total: usize, skip: Option<usize>) -> (Range<usize>, Option<usize>) {
        let Some(start) = skip else {
            if self.empty_first {
                return (0..0, Some(0));
            }
            return self.page(total, Some(0));
        };
        let start = start.min(total);
        let end = total.min(start.saturating_add(self.size.max(1)));
        (start..end, (end < total).then_some(end))
    }
}

/// The link to the page starting at `offset`: the request's own path and options, plus a skip
/// token, on the simulator's root.
pub(crate) fn next_link(root: &str, raw_path: &str, options: &Options, offset: usize) -> String {
    let token = utf8_percent_encode(&skiptoken(offset), NON_ALPHANUMERIC).to_string();
    let mut pairs = options.kept.clone();
    pairs.push(format!("$skiptoken={token}"));
    format!("{root}{raw_path}?{}", pairs.join("&"))
}

/// A page of a collection, in Graph's shape.
#[derive(Serialize)]
pub(crate) struct Collection<T> {
    #[serde(rename = "@odata.context")]
    pub(crate) context: String,
    pub(crate) value: Vec<T>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    pub(crate) next_link: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP_FILTER: [&str; 2] = ["teamsApp/id", "teamsApp/externalId"];

    #[test]
    fn options_are_decoded_and_checked() {
        let raw = "$expand=teamsApp,teamsAppDefinition&%24filter=teamsApp%2Fid+eq+%27a%27&x=1";
        let options = Options::parse(Some(raw), &["$filter", "$expand"]).unwrap();
        assert_eq!(options.filter.as_deref(), Some("teamsApp/id eq 'a'"));
        assert_eq!(
            options.expand.as_deref(),
            Some("teamsApp,teamsAppDefinition")
        );

        assert!(Options::parse(Some("$orderby=id"), &["$filter"]).is_err());
        assert!(Options::parse(Some("$filter=a&$FILTER=b"), &["$filter"]).is_err());
        assert!(Options::parse(Some("$filter=%FF"), &["$filter"]).is_err());
        assert!(Options::parse(Some("$select=id&$top=5"), &[]).is_ok());
        assert_eq!(Options::parse(None, &[]).unwrap(), Options::default());
    }

    #[test]
    fn filters_of_the_eq_form_are_read_in_any_case() {
        let equals = parse_filter("TEAMSAPP/ID  EQ  'ab''c'", &APP_FILTER).unwrap();
        assert_eq!(
            equals,
            Equals {
                property: "teamsApp/id".into(),
                value: "ab'c".into()
            }
        );
        let equals = parse_filter(" teamsApp/externalId eq 'x' ", &APP_FILTER).unwrap();
        assert_eq!(equals.property, "teamsApp/externalId");
    }

    #[test]
    fn other_filters_are_refused() {
        for text in [
            "teamsApp/id ne 'a'",
            "teamsApp/id eq a",
            "teamsApp/id eq 'a",
            "teamsApp/displayName eq 'a'",
            "teamsApp/id eq 'a' and teamsApp/id eq 'b'",
            "startswith(teamsApp/id,'a')",
            "",
        ] {
            assert!(parse_filter(text, &APP_FILTER).is_err(), "{text}");
        }
    }

    #[test]
    fn expand_names_the_unknown_property() {
        let known = ["teamsApp", "teamsAppDefinition"];
        let expanded = parse_expand(
            "TeamsApp($select=id,displayName), teamsAppDefinition",
            &known,
            "t",
        );
        assert_eq!(expanded.unwrap(), vec!["teamsApp", "teamsAppDefinition"]);
        let error = parse_expand("teamsApp,chat", &known, "microsoft.graph.x").unwrap_err();
        assert!(
            error.contains("'chat'") && error.contains("microsoft.graph.x"),
            "{error}"
        );
    }

    #[test]
    fn skip_tokens_round_trip_and_forgeries_are_refused() {
        for offset in [0, 20, 123_456] {
            assert_eq!(read_skiptoken(&skiptoken(offset)), Ok(offset));
        }
        assert!(read_skiptoken("20").is_err());
        assert!(read_skiptoken(&base64::encode(b"other##7")).is_err());
    }

    #[test]
    fn pages_cover_every_item_once() {
        for empty_first in [false, true] {
            let paging = Paging {
                size: 3,
                empty_first,
            };
            for total in [0, 1, 3, 7] {
                let (mut seen, mut skip, mut pages) = (Vec::new(), None, 0);
                loop {
                    let (range, next) = paging.page(total, skip);
                    seen.extend(range);
                    pages += 1;
                    match next {
                        Some(next) => skip = Some(next),
                        None => break,
                    }
                }
                assert_eq!(seen, (0..total).collect::<Vec<_>>());
                let expected = total.div_ceil(3).max(1) + usize::from(empty_first);
                assert_eq!(pages, expected, "{total} items, empty first {empty_first}");
            }
        }
    }

    #[test]
    fn the_next_link_keeps_the_options_and_encodes_the_token() {
        let raw = "$filter=teamsApp%2Fid%20eq%20'a'&$skiptoken=old";
        let options = Options::parse(Some(raw), &["$filter", "$skiptoken"]).unwrap();
        let link = next_link(
            "http://127.0.0.1:1",
            "/v1.0/users/a/teamwork/installedApps",
            &options,
            20,
        );
        let (base, query) = link.split_once('?').unwrap();
        assert_eq!(
            base,
            "http://127.0.0.1:1/v1.0/users/a/teamwork/installedApps"
        );
        assert!(
            query.starts_with("$filter=teamsApp%2Fid%20eq%20'a'&$skiptoken="),
            "{query}"
        );
        assert!(!query.contains("old"), "{query}");

        let again = Options::parse(Some(query), &["$filter", "$skiptoken"]).unwrap();
        assert_eq!(read_skiptoken(again.skiptoken.as_deref().unwrap()), Ok(20));

        // The token for the first page ends in `=`, which must travel escaped.
        assert!(skiptoken(0).ends_with('='));
        assert!(next_link("r", "/p", &options, 0).ends_with("%3D"));
    }
}
