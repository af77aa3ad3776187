//! The simulated tenant's directory: the app catalog with every version of each app, and
//! which user has which app installed at which version. Built in code or read from JSON.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{base64, SimError};

/// Where one version of an app stands in the catalog's review (`teamsAppPublishingState`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishingState {
    Published,
    Submitted,
    Rejected,
}

impl PublishingState {
    /// Graph's spelling inside definition ids: `Published`.
    fn title(self) -> &'static str {
        match self {
            PublishingState::Published => "Published",
            PublishingState::Submitted => "Submitted",
            PublishingState::Rejected => "Rejected",
        }
    }
}

/// One version of an app in the catalog (Graph's `teamsAppDefinition`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppDefinition {
    pub id: String,
    pub version: String,
    pub publishing_state: PublishingState,
}

/// An app in the catalog (Graph's `teamsApp`): `id` is the catalog id, `external_id` the
/// manifest id, which a careless client confuses with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogApp {
    pub id: String,
    pub external_id: String,
    pub display_name: String,
    pub definitions: Vec<AppDefinition>,
}

impl CatalogApp {
    /// The `published` definition with the highest version; what an upgrade or install gets.
    pub fn newest_published(&self) -> Option<&AppDefinition> {
        self.definitions
            .iter()
            .filter(|d| d.publishing_state == PublishingState::Published)
            .max_by(|a, b| compare_versions(&a.version, &b.version))
    }
}

/// One user's installation of one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installation {
    /// Opaque and case-sensitive, like the base64 it is.
    pub id: String,
    /// As first given; matched case-insensitively.
    pub user: String,
    pub app_id: String,
    pub version: String,
}

/// What an installation id means for the user it was sent for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Lookup<'a> {
    Mine(&'a Installation),
    /// Another user's installation: Graph answers 404 under this user.
    Foreign,
    Unknown,
}

/// How an install request for an app from the catalog turned out.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Installed {
    Created(String),
    AlreadyThere,
    NotInCatalog,
}

/// The catalog and the installations. `Default` is an empty tenant, in which every upgrade
/// names an installation the simulator does not know, and is answered 204 as before.
///
/// Users are known by the one spelling given (a UPN or an object id, any case): the
/// simulator does not know that a UPN and an object id may name the same person.
#[derive(Clone, Default)]
pub struct Tenant {
    apps: Vec<CatalogApp>,
    /// Lowercased user -> installations, in the order they were made.
    installed: HashMap<String, Vec<Installation>>,
    /// Installation id -> lowercased user.
    owners: HashMap<String, String>,
}

impl Tenant {
    /// Adds an app to the catalog, or replaces the one with that id (any case).
    pub fn add_app(
        &mut self,
        app_id: &str,
        name: &str,
        definitions: &[(&str, PublishingState)],
    ) -> &mut Self {
        let external_id = derived_external_id(app_id);
        self.put_app(app_id, &external_id, name, definitions);
        self
    }

    /// Installs an app for a user at a version, replacing that user's installation of the
    /// same app, and returns the id it generated: base64 of the user and app ids (scrambled,
    /// so that `+` and `/` turn up as they do in the field), 100 characters for two GUIDs.
    pub fn install(&mut self, user: &str, app_id: &str, version: &str) -> String {
        let id = installation_id(user, app_id);
        self.install_with_id(user, app_id, version, &id);
        id
    }

    /// Like `install`, with the id given: any earlier installation with that id goes.
    pub fn install_with_id(
        &mut self,
        user: &str,
        app_id: &str,
        version: &str,
        id: &str,
    ) -> &mut Self {
        self.forget(id);
        let key = user.to_lowercase();
        let mine = self.installed.entry(key.clone()).or_default();
        if let Some(old) = mine
            .iter()
            .position(|i| i.app_id.eq_ignore_ascii_case(app_id))
        {
            let old = mine.remove(old);
            self.owners.remove(&old.id);
        }
        let installation = Installation {
            id: id.to_string(),
            user: user.to_string(),
            app_id: app_id.to_string(),
            version: version.to_string(),
        };
        self.installed
            .entry(key.clone())
            .or_default()
            .push(installation);
        self.owners.insert(id.to_string(), key);
        self
    }

    /// The app with this catalog id, in any case.
    pub fn app(&self, app_id: &str) -> Option<&CatalogApp> {
        self.apps.iter().find(|a| a.id.eq_ignore_ascii_case(app_id))
    }

