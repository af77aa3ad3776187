//! Version checks: what an installation runs and what the catalog's newest
//! published version is, read from Graph's bodies, compared, and cached.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tokio::sync::OnceCell;

/// Compare two app versions part by part (`1.10.0` is newer than `1.9.2`),
/// numerically where both parts are numbers, as text otherwise. Missing
/// parts count as zero, so `1.0` and `1.0.0` are the same version.
pub fn compare(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<String> { v.trim().split('.').map(str::to_owned).collect() };
    let (a, b) = (parts(a), parts(b));
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).map_or("0", String::as_str);
        let y = b.get(i).map_or("0", String::as_str);
        let order = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    Ordering::Equal
}

/// What a read said about one installation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub id: String,
    pub app_id: Option<String>,
    pub version: Option<String>,
}

#[derive(Deserialize)]
struct InstallationBody {
    #[serde(default)]
    id: String,
    #[serde(rename = "teamsAppDefinition")]
    definition: Option<DefinitionBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DefinitionBody {
    teams_app_id: Option<String>,
    version: Option<String>,
    publishing_state: Option<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    #[serde(default = "Vec::new")]
    value: Vec<T>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

impl From<InstallationBody> for Installed {
    fn from(body: InstallationBody) -> Installed {
        let definition = body.definition;
        Installed {
            id: body.id,
            app_id: definition.as_ref().and_then(|d| d.teams_app_id.clone()),
            version: definition.and_then(|d| d.version),
        }
    }
}

/// A body Graph sent that is not the shape it documents.
#[derive(Debug, thiserror::Error)]
#[error("Graph's answer could not be read ({0})")]
pub struct BodyError(String);

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, BodyError> {
    serde_json::from_slice(body).map_err(|err| BodyError(err.to_string()))
}

/// `GET …/installedApps/{id}?$expand=teamsAppDefinition`.
pub fn installation(body: &[u8]) -> Result<Installed, BodyError> {
    parse::<InstallationBody>(body).map(Installed::from)
}

/// One page of `GET …/installedApps?$filter=…`: the installations on it and
/// the link to the next page. Graph may send an empty page with a next link,
/// so only the absence of a link ends the list.
pub fn installation_page(body: &[u8]) -> Result<(Vec<Installed>, Option<String>), BodyError> {
    let page: Page<InstallationBody> = parse(body)?;
    let found = page.value.into_iter().map(Installed::from).collect();
    Ok((found, page.next_link))
}

#[derive(Deserialize)]
struct CatalogAppBody {
    id: String,
    #[serde(rename = "appDefinitions", default)]
    definitions: Vec<DefinitionBody>,
}

/// What the catalog says of one app, from one page of
/// `GET appCatalogs/teamsApps?$filter=id eq '…'&$expand=appDefinitions`.
#[derive(Debug, PartialEq, Eq)]
pub enum CatalogPage {
    /// The app's newest published version (`None`: none is published).
    Found(Option<String>),
    /// Not on this page; look at the next one, if there is a link.
    NotHere(Option<String>),
}

pub fn catalog_page(body: &[u8], app_id: &str) -> Result<CatalogPage, BodyError> {
    let page: Page<CatalogAppBody> = parse(body)?;
    let Some(app) = page
        .value
        .into_iter()
        .find(|app| app.id.eq_ignore_ascii_case(app_id))
    else {
        return Ok(CatalogPage::NotHere(page.next_link));
    };
    let newest = app
        .definitions
        .into_iter()
        .filter(|d| d.publishing_state.as_deref() == Some("published"))
        .filter_map(|d| d.version)
        .max_by(|a, b| compare(a, b));
    Ok(CatalogPage::Found(newest))
}

/// The newest published version of each app, read once per app however
/// many rows ask at once; a read that failed is not kept, so a later row
/// tries again.
#[derive(Default)]
pub struct Newest {
    apps: Mutex<HashMap<String, Arc<OnceCell<Option<String>>>>>,
}

impl Newest {
    /// The cell of one app (any case), to read or fill.
    pub fn cell(&self, app_id: &str) -> Arc<OnceCell<Option<String>>> {
        let mut apps = self.apps.lock().expect("catalog cache lock");
        apps.entry(app_id.to_ascii_lowercase()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_part_by_part_as_numbers() {
        assert_eq!(compare("1.10.0", "1.9.2"), Ordering::Greater);
        assert_eq!(compare("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare("2.0.0", "10.0.0"), Ordering::Less);
        assert_eq!(compare(" 1.2.3 ", "1.2.3"), Ordering::Equal);
        assert_eq!(compare("1.0.0-beta", "1.0.0-alpha"), Ordering::Greater);
        assert_eq!(compare("1.0.1", "1.0"), Ordering::Greater);
    }

    #[test]
    fn an_installation_body_gives_its_app_and_version() {
        let body = br#"{"@odata.context":"x","id":"abc=",
            "teamsAppDefinition":{"id":"d","teamsAppId":"app-1","version":"1.9.2",
            "publishingState":"published"}}"#;
        let read = installation(body).unwrap();
        assert_eq!(read.id, "abc=");
        assert_eq!(read.app_id.as_deref(), Some("app-1"));
        assert_eq!(read.version.as_deref(), Some("1.9.2"));
        assert!(installation(b"<html>").is_err());
    }

    #[test]
    fn an_empty_page_with_a_next_link_is_not_the_end() {
        let (found, next) = installation_page(br#"{"value":[],"@odata.nextLink":"n"}"#).unwrap();
        assert!(found.is_empty());
        assert_eq!(next.as_deref(), Some("n"));
        let (found, next) = installation_page(br#"{"value":[{"id":"i"}]}"#).unwrap();
        assert_eq!(found[0].id, "i");
        assert_eq!(found[0].version, None);
        assert_eq!(next, None);
    }

    #[test]
    fn the_newest_published_version_skips_unpublished_ones() {
        let body = br#"{"value":[{"id":"APP-1","appDefinitions":[
            {"version":"1.9.2","publishingState":"published"},
            {"version":"1.10.0","publishingState":"published"},
            {"version":"2.0.0","publishingState":"submitted"}]}]}"#;
        assert_eq!(
            catalog_page(body, "app-1").unwrap(),
            CatalogPage::Found(Some("1.10.0".into()))
        );
        let none = br#"{"value":[{"id":"app-1","appDefinitions":[
            {"version":"2.0.0","publishingState":"rejected"}]}]}"#;
        assert_eq!(
            catalog_page(none, "app-1").unwrap(),
            CatalogPage::Found(None)
        );
        let other = br#"{"value":[],"@odata.nextLink":"n"}"#;
        assert_eq!(
            catalog_page(other, "app-1").unwrap(),
            CatalogPage::NotHere(Some("n".into()))
        );
    }
}
