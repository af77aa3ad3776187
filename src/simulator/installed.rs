//! One user's installed apps as Graph serves them: get one installation, list them page by
//! page with a filter on the app, and install an app from the catalog.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::Value;

use super::catalog::{DefinitionBody, TeamsAppBody};
use super::fleet::Behaviour;
use super::graph::{
    installation_not_found, json_object, missing_permission, only_properties, refuse_problem,
    serve, Call, Gate, READ_PERMISSIONS, WRITE_PERMISSIONS,
};
use super::odata::{self, Collection, Equals, ListOptions, Options, Paging};
use super::path::AppsPath;
use super::server::{lock, Shared};
use super::tenant::{Installation, Installed, Lookup, Tenant};
use super::throttle::RequestClass;
use super::wire;

const EXPANDABLE: [&str; 2] = ["teamsApp", "teamsAppDefinition"];
const FILTERABLE: [&str; 2] = ["teamsApp/id", "teamsApp/externalId"];
const TYPE_NAME: &str = "microsoft.graph.userScopeTeamsAppInstallation";
const BIND: &str = "teamsApp@odata.bind";

/// An installation, with the app and its installed version when they were expanded.
#[derive(Serialize)]
struct InstallationBody {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<String>,
    id: String,
    #[serde(rename = "teamsApp", skip_serializing_if = "Option::is_none")]
    teams_app: Option<TeamsAppBody>,
    #[serde(rename = "teamsAppDefinition", skip_serializing_if = "Option::is_none")]
    definition: Option<DefinitionBody>,
}

/// Which navigation properties a read expands.
#[derive(Clone, Copy, Debug, Default)]
struct Expand {
    app: bool,
    definition: bool,
}

impl InstallationBody {
    fn new(tenant: &Tenant, installation: &Installation, expand: Expand) -> Self {
        let app = tenant.catalog_entry(&installation.app_id);
        let definition = expand.definition.then(|| {
            let installed = tenant.installed_definition(installation);
            DefinitionBody::new(&app, &installed)
        });
        InstallationBody {
            context: None,
            id: installation.id.clone(),
            teams_app: expand.app.then(|| TeamsAppBody::new(&app, false)),
            definition,
        }
    }
}

/// `GET {v}/users/{user}/teamwork/installedApps/{installation}[?$expand=…]`.
pub(crate) async fn get_one(
    call: &Call<'_>,
    path: &AppsPath,
    installation: &str,
    query: Option<&str>,
) -> Response {
    lock(&call.shared.books).installed_app_reads += 1;
    let gate = Gate::apps(path, RequestClass::InstalledAppsRead);
    let check = || {
        refuse_problem(path)?;
        let options = Options::parse(query, &["$expand"]).map_err(bad_request)?;
        read_expand(&options).map_err(bad_request)
    };
    let work = |expand: Expand| {
        let shared = call.shared;
        if shared.config.self_permissions_only {
            return Err(missing_permission(READ_PERMISSIONS));
        }
        let tenant = lock(&shared.tenant);
        let Lookup::Mine(found) = tenant.lookup(&path.user, installation) else {
            return Err(installation_not_found());
        };
        let mut body = InstallationBody::new(&tenant, found, expand);
        body.context = Some(format!("{}/$entity", context(shared, path)));
        Ok(wire::json(StatusCode::OK, &body, SystemTime::now()))
    };
    serve(call, gate, check, work).await
}

/// `GET {v}/users/{user}/teamwork/installedApps[?$filter=…][&$expand=…]`, paged. With only
/// the "Self" permission, another app's installations are not visible: the list is empty.
pub(crate) async fn list(
    call: &Call<'_>,
    path: &AppsPath,
    raw_path: &str,
    query: Option<&str>,
) -> Response {
    lock(&call.shared.books).installed_app_lists += 1;
    let gate = Gate::apps(path, RequestClass::InstalledAppsRead);
    let check = || {
        refuse_problem(path)?;
        read_list_options(query).map_err(bad_request)
    };
    let work = |read: ListRead| {
        let shared = call.shared;
        let tenant = lock(&shared.tenant);
        let visible: Vec<&Installation> = match shared.config.self_permissions_only {
            true => Vec::new(),
            false => tenant
                .installations(&path.user)
                .iter()
                .filter(|i| {
                    read.list
                        .filter
                        .as_ref()
                        .is_none_or(|f| matches(&tenant, i, f))
                })
                .collect(),
        };
        let paging = Paging {
            size: shared.config.page_size,
            empty_first: shared.config.empty_first_page,
        };
        let (range, next) = paging.page(visible.len(), read.list.skip);
        let body = Collection {
            context: context(shared, path),
            value: visible[range]
                .iter()
                .map(|i| InstallationBody::new(&tenant, i, read.expand))
                .collect(),
            next_link: next
                .map(|n| odata::next_link(&shared.root, raw_path, &read.list.options, n)),
        };
        Ok(wire::json(StatusCode::OK, &body, SystemTime::now()))
    };
    serve(call, gate, check, work).await
}