    pub fn apps(&self) -> &[CatalogApp] {
        &self.apps
    }

    /// The newest published version of an app, if it has one.
    pub fn newest_published(&self, app_id: &str) -> Option<&str> {
        let definition = self.app(app_id)?.newest_published()?;
        Some(&definition.version)
    }

    /// A user's installations (user in any case), oldest first.
    pub fn installations(&self, user: &str) -> &[Installation] {
        self.installed
            .get(&user.to_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// The installation with this exact id, whoever it belongs to.
    pub fn installation(&self, id: &str) -> Option<&Installation> {
        let owner = self.owners.get(id)?;
        self.installed.get(owner)?.iter().find(|i| i.id == id)
    }

    /// Reads a tenant from a JSON file:
    ///
    /// ```json
    /// {
    ///   "apps": [
    ///     {
    ///       "id": "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11",
    ///       "externalId": "optional manifest id; derived from id when left out",
    ///       "displayName": "Contoso Helpdesk",
    ///       "definitions": [
    ///         { "version": "1.9.2", "publishingState": "published" },
    ///         { "version": "1.10.0", "publishingState": "published" },
    ///         { "version": "2.0.0", "publishingState": "submitted" }
    ///       ]
    ///     }
    ///   ],
    ///   "installations": [
    ///     { "user": "adele@contoso.com", "appId": "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11",
    ///       "version": "1.9.2", "id": "optional; generated like Tenant::install when left out" }
    ///   ]
    /// }
    /// ```
    ///
    /// `publishingState` is `published`, `submitted` or `rejected`. Unknown fields, an app
    /// listed twice, an installation of an app not in `apps`, one user with the same app
    /// twice, and one id used twice are refused.
    pub fn load(path: &Path) -> Result<Tenant, SimError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimError::TenantRead {
            path: path.to_path_buf(),
            source,
        })?;
        let file: TenantFile = serde_json::from_str(&text).map_err(|e| SimError::TenantFile {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            reason: e.to_string(),
        })?;
        file.into_tenant().map_err(|reason| SimError::TenantEntry {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// The catalog entry of an app, or a stand-in without versions when an installation was
    /// built for an app the catalog does not hold.
    pub(crate) fn catalog_entry(&self, app_id: &str) -> CatalogApp {
        self.app(app_id).cloned().unwrap_or_else(|| CatalogApp {
            id: app_id.to_string(),
            external_id: derived_external_id(app_id),
            display_name: app_id.to_string(),
            definitions: Vec::new(),
        })
    }

    /// The catalog definition an installation runs, or a published stand-in for a version the
    /// catalog does not list.
    pub(crate) fn installed_definition(&self, installation: &Installation) -> AppDefinition {
        let app = self.app(&installation.app_id);
        let listed = app.and_then(|a| {
            a.definitions
                .iter()
                .find(|d| d.version == installation.version)
        });
        listed.cloned().unwrap_or_else(|| {
            let state = PublishingState::Published;
            AppDefinition {
                id: definition_id(&installation.app_id, &installation.version, state),
                version: installation.version.clone(),
                publishing_state: state,
            }
        })
    }

    /// Looks an installation id up for the user it was sent for.
    pub(crate) fn lookup(&self, user: &str, id: &str) -> Lookup<'_> {
        match self.owners.get(id) {
            Some(owner) if *owner == user.to_lowercase() => {
                self.installation(id).map_or(Lookup::Unknown, Lookup::Mine)
            }
            Some(_) => Lookup::Foreign,
            None => Lookup::Unknown,
        }
    }

    /// Moves one of the user's installations to its app's newest published version (it stays
    /// where it is when the app has none), as Graph's upgrade does.
    pub(crate) fn upgrade(&mut self, user: &str, id: &str) -> Lookup<'_> {
        let newest = match self.lookup(user, id) {
            Lookup::Mine(mine) => self.newest_published(&mine.app_id).map(str::to_string),
            Lookup::Foreign => return Lookup::Foreign,
            Lookup::Unknown => return Lookup::Unknown,
        };
        let mine = self
            .installed
            .get_mut(&user.to_lowercase())
            .and_then(|list| list.iter_mut().find(|i| i.id == id));
        match mine {
            Some(installation) => {
                if let Some(newest) = newest {
                    installation.version = newest;
                }
                Lookup::Mine(installation)
            }
            None => Lookup::Unknown,
        }
    }

    /// Installs the newest published version of a catalog app for a user who lacks it.
    pub(crate) fn install_newest(&mut self, user: &str, app_id: &str) -> Installed {
        let Some(app) = self.app(app_id) else {
            return Installed::NotInCatalog;
        };
        let (app_id, Some(newest)) = (app.id.clone(), app.newest_published()) else {
            return Installed::NotInCatalog;
        };
        let version = newest.version.clone();
        let has_it = self
            .installations(user)
            .iter()
            .any(|i| i.app_id.eq_ignore_ascii_case(&app_id));
        if has_it {
            return Installed::AlreadyThere;
        }
        Installed::Created(self.install(user, &app_id, &version))
    }

    fn put_app(
        &mut self,
        app_id: &str,
        external_id: &str,
        name: &str,
        definitions: &[(&str, PublishingState)],
    ) {
        let app = CatalogApp {
            id: app_id.to_string(),
            external_id: external_id.to_string(),
            display_name: name.to_string(),
            definitions: definitions
                .iter()
                .map(|(version, state)| AppDefinition {
                    id: definition_id(app_id, version, *state),
                    version: version.to_string(),
                    publishing_state: *state,
                })
                .collect(),
        };
        match self
            .apps
            .iter()
            .position(|a| a.id.eq_ignore_ascii_case(app_id))
        {
            Some(i) => self.apps[i] = app,
            None => self.apps.push(app),
        }
    }

    fn forget(&mut self, id: &str) {
        if let Some(owner) = self.owners.remove(id) {
            if let Some(list) = self.installed.get_mut(&owner) {
                list.retain(|i| i.id != id);
            }
        }
    }
}

// Written by hand: a tenant of 100,000 installations must not flood a debug log line.
impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("apps", &self.apps.len())
            .field("installations", &self.owners.len())
            .finish()
    }
}

