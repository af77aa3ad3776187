//! The simulator's books: what the server received and how it answered, kept so tests can
//! assert on the client's behaviour from the server's side of the wire.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::RequestClass;

/// A snapshot of everything the simulator counted since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Books {
    /// Every upgrade request (a POST on the upgrade path) that reached the handler.
    pub upgrade_calls: u64,
    /// `(user, installation)` exactly as decoded from the path -> upgrade requests.
    #[serde(serialize_with = "calls_as_list", deserialize_with = "calls_from_list")]
    pub calls: HashMap<(String, String), u64>,
    /// 204s sent.
    pub upgraded: u64,
    /// 429s sent, all request classes together.
    pub throttled: u64,
    /// 429s sent per request class, keyed by `RequestClass::name`; a class never throttled
    /// has no entry.
    pub throttled_by_class: BTreeMap<String, u64>,
    /// Calls that arrived inside a `Retry-After` window announced for their request class,
    /// more than `SimConfig::announce_grace` after the first 429 announcing a window that
    /// covers them: calls a client that honours `Retry-After` across all its workers would
    /// not have sent. All classes together.
    pub calls_in_window: u64,
    /// 503s, 504s and dropped connections injected.
    pub faults: u64,
    /// 401s sent.
    pub unauthorized: u64,
    /// Tokens the token endpoint issued (`Simulator::mint_token` does not count).
    pub tokens_issued: u64,
    /// `client-request-id` of each upgrade request, in arrival order.
    pub client_request_ids: Vec<String>,
    /// Upgrade requests that carried no `client-request-id`.
    pub missing_client_request_id: u64,
    /// GETs of one installation that reached the handler.
    pub installed_app_reads: u64,
    /// GETs of a list of installations, one per page asked for.
    pub installed_app_lists: u64,
    /// GETs of the app catalog, one per page asked for.
    pub catalog_reads: u64,
    /// Install requests (POST installedApps), whatever the answer.
    pub installs: u64,
    /// 201s sent for installs.
    pub installed: u64,
    /// 409s sent because the user already had the app.
    pub installs_conflicted: u64,
}

impl Books {
    /// Upgrade requests seen for one pair, as decoded.
    pub fn calls_for(&self, user: &str, installation: &str) -> u64 {
        let key = (user.to_string(), installation.to_string());
        self.calls.get(&key).copied().unwrap_or(0)
    }

    /// 429s sent for one request class.
    pub fn throttled_for(&self, class: RequestClass) -> u64 {
        self.throttled_by_class
            .get(class.name())
            .copied()
            .unwrap_or(0)
    }
}

#[derive(Serialize, Deserialize)]
struct CallCount {
    user: String,
    installation: String,
    count: u64,
}

// JSON has no tuple keys, so the map travels as a list, sorted to keep the output stable.
fn calls_as_list<S: Serializer>(
    calls: &HashMap<(String, String), u64>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut list: Vec<CallCount> = calls
        .iter()
        .map(|((user, installation), count)| CallCount {
            user: user.clone(),
            installation: installation.clone(),
            count: *count,
        })
        .collect();
    list.sort_by(|a, b| (&a.user, &a.installation).cmp(&(&b.user, &b.installation)));
    list.serialize(serializer)
}

fn calls_from_list<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<HashMap<(String, String), u64>, D::Error> {
    let list = Vec::<CallCount>::deserialize(deserializer)?;
    Ok(list
        .into_iter()
        .map(|c| ((c.user, c.installation), c.count))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_travel_as_a_list_and_come_back() {
        let mut books = Books {
            upgrade_calls: 3,
            ..Books::default()
        };
        books.calls.insert(("b@x".into(), "i/2".into()), 1);
        books.calls.insert(("a@x".into(), "i+1".into()), 2);

        let json = serde_json::to_value(&books).unwrap();
        assert_eq!(json["calls"][0]["user"], "a@x");
        assert_eq!(json["calls"][0]["count"], 2);

        let back: Books = serde_json::from_value(json).unwrap();
        assert_eq!(back, books);
        assert_eq!(back.calls_for("b@x", "i/2"), 1);
    }

    #[test]
    fn books_from_an_older_simulator_still_read() {
        let books: Books = serde_json::from_str(r#"{"upgrade_calls": 2, "calls": []}"#).unwrap();
        assert_eq!((books.upgrade_calls, books.installs), (2, 0));
        assert_eq!(books.throttled_for(RequestClass::CatalogRead), 0);
    }
}