/// `POST {v}/users/{user}/teamwork/installedApps` with `{"teamsApp@odata.bind": "…"}`:
/// installs the app's newest published version. Graph answers 201 with no body, so a client
/// that wants the new installation's id has to list it.
pub(crate) async fn install(call: &Call<'_>, path: &AppsPath, body: &[u8]) -> Response {
    lock(&call.shared.books).installs += 1;
    let gate = Gate::apps(path, RequestClass::InstalledAppsWrite);
    let check = || {
        refuse_problem(path)?;
        let object = json_object(call.headers, body)?
            .ok_or_else(|| Behaviour::bad_request("Empty Payload. JSON content expected."))?;
        only_properties(&object, &[BIND, "consentedPermissionSet"])?;
        bound_app(&call.shared.root, object.get(BIND))
    };
    let work = |app_id: String| install_in_tenant(call.shared, &path.user, &app_id);
    serve(call, gate, check, work).await
}

fn install_in_tenant(shared: &Shared, user: &str, app_id: &str) -> Result<Response, Behaviour> {
    if shared.config.self_permissions_only {
        return Err(missing_permission(WRITE_PERMISSIONS));
    }
    let installed = lock(&shared.tenant).install_newest(user, app_id);
    match installed {
        Installed::Created(_) => {
            lock(&shared.books).installed += 1;
            Ok(StatusCode::CREATED.into_response())
        }
        Installed::AlreadyThere => {
            lock(&shared.books).installs_conflicted += 1;
            let message = "The app is already installed for this user.";
            Err(Behaviour::new(409, "Conflict", message))
        }
        Installed::NotInCatalog => {
            let message = format!("No published app with id '{app_id}' is in the app catalog.");
            Err(Behaviour::new(404, "NotFound", &message))
        }
    }
}

/// The catalog id in `{root}/{v1.0|beta}/appCatalogs/teamsApps/{id}`. The root must be this
/// server's: Graph resolves the link against its own service root, so a client that writes
/// `https://graph.microsoft.com` while talking to another cloud is refused here too.
fn bound_app(root: &str, value: Option<&Value>) -> Result<String, Behaviour> {
    let Some(value) = value else {
        let message = format!("The property '{BIND}' is required.");
        return Err(Behaviour::bad_request(&message));
    };
    let invalid = || {
        Behaviour::bad_request(&format!(
            "The value of '{BIND}' is not a valid link to an app in the catalog: {value}. \
             Expected {root}/v1.0/appCatalogs/teamsApps/{{id}}."
        ))
    };
    let link = value.as_str().ok_or_else(invalid)?;
    let rest = link
        .get(..root.len())
        .filter(|head| head.eq_ignore_ascii_case(root))
        .map(|_| &link[root.len()..])
        .ok_or_else(invalid)?;
    let segments: Vec<&str> = rest.split('/').collect();
    let [empty, version, catalogs, apps, id] = segments.as_slice() else {
        return Err(invalid());
    };
    let fixed = empty.is_empty()
        && (*version == "v1.0" || *version == "beta")
        && catalogs.eq_ignore_ascii_case("appCatalogs")
        && apps.eq_ignore_ascii_case("teamsApps");
    let id = percent_decode_str(id)
        .decode_utf8()
        .map_err(|_| invalid())?;
    if !fixed || id.is_empty() {
        return Err(invalid());
    }
    Ok(id.into_owned())
}

/// `@odata.context` of the user's installedApps.
fn context(shared: &Shared, path: &AppsPath) -> String {
    let user = path.user.replace('\'', "''");
    format!(
        "{}/{}/$metadata#users('{user}')/teamwork/installedApps",
        shared.root, path.version
    )
}

fn bad_request(message: String) -> Behaviour {
    Behaviour::bad_request(&message)
}