/// Orders dotted versions part by part, numbers numerically (`1.10.0` > `1.9.2`); a missing
/// part counts as `0`, and a part that is not a number sorts above any number.
pub(crate) fn compare_versions(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.trim().split('.'), b.trim().split('.'));
    loop {
        let (x, y) = match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (x, y) => (x.unwrap_or("0"), y.unwrap_or("0")),
        };
        let order = compare_parts(x, y);
        if order != Ordering::Equal {
            return order;
        }
    }
}

fn compare_parts(x: &str, y: &str) -> Ordering {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match (number(x), number(y)) {
        // Compared as digit strings, so that no part is too long to compare.
        (true, true) => {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        }
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => x.cmp(y),
    }
}

/// Base64 of `user##app`, each byte scrambled with a fixed key: Graph's ids decode to the
/// user and app ids, but plain base64 of those ASCII ids would never hold `+` or `/`, and a
/// client must be shown ids that do.
fn installation_id(user: &str, app_id: &str) -> String {
    let key = Sha256::digest(b"fleetup simulator installation id");
    let text = format!("{}##{}", user.to_lowercase(), app_id.to_lowercase());
    let bytes: Vec<u8> = text
        .bytes()
        .zip(key.iter().cycle())
        .map(|(b, k)| b ^ k)
        .collect();
    base64::encode(&bytes)
}

/// Graph's definition ids are base64 of `appId##version##State`.
fn definition_id(app_id: &str, version: &str, state: PublishingState) -> String {
    base64::encode(format!("{app_id}##{version}##{}", state.title()).as_bytes())
}

