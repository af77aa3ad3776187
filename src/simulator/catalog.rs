//! The tenant's app catalog as Graph serves it (`GET appCatalogs/teamsApps`), and the JSON
//! shapes of a catalog app and of one of its versions, which installations embed too.

use std::time::SystemTime;

use axum::http::StatusCode;
use axum::response::Response;
use serde::Serialize;

use super::fleet::Behaviour;
use super::graph::{serve, Call, Gate};
use super::odata::{self, Collection, Equals, ListOptions, Paging};
use super::server::lock;
use super::tenant::{AppDefinition, CatalogApp, PublishingState};
use super::throttle::RequestClass;
use super::wire;

/// Properties a catalog filter may test.
const FILTERABLE: [&str; 4] = ["id", "externalId", "displayName", "distributionMethod"];

/// A catalog app (`teamsApp`), with its versions when they were expanded.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TeamsAppBody {
    id: String,
    external_id: String,
    display_name: String,
    distribution_method: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_definitions: Option<Vec<DefinitionBody>>,
}

/// One version of an app (`teamsAppDefinition`).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DefinitionBody {
    id: String,
    teams_app_id: String,
    display_name: String,
    version: String,
    publishing_state: PublishingState,
}

impl TeamsAppBody {
    pub(crate) fn new(app: &CatalogApp, with_definitions: bool) -> Self {
        let definitions = with_definitions.then(|| {
            app.definitions
                .iter()
                .map(|d| DefinitionBody::new(app, d))
                .collect()
        });
        TeamsAppBody {
            id: app.id.clone(),
            external_id: app.external_id.clone(),
            display_name: app.display_name.clone(),
            // Apps a tenant uploads itself; store apps would say "store".
            distribution_method: "organization",
            app_definitions: definitions,
        }
    }
}

impl DefinitionBody {
    pub(crate) fn new(app: &CatalogApp, definition: &AppDefinition) -> Self {
        DefinitionBody {
            id: definition.id.clone(),
            teams_app_id: app.id.clone(),
            display_name: app.display_name.clone(),
            version: definition.version.clone(),
            publishing_state: definition.publishing_state,
        }
    }
}

/// `GET {v}/appCatalogs/teamsApps[?$filter=…][&$expand=appDefinitions]`, paged.
pub(crate) async fn list(
    call: &Call<'_>,
    version: &str,
    raw_path: &str,
    query: Option<&str>,
) -> Response {
    lock(&call.shared.books).catalog_reads += 1;
    let gate = Gate {
        version,
        class: RequestClass::CatalogRead,
        user: None,
    };
    let check = || read_options(query).map_err(|e| Behaviour::bad_request(&e));
    let work = |read: Read| {
        let shared = call.shared;
        let tenant = lock(&shared.tenant);
        let apps: Vec<&CatalogApp> = tenant
            .apps()
            .iter()
            .filter(|app| read.list.filter.as_ref().is_none_or(|f| matches(app, f)))
            .collect();
        let paging = Paging {
            size: shared.config.page_size,
            empty_first: shared.config.empty_first_page,
        };
        let (range, next) = paging.page(apps.len(), read.list.skip);
        let body = Collection {
            context: format!("{}/{version}/$metadata#appCatalogs/teamsApps", shared.root),
            value: apps[range]
                .iter()
                .map(|app| TeamsAppBody::new(app, read.definitions))
                .collect(),
            next_link: next
                .map(|n| odata::next_link(&shared.root, raw_path, &read.list.options, n)),
        };
        Ok(wire::json(StatusCode::OK, &body, SystemTime::now()))
    };
    serve(call, gate, check, work).await
}

/// A catalog request's options, checked.
struct Read {
    list: ListOptions,
    definitions: bool,
}

fn read_options(query: Option<&str>) -> Result<Read, String> {
    let list = ListOptions::parse(query, &FILTERABLE)?;
    let expanded = match list.options.expand.as_deref() {
        Some(expand) => {
            odata::parse_expand(expand, &["appDefinitions"], "microsoft.graph.teamsApp")?
        }
        None => Vec::new(),
    };
    Ok(Read {
        definitions: !expanded.is_empty(),
        list,
    })
}

fn matches(app: &CatalogApp, filter: &Equals) -> bool {
    let value = match filter.property.as_str() {
        "id" => &app.id,
        "externalId" => &app.external_id,
        "displayName" => &app.display_name,
        _ => "organization",
    };
    value.eq_ignore_ascii_case(&filter.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulator::server::tests::{client, json_body, status_and_code};
    use crate::simulator::{SimConfig, Simulator, Tenant};
    use std::time::Duration;
    use PublishingState::{Published, Rejected, Submitted};

    const APP: &str = "5d1ab7e8-0b4e-4a1f-9c1e-0c2a8f1c9e11";

    fn tenant() -> Tenant {
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
        tenant.add_app("other-app", "Other", &[("1.0.0", Rejected)]);
        tenant
    }

    async fn get(sim: &Simulator, token: &str, query: &str) -> reqwest::Response {
        let url = format!("{}/v1.0/appCatalogs/teamsApps?{query}", sim.url());
        client().get(url).bearer_auth(token).send().await.unwrap()
    }

    #[tokio::test]
    async fn an_app_comes_with_its_definitions_when_expanded() {
        let config = SimConfig {
            tenant: tenant(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));

        let query = format!(
            "$filter=id%20eq%20'{}'&$expand=appDefinitions",
            APP.to_uppercase()
        );
        let response = get(&sim, &token, &query).await;
        assert_eq!(response.status().as_u16(), 200);
        let body = json_body(response).await;
        let apps = body["value"].as_array().unwrap();
        assert_eq!(apps.len(), 1);
        let app = &apps[0];
        assert_eq!(app["id"], APP);
        assert_eq!(app["displayName"], "Contoso Helpdesk");
        assert_eq!(app["distributionMethod"], "organization");
        assert_ne!(app["externalId"], APP);
        let definitions = app["appDefinitions"].as_array().unwrap();
        assert_eq!(definitions.len(), 3);
        assert_eq!(definitions[1]["version"], "1.10.0");
        assert_eq!(definitions[1]["teamsAppId"], APP);
        assert_eq!(definitions[1]["publishingState"], "published");
        assert_eq!(definitions[2]["publishingState"], "submitted");
        assert!(body.get("@odata.nextLink").is_none());

        // Without $expand, no definitions.
        let body = json_body(get(&sim, &token, &format!("$filter=id+eq+'{APP}'")).await).await;
        assert!(body["value"][0].get("appDefinitions").is_none());
        assert_eq!(sim.books().catalog_reads, 2);
    }

    #[tokio::test]
    async fn an_unknown_app_is_an_empty_list_and_a_bad_query_a_400() {
        let config = SimConfig {
            tenant: tenant(),
            ..SimConfig::default()
        };
        let sim = Simulator::start(config).await.unwrap();
        let token = sim.mint_token(Duration::from_secs(60));

        let body = json_body(get(&sim, &token, "$filter=id eq 'nope'").await).await;
        assert_eq!(body["value"], serde_json::json!([]));

        for query in [
            "$filter=id ne 'x'",
            "$filter=version eq '1'",
            "$expand=definitions",
            "$orderby=id",
            "$skiptoken=forged",
        ] {
            let response = get(&sim, &token, query).await;
            assert_eq!(
                status_and_code(response).await,
                (400, "BadRequest".into()),
                "{query}"
            );
        }
        let response = client()
            .post(format!("{}/v1.0/appCatalogs/teamsApps", sim.url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 405);
    }
}