fn read_expand(options: &Options) -> Result<Expand, String> {
    let Some(text) = options.expand.as_deref() else {
        return Ok(Expand::default());
    };
    let expanded = odata::parse_expand(text, &EXPANDABLE, TYPE_NAME)?;
    Ok(Expand {
        app: expanded.contains(&"teamsApp"),
        definition: expanded.contains(&"teamsAppDefinition"),
    })
}

/// A list request's options, checked.
struct ListRead {
    list: ListOptions,
    expand: Expand,
}

fn read_list_options(query: Option<&str>) -> Result<ListRead, String> {
    let list = ListOptions::parse(query, &FILTERABLE)?;
    Ok(ListRead {
        expand: read_expand(&list.options)?,
        list,
    })
}

fn matches(tenant: &Tenant, installation: &Installation, filter: &Equals) -> bool {
    match filter.property.as_str() {
        "teamsApp/id" => installation.app_id.eq_ignore_ascii_case(&filter.value),
        _ => tenant
            .catalog_entry(&installation.app_id)
            .external_id
            .eq_ignore_ascii_case(&filter.value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::server::tests::{
        apps_url, client, graph_get, graph_post, installation_url, json_body, status_and_code,
        upgrade_url,
    };
    use crate::simulator::{Fleet, PublishingState, SimConfig, Simulator};
    use std::collections::HashSet;
    use std::time::Duration;
    use PublishingState::{Published, Submitted};

    const APP: &str = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";
    const OTHER: &str = "0f0e0d0c-0b0a-4908-8706-050403020100";
    const USER: &str = "adele@contoso.com";

    /// A catalog of two apps; the user runs an old version of the first.
    fn tenant() -> (Tenant, String) {
        let mut tenant = Tenant::default();
        tenant.add_app(
            APP,
            "Contoso Helpdesk",
            &[
                ("1.9.2", Published),
                ("1.10.0", Published),
                ("2.0.0", Submitted),
            ],
        );
        tenant.add_app(OTHER, "Other", &[("1.0.0", Published)]);
        let id = tenant.install(USER, APP, "1.9.2");
        (tenant, id)
    }

    async fn start(config: SimConfig) -> (Simulator, String) {
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));
        (sim, token)
    }

    async fn with_tenant() -> (Simulator, String, String) {
        let (tenant, id) = tenant();
        let config = SimConfig {
            tenant,
            ..SimConfig::default()
        };
        let (sim, token) = start(config).await;
        (sim, token, id)
    }

    async fn install_request(
        sim: &Simulator,
        token: &str,
        user: &str,
        body: &str,
    ) -> reqwest::Response {
        client()
            .post(apps_url(sim, user, ""))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    fn bind(sim: &Simulator, app: &str) -> String {
        let link = format!("{}/v1.0/appCatalogs/teamsApps/{app}", sim.url());
        serde_json::json!({ BIND: link }).to_string()
    }

    #[tokio::test]
    async fn one_installation_answers_with_what_was_expanded() {
        let (sim, token, id) = with_tenant().await;
        assert!(id.contains(['+', '/']) || id.ends_with('='), "{id}");
        let url = installation_url(&sim, &USER.to_uppercase(), &id);

        let response = graph_get(&format!("{url}?$expand=teamsAppDefinition"), &token).await;
        assert_eq!(response.status().as_u16(), 200);
        let body = json_body(response).await;
        assert_eq!(body["id"], id.as_str());
        assert!(body["@odata.context"]
            .as_str()
            .unwrap()
            .ends_with("/$entity"));
        assert!(body.get("teamsApp").is_none());
        let definition = &body["teamsAppDefinition"];
        assert_eq!(definition["version"], "1.9.2");
        assert_eq!(definition["teamsAppId"], APP);
        assert_eq!(definition["displayName"], "Contoso Helpdesk");
        assert_eq!(definition["publishingState"], "published");
        assert!(definition["id"].as_str().is_some_and(|d| !d.is_empty()));

        let both = format!("{url}?$expand=teamsApp,teamsAppDefinition");
        let body = json_body(graph_get(&both, &token).await).await;
        assert_eq!(body["teamsApp"]["id"], APP);
        assert_eq!(body["teamsApp"]["distributionMethod"], "organization");
        assert!(body["teamsApp"].get("appDefinitions").is_none());

        let body = json_body(graph_get(&url, &token).await).await;
        assert!(body.get("teamsApp").is_none() && body.get("teamsAppDefinition").is_none());
        assert_eq!(sim.books().installed_app_reads, 3);
    }

    #[tokio::test]
    async fn unknown_foreign_and_malformed_reads_are_refused() {
        let (sim, token, id) = with_tenant().await;
        let cases = [
            (
                installation_url(&sim, "bob@contoso.com", &id),
                404,
                "NotFound",
            ),
            (installation_url(&sim, USER, "bm9wZQ=="), 404, "NotFound"),
            (
                installation_url(&sim, USER, &id.to_lowercase()),
                404,
                "NotFound",
            ),
            (
                format!("{}?$expand=chat", installation_url(&sim, USER, &id)),
                400,
                "BadRequest",
            ),
            (
                format!("{}?$filter=x", installation_url(&sim, USER, &id)),
                400,
                "BadRequest",
            ),
            (installation_url(&sim, "$admin", &id), 400, "BadRequest"),
        ];
        for (url, status, code) in cases {
            let answer = status_and_code(graph_get(&url, &token).await).await;
            assert_eq!(answer, (status, code.to_string()), "{url}");
        }
        let response = client()
            .delete(installation_url(&sim, USER, &id))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405);
    }

    #[tokio::test]
    async fn a_list_filters_by_app_and_expands_both_parts() {
        let (sim, token, id) = with_tenant().await;
        let query = format!(
            "?$expand=teamsApp,teamsAppDefinition&$filter=teamsApp/id eq '{}'",
            APP.to_uppercase()
        );
        let response = graph_get(&apps_url(&sim, USER, &query), &token).await;
        assert_eq!(response.status().as_u16(), 200);
        let body = json_body(response).await;
        assert!(body["@odata.context"]
            .as_str()
            .unwrap()
            .contains("installedApps"));
        let value = body["value"].as_array().unwrap();
        assert_eq!(value.len(), 1);
        assert_eq!(value[0]["id"], id.as_str());
        assert_eq!(value[0]["teamsApp"]["displayName"], "Contoso Helpdesk");
        assert_eq!(value[0]["teamsAppDefinition"]["version"], "1.9.2");
        assert!(body.get("@odata.nextLink").is_none());

        let other = format!("?$filter=teamsApp%2Fid+EQ+%27{OTHER}%27");
        let body = json_body(graph_get(&apps_url(&sim, USER, &other), &token).await).await;
        assert_eq!(body["value"], serde_json::json!([]));
        let external = sim.tenant().app(APP).unwrap().external_id.clone();
        let by_manifest = format!("?$filter=teamsApp/externalId eq '{external}'");
        let body = json_body(graph_get(&apps_url(&sim, USER, &by_manifest), &token).await).await;
        assert_eq!(body["value"].as_array().unwrap().len(), 1);

        for bad in [
            "?$filter=teamsApp/id ne 'x'",
            "?$filter=id eq 'x'",
            "?$expand=chat",
        ] {
            let response = graph_get(&apps_url(&sim, USER, bad), &token).await;
            assert_eq!(
                status_and_code(response).await,
                (400, "BadRequest".into()),
                "{bad}"
            );
        }
        assert_eq!(sim.books().installed_app_lists, 6);
    }

    #[tokio::test]
    async fn following_next_links_from_an_empty_first_page_sees_every_item_once() {
        let mut tenant = Tenant::default();
        let mut ids = HashSet::new();
        for i in 0..45 {
            let app = format!("00000000-0000-0000-0000-{i:012}");
            tenant.add_app(&app, "App", &[("1.0.0", Published)]);
            ids.insert(tenant.install(USER, &app, "1.0.0"));
        }
        tenant.install("someone-else@contoso.com", APP, "1.0.0");
        let config = SimConfig {
            tenant,
            page_size: 20,
            empty_first_page: true,
            ..SimConfig::default()
        };
        let (sim, token) = start(config).await;

        let mut url = apps_url(&sim, USER, "?$expand=teamsAppDefinition");
        let (mut seen, mut sizes) = (Vec::new(), Vec::new());
        loop {
            let body = json_body(graph_get(&url, &token).await).await;
            let value = body["value"].as_array().unwrap();
            sizes.push(value.len());
            seen.extend(value.iter().map(|v| v["id"].as_str().unwrap().to_string()));
            assert!(value
                .iter()
                .all(|v| v["teamsAppDefinition"]["version"] == "1.0.0"));
            match body["@odata.nextLink"].as_str() {
                Some(next) => {
                    assert!(next.starts_with(&sim.url()) && next.contains("$skiptoken="));
                    assert!(next.contains("$expand=teamsAppDefinition"), "{next}");
                    url = next.to_string();
                }
                None => break,
            }
        }
        assert_eq!(sizes, vec![0, 20, 20, 5]);
        assert_eq!(seen.len(), 45);
        assert_eq!(seen.into_iter().collect::<HashSet<_>>(), ids);
        assert_eq!(sim.books().installed_app_lists, 4);

        // A user with nothing installed still gets the empty page first, then the end.
        let body = json_body(graph_get(&apps_url(&sim, "new@contoso.com", ""), &token).await).await;
        let next = body["@odata.nextLink"].as_str().unwrap().to_string();
        let body = json_body(graph_get(&next, &token).await).await;
        assert_eq!(body["value"], serde_json::json!([]));
        assert!(body.get("@odata.nextLink").is_none());
    }

    #[tokio::test]
    async fn an_upgrade_moves_the_version_and_a_foreign_id_is_not_found() {
        let (sim, token, id) = with_tenant().await;
        assert_eq!(sim.installed_version(USER, &id).as_deref(), Some("1.9.2"));

        let foreign = graph_post(&upgrade_url(&sim, "bob@contoso.com", &id), &token).await;
        assert_eq!(status_and_code(foreign).await, (404, "NotFound".into()));
        assert_eq!(sim.installed_version(USER, &id).as_deref(), Some("1.9.2"));

        let mine = graph_post(&upgrade_url(&sim, "Adele@Contoso.com", &id), &token).await;
        assert_eq!(mine.status().as_u16(), 204);
        assert_eq!(sim.installed_version(USER, &id).as_deref(), Some("1.10.0"));
        assert_eq!(sim.installed_version("bob@contoso.com", &id), None);

        // An id the tenant does not know is upgraded as before.
        let unknown = graph_post(&upgrade_url(&sim, USER, "not-in-the-tenant"), &token).await;
        assert_eq!(unknown.status().as_u16(), 204);
        let books = sim.books();
        assert_eq!((books.upgrade_calls, books.upgraded), (3, 2));
    }

    #[tokio::test]
    async fn an_install_is_201_with_no_body_then_409() {
        let (sim, token, _) = with_tenant().await;
        let bob = "bob@contoso.com";

        let response = install_request(&sim, &token, bob, &bind(&sim, APP)).await;
        assert_eq!(response.status().as_u16(), 201);
        assert!(response.headers().contains_key("request-id"));
        assert_eq!(response.text().await.unwrap(), "");
        let installed = sim.tenant().installations(bob).to_vec();
        assert_eq!(installed.len(), 1);
        assert_eq!(installed[0].version, "1.10.0");
        assert_eq!(
            sim.installed_version(bob, &installed[0].id).as_deref(),
            Some("1.10.0")
        );

        let again = install_request(&sim, &token, "BOB@contoso.com", &bind(&sim, APP)).await;
        assert_eq!(status_and_code(again).await, (409, "Conflict".into()));
        let unknown = install_request(&sim, &token, bob, &bind(&sim, "no-such-app")).await;
        assert_eq!(status_and_code(unknown).await, (404, "NotFound".into()));

        let books = sim.books();
        let counts = (books.installs, books.installed, books.installs_conflicted);
        assert_eq!(counts, (3, 1, 1));
        assert_eq!(books.upgrade_calls, 0);
    }

    #[tokio::test]
    async fn a_malformed_install_body_is_a_400() {
        let (sim, token, _) = with_tenant().await;
        let elsewhere = format!(
            r#"{{"{BIND}":"https://graph.microsoft.com/v1.0/appCatalogs/teamsApps/{APP}"}}"#
        );
        let wrong_path = format!(r#"{{"{BIND}":"{}/v1.0/appCatalogs/{APP}"}}"#, sim.url());
        let extra = format!(
            r#"{{"{BIND}":"{}/v1.0/appCatalogs/teamsApps/{APP}","x":1}}"#,
            sim.url()
        );
        let bodies = [
            "not json".to_string(),
            "[]".to_string(),
            "{}".to_string(),
            format!(r#"{{"{BIND}":42}}"#),
            elsewhere,
            wrong_path,
            extra,
        ];
        for body in &bodies {
            let response = install_request(&sim, &token, "bob@x", body).await;
            assert_eq!(
                status_and_code(response).await,
                (400, "BadRequest".into()),
                "{body}"
            );
        }
        let empty = client()
            .post(apps_url(&sim, "bob@x", ""))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(empty.status().as_u16(), 400);
        assert!(sim.tenant().installations("bob@x").is_empty());
        assert_eq!(sim.books().installs, bodies.len() as u64 + 1);
    }

    #[tokio::test]
    async fn self_permissions_hide_other_apps_and_refuse_the_rest() {
        let (tenant, id) = tenant();
        let config = SimConfig {
            tenant,
            self_permissions_only: true,
            ..SimConfig::default()
        };
        let (sim, token) = start(config).await;

        let list = json_body(graph_get(&apps_url(&sim, USER, ""), &token).await).await;
        assert_eq!(list["value"], serde_json::json!([]));

        let one = graph_get(&installation_url(&sim, USER, &id), &token).await;
        assert_eq!(one.status().as_u16(), 403);
        for response in [
            graph_post(&upgrade_url(&sim, USER, &id), &token).await,
            install_request(&sim, &token, "bob@x", &bind(&sim, APP)).await,
        ] {
            assert_eq!(response.status().as_u16(), 403);
            let body = json_body(response).await;
            let message = body["error"]["message"].as_str().unwrap();
            assert!(
                message.contains("TeamsAppInstallation.ReadWriteForUser.All"),
                "{message}"
            );
        }
        assert_eq!(sim.installed_version(USER, &id).as_deref(), Some("1.9.2"));

        // The catalog needs another permission, which the app has.
        let catalog = format!("{}/v1.0/appCatalogs/teamsApps", sim.url());
        let body = json_body(graph_get(&catalog, &token).await).await;
        assert_eq!(body["value"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn fleet_answers_auth_faults_and_headers_apply_to_the_new_routes() {
        let (tenant, id) = tenant();
        let mut fleet = Fleet::default();
        fleet.insert("ghost@contoso.com", Behaviour::not_found());
        let config = SimConfig {
            tenant: tenant.clone(),
            fleet,
            ..SimConfig::default()
        };
        let (sim, token) = start(config).await;
        let ghost = graph_get(&apps_url(&sim, "Ghost@contoso.com", ""), &token).await;
        assert_eq!(status_and_code(ghost).await, (404, "NotFound".into()));
        let ghost = install_request(&sim, &token, "ghost@contoso.com", &bind(&sim, APP)).await;
        assert_eq!(ghost.status().as_u16(), 404);
        assert!(sim.tenant().installations("ghost@contoso.com").is_empty());

        let sent = uuid::Uuid::new_v4().to_string();
        let response = client()
            .get(installation_url(&sim, USER, &id))
            .bearer_auth(&token)
            .header("client-request-id", &sent)
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["client-request-id"], sent.as_str());
        assert!(response.headers().contains_key("request-id"));
        assert!(response.headers().contains_key("date"));
        assert_eq!(
            graph_get(&apps_url(&sim, USER, ""), "forged")
                .await
                .status()
                .as_u16(),
            401
        );

        let everyone = SimConfig {
            tenant: tenant.clone(),
            everyone: Some(Behaviour::new(403, "UnknownError", "")),
            ..SimConfig::default()
        };
        let (sim, token) = start(everyone).await;
        let catalog = format!("{}/v1.0/appCatalogs/teamsApps", sim.url());
        let response = graph_get(&catalog, &token).await;
        assert_eq!(
            status_and_code(response).await,
            (403, "UnknownError".into())
        );

        let refusing = SimConfig {
            tenant: tenant.clone(),
            reject_tokens: true,
            ..SimConfig::default()
        };
        let (sim, token) = start(refusing).await;
        let response = graph_get(&installation_url(&sim, USER, &id), &token).await;
        assert_eq!(response.status().as_u16(), 401);

        let faulty = SimConfig {
            tenant,
            fault_504: 1.0,
            ..SimConfig::default()
        };
        let (sim, token) = start(faulty).await;
        let response = graph_get(&apps_url(&sim, USER, ""), &token).await;
        assert_eq!(
            status_and_code(response).await,
            (504, "GatewayTimeout".into())
        );
        let response = install_request(&sim, &token, "bob@x", &bind(&sim, APP)).await;
        assert_eq!(response.status().as_u16(), 504);
        assert!(sim.tenant().installations("bob@x").is_empty());
        assert_eq!(sim.books().faults, 2);
    }
}