/// A manifest id that is stable for an app yet never equal to its catalog id.
fn derived_external_id(app_id: &str) -> String {
    let digest = Sha256::digest(format!("external id of {}", app_id.to_lowercase()));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    #[serde(default)]
    apps: Vec<AppEntry>,
    #[serde(default)]
    installations: Vec<InstallationEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct AppEntry {
    id: String,
    external_id: Option<String>,
    display_name: String,
    #[serde(default)]
    definitions: Vec<DefinitionEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DefinitionEntry {
    version: String,
    publishing_state: PublishingState,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InstallationEntry {
    user: String,
    app_id: String,
    version: String,
    id: Option<String>,
}

impl TenantFile {
    fn into_tenant(self) -> Result<Tenant, String> {
        let mut tenant = Tenant::default();
        for (i, app) in self.apps.iter().enumerate() {
            app.check(&tenant)
                .map_err(|e| format!("apps[{i}] ({}): {e}", app.id))?;
            let definitions: Vec<(&str, PublishingState)> = app
                .definitions
                .iter()
                .map(|d| (d.version.as_str(), d.publishing_state))
                .collect();
            let external_id = app
                .external_id
                .clone()
                .unwrap_or_else(|| derived_external_id(&app.id));
            tenant.put_app(&app.id, &external_id, &app.display_name, &definitions);
        }
        for (i, entry) in self.installations.iter().enumerate() {
            let at = |e: String| format!("installations[{i}] (user {}): {e}", entry.user);
            entry.check(&tenant).map_err(at)?;
            match &entry.id {
                Some(id) => {
                    tenant.install_with_id(&entry.user, &entry.app_id, &entry.version, id);
                }
                None => {
                    tenant.install(&entry.user, &entry.app_id, &entry.version);
                }
            }
        }
        Ok(tenant)
    }
}

impl AppEntry {
    fn check(&self, tenant: &Tenant) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("the id is empty".to_string());
        }
        if tenant.app(&self.id).is_some() {
            return Err("this app id is listed twice".to_string());
        }
        if self.definitions.iter().any(|d| d.version.trim().is_empty()) {
            return Err("a definition has an empty version".to_string());
        }
        Ok(())
    }
}

impl InstallationEntry {
    fn check(&self, tenant: &Tenant) -> Result<(), String> {
        if self.user.trim().is_empty() || self.version.trim().is_empty() {
            return Err("user and version must not be empty".to_string());
        }
        if tenant.app(&self.app_id).is_none() {
            return Err(format!("app '{}' is not in apps", self.app_id));
        }
        let twice = tenant
            .installations(&self.user)
            .iter()
            .any(|i| i.app_id.eq_ignore_ascii_case(&self.app_id));
        if twice {
            return Err(format!("this user has app '{}' twice", self.app_id));
        }
        match &self.id {
            Some(id) if id.is_empty() => Err("the id is empty".to_string()),
            Some(id) if tenant.installation(id).is_some() => {
                Err(format!("installation id '{id}' is used twice"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use PublishingState::{Published, Rejected, Submitted};

    const APP: &str = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";

    #[test]
    fn versions_compare_part_by_part_as_numbers() {
        let ordered = [
            "0.9", "1.0", "1.0.1", "1.2.0", "1.9.2", "1.10.0", "2.0.0", "10.0.0",
        ];
        for pair in ordered.windows(2) {
            assert_eq!(
                compare_versions(pair[0], pair[1]),
                Ordering::Less,
                "{pair:?}"
            );
            assert_eq!(
                compare_versions(pair[1], pair[0]),
                Ordering::Greater,
                "{pair:?}"
            );
        }
        assert_eq!(compare_versions("1.0", "1.0.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.02", "1.2"), Ordering::Equal);
        let huge = "1.99999999999999999999999";
        assert_eq!(compare_versions(huge, "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1.0.x", "1.0.9"), Ordering::Greater);
    }

    #[test]
    fn the_newest_published_skips_submitted_and_rejected_versions() {
        let mut tenant = Tenant::default();
        tenant.add_app(
            APP,
            "Helpdesk",
            &[
                ("1.9.2", Published),
                ("1.10.0", Published),
                ("1.2.0", Published),
                ("3.0.0", Submitted),
                ("2.0.0", Rejected),
            ],
        );
        assert_eq!(tenant.newest_published(APP), Some("1.10.0"));
        assert_eq!(tenant.newest_published(&APP.to_uppercase()), Some("1.10.0"));

        tenant.add_app(APP, "Helpdesk", &[("1.0.0", Submitted)]);
        assert_eq!(tenant.apps().len(), 1);
        assert_eq!(tenant.newest_published(APP), None);
    }

    #[test]
    fn generated_ids_look_like_graphs_and_belong_to_their_user() {
        let mut tenant = Tenant::default();
        tenant.add_app(APP, "Helpdesk", &[("1.0.0", Published)]);
        let users: Vec<String> = (0..20).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let ids: Vec<String> = users
            .iter()
            .map(|u| tenant.install(u, APP, "1.0.0"))
            .collect();

        assert!(
            ids.iter().all(|id| id.len() == 100 && id.ends_with('=')),
            "{ids:?}"
        );
        let with_specials = ids.iter().filter(|id| id.contains(['+', '/'])).count();
        assert!(with_specials >= 10, "{ids:?}");
        assert!(base64::decode(&ids[0]).is_some());

        assert!(matches!(
            tenant.lookup(&users[0].to_uppercase(), &ids[0]),
            Lookup::Mine(_)
        ));
        assert_eq!(tenant.lookup(&users[1], &ids[0]), Lookup::Foreign);
        assert_eq!(tenant.lookup(&users[0], "nope"), Lookup::Unknown);
        assert_eq!(
            tenant.lookup(&users[0], &ids[0].to_lowercase()),
            Lookup::Unknown
        );
    }

    #[test]
    fn installing_again_replaces_and_install_with_id_moves_an_id() {
        let mut tenant = Tenant::default();
        let first = tenant.install("Adele@contoso.com", APP, "1.0.0");
        let again = tenant.install("adele@contoso.com", APP, "1.1.0");
        assert_eq!(first, again);
        assert_eq!(tenant.installations("ADELE@contoso.com").len(), 1);
        assert_eq!(tenant.installation(&first).unwrap().version, "1.1.0");

        tenant.install_with_id("bob@contoso.com", APP, "1.0.0", &first);
        assert!(tenant.installations("adele@contoso.com").is_empty());
        assert_eq!(tenant.installation(&first).unwrap().user, "bob@contoso.com");
    }

    #[test]
    fn upgrade_and_install_newest_follow_the_catalog() {
        let mut tenant = Tenant::default();
        tenant.add_app(
            APP,
            "Helpdesk",
            &[("1.0.0", Published), ("1.1.0", Published)],
        );
        let id = tenant.install("a@x", APP, "1.0.0");

        assert_eq!(tenant.upgrade("b@x", &id), Lookup::Foreign);
        assert_eq!(tenant.installation(&id).unwrap().version, "1.0.0");
        assert!(matches!(tenant.upgrade("A@X", &id), Lookup::Mine(i) if i.version == "1.1.0"));

        assert_eq!(tenant.install_newest("a@x", APP), Installed::AlreadyThere);
        assert_eq!(
            tenant.install_newest("b@x", "unknown"),
            Installed::NotInCatalog
        );
        let Installed::Created(new) = tenant.install_newest("b@x", &APP.to_uppercase()) else {
            panic!("b@x lacked the app");
        };
        let installation = tenant.installation(&new).unwrap();
        assert_eq!(
            (installation.app_id.as_str(), installation.version.as_str()),
            (APP, "1.1.0")
        );
    }

    fn load(text: &str) -> (tempfile::NamedTempFile, Result<Tenant, SimError>) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let tenant = Tenant::load(file.path());
        (file, tenant)
    }

    #[test]
    fn load_reads_the_documented_format() {
        let text = r#"{
          "apps": [
            {"id": "app-1", "displayName": "One", "externalId": "ext-1",
             "definitions": [{"version": "1.0.0", "publishingState": "published"},
                             {"version": "2.0.0", "publishingState": "submitted"}]},
            {"id": "app-2", "displayName": "Two"}
          ],
          "installations": [
            {"user": "a@x", "appId": "app-1", "version": "1.0.0", "id": "abc+/=="},
            {"user": "b@x", "appId": "APP-1", "version": "0.9"}
          ]
        }"#;
        let (_file, tenant) = load(text);
        let tenant = tenant.unwrap();
        assert_eq!(tenant.app("app-1").unwrap().external_id, "ext-1");
        assert_ne!(tenant.app("app-2").unwrap().external_id, "app-2");
        assert_eq!(tenant.newest_published("app-1"), Some("1.0.0"));
        assert_eq!(tenant.installation("abc+/==").unwrap().user, "a@x");
        assert_eq!(tenant.installations("b@x")[0].version, "0.9");
        assert_eq!(
            format!("{tenant:?}"),
            "Tenant { apps: 2, installations: 2 }"
        );
    }

    #[test]
    fn load_errors_name_the_file_and_the_place() {
        let (file, tenant) = load("{\"apps\": [\n {\"id\": \"a\", \"name\": \"x\"}]}");
        let message = tenant.unwrap_err().to_string();
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("line 2"), "{message}");
        assert!(message.contains("name"), "{message}");

        let text = r#"{"installations": [{"user": "a@x", "appId": "nope", "version": "1"}]}"#;
        let message = load(text).1.unwrap_err().to_string();
        assert!(
            message.contains("installations[0]") && message.contains("nope"),
            "{message}"
        );

        let text = r#"{"apps": [{"id": "a", "displayName": "A",
            "definitions": [{"version": "1", "publishingState": "live"}]}]}"#;
        assert!(load(text).1.unwrap_err().to_string().contains("live"));

        let message = Tenant::load(Path::new("/nonexistent/tenant.json"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/tenant.json"), "{message}");
    }
}
