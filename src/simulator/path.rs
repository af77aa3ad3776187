//! Graph paths as Graph reads them: split on `/`, each segment percent-decoded on its own,
//! users named plainly or in the key form `users('…')`, fixed segments in any case.

use percent_encoding::percent_decode_str;

/// What a path turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// `users/{user}/teamwork/installedApps[/{installation}[/upgrade]]`.
    Apps(AppsPath),
    /// `appCatalogs/teamsApps`.
    Catalog { version: String },
    /// Any other Graph path; carries the segment Graph would say it could not resolve.
    Other { version: String, segment: String },
    /// A segment whose percent-encoding is not valid UTF-8.
    Undecodable,
}

/// A path under one user's installed apps, each segment decoded on its own.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AppsPath {
    pub(crate) version: String,
    pub(crate) user: String,
    pub(crate) target: Target,
    /// Why Graph would refuse the path as written, if it would (answered as a 400).
    pub(crate) problem: Option<String>,
}

/// What under `installedApps` the path names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Collection,
    One(String),
    Upgrade(String),
}

/// Splits and decodes a raw path. `+` stays `+`: paths are not form-encoded.
pub(crate) fn parse(raw: &str) -> Route {
    let Some(segments) = decode_segments(raw) else {
        return Route::Undecodable;
    };
    let Some((version, rest)) = segments.split_first() else {
        return other("", &[]);
    };
    if let [catalogs, apps] = rest {
        if is(catalogs, "appCatalogs") && is(apps, "teamsApps") {
            let version = version.clone();
            return Route::Catalog { version };
        }
    }
    let Some((user, problem, tail)) = split_user(rest) else {
        return other(version, rest);
    };
    let target = match tail {
        [teamwork, apps] if is_apps(teamwork, apps) => Target::Collection,
        [teamwork, apps, id] if is_apps(teamwork, apps) => Target::One(id.clone()),
        [teamwork, apps, id, upgrade] if is_apps(teamwork, apps) && is(upgrade, "upgrade") => {
            Target::Upgrade(id.clone())
        }
        _ => return other(version, rest),
    };
    let problem = problem.or_else(|| match &target {
        Target::One(id) | Target::Upgrade(id) => empty_problem(id, "installedApps"),
        Target::Collection => None,
    });
    Route::Apps(AppsPath {
        version: version.clone(),
        user,
        target,
        problem,
    })
}

/// Each segment decoded on its own, or `None` if one is not UTF-8 once decoded.
fn decode_segments(raw: &str) -> Option<Vec<String>> {
    let path = raw.strip_prefix('/').unwrap_or(raw);
    path.split('/')
        .map(|s| {
            percent_decode_str(s)
                .decode_utf8()
                .ok()
                .map(|s| s.into_owned())
        })
        .collect()
}

/// Graph's fixed segments are case-insensitive.
fn is(segment: &str, name: &str) -> bool {
    segment.eq_ignore_ascii_case(name)
}

fn is_apps(teamwork: &str, apps: &str) -> bool {
    is(teamwork, "teamwork") && is(apps, "installedApps")
}

fn other(version: &str, rest: &[String]) -> Route {
    Route::Other {
        version: version.to_string(),
        segment: first_unknown(rest),
    }
}

/// The user, why Graph would refuse how it is written, and the segments after it. Plain
/// (`users/{user}`) or the key form, `users('…')`, which clients use for UPNs that start
/// with `$`.
fn split_user(rest: &[String]) -> Option<(String, Option<String>, &[String])> {
    match rest {
        [users, user, tail @ ..] if is(users, "users") => {
            Some((user.clone(), plain_user_problem(user), tail))
        }
        [key, tail @ ..] => {
            let inner = key_body(key)?;
            match unquote(inner) {
                Some(user) => Some((user, None, tail)),
                None => {
                    let problem = format!("Syntax error in the key of segment '{key}'.");
                    Some((inner.to_string(), Some(problem), tail))
                }
            }
        }
        [] => None,
    }
}

/// Graph reads a plain segment that starts with `$` as an OData system query option, not a key.
fn plain_user_problem(user: &str) -> Option<String> {
    if user.starts_with('$') {
        return Some(format!("Resource not found for the segment '{user}'."));
    }
    empty_problem(user, "users")
}

fn empty_problem(key: &str, collection: &str) -> Option<String> {
    key.is_empty().then(|| {
        format!(
            "The request URI is not valid. Since the segment '{collection}' refers to a \
             collection, this must be the last segment in the request URI or it must be followed \
             by an function or action that can be bound to it otherwise all intermediate segments \
             must refer to a single resource."
        )
    })
}

/// The inside of `users(…)`, if the segment has that shape.
fn key_body(segment: &str) -> Option<&str> {
    let prefix = segment.get(..6)?;
    if !prefix.eq_ignore_ascii_case("users(") {
        return None;
    }
    segment[6..].strip_suffix(')')
}

/// An OData string literal: `'…'` with `''` standing for one `'`.
pub(crate) fn unquote(literal: &str) -> Option<String> {
    let body = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\'' && chars.next() != Some('\'') {
            return None;
        }
        out.push(c);
    }
    Some(out)
}

/// The segment Graph would name when a path is none of the routes served here.
fn first_unknown(rest: &[String]) -> String {
    const USER_APPS: [Option<&str>; 6] = [
        Some("users"),
        None,
        Some("teamwork"),
        Some("installedApps"),
        None,
        Some("upgrade"),
    ];
    const CATALOG: [Option<&str>; 2] = [Some("appCatalogs"), Some("teamsApps")];
    let grammar: &[Option<&str>] = match rest.first() {
        Some(first) if is(first, "appCatalogs") => &CATALOG,
        _ => &USER_APPS,
    };
    for (i, segment) in rest.iter().enumerate() {
        match grammar.get(i) {
            Some(Some(name)) if is(segment, name) => {}
            Some(None) => {}
            _ => return segment.clone(),
        }
    }
    rest.last().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps(user: &str, target: Target) -> Route {
        Route::Apps(AppsPath {
            version: "v1.0".into(),
            user: user.into(),
            target,
            problem: None,
        })
    }

    fn upgrade(user: &str, installation: &str) -> Route {
        apps(user, Target::Upgrade(installation.into()))
    }

    #[test]
    fn each_segment_is_decoded_on_its_own() {
        let route = parse("/v1.0/users/a%2Fb%2B%3D/teamwork/installedApps/x%2By%2Fz%3D%3D/upgrade");
        assert_eq!(route, upgrade("a/b+=", "x+y/z=="));

        let guest = "guest_contoso.com%23EXT%23%40fabrikam.com";
        let route = parse(&format!(
            "/v1.0/users/{guest}/teamwork/installedApps/i+j/upgrade"
        ));
        assert_eq!(route, upgrade("guest_contoso.com#EXT#@fabrikam.com", "i+j"));
    }

    #[test]
    fn the_key_form_unescapes_doubled_quotes() {
        let route = parse("/v1.0/users('o''brien%40contoso.com')/teamwork/installedApps/i/upgrade");
        assert_eq!(route, upgrade("o'brien@contoso.com", "i"));
        let route = parse("/v1.0/users(%27%24admin%27)/teamwork/installedApps/i/upgrade");
        assert_eq!(route, upgrade("$admin", "i"));
    }

    #[test]
    fn the_collection_one_installation_and_the_catalog_are_routes_too() {
        let route = parse("/v1.0/Users/a%40x/TEAMWORK/installedapps");
        assert_eq!(route, apps("a@x", Target::Collection));
        let route = parse("/v1.0/users('a%40x')/teamwork/installedApps/x%2By%3D");
        assert_eq!(route, apps("a@x", Target::One("x+y=".into())));
        assert_eq!(
            parse("/beta/appcatalogs/TeamsApps"),
            Route::Catalog {
                version: "beta".into()
            }
        );
    }

    #[test]
    fn malformed_paths_carry_a_problem_or_are_not_routes() {
        let Route::Apps(path) = parse("/v1.0/users/$admin/teamwork/installedApps/i/upgrade") else {
            panic!("a $ user is still an upgrade call, answered 400");
        };
        assert_eq!(
            (path.user.as_str(), path.problem.is_some()),
            ("$admin", true)
        );

        let Route::Apps(path) = parse("/v1.0/users('it's')/teamwork/installedApps/i/upgrade")
        else {
            panic!("a bad key is still an upgrade call, answered 400");
        };
        assert!(path.problem.is_some());

        let Route::Apps(path) = parse("/v1.0/users/a/teamwork/installedApps/") else {
            panic!("an empty installation is still a GET of one, answered 400");
        };
        assert!(path.problem.is_some());

        let route = parse("/v1.0/users/a/teamwork/installedApps/i/upgrades");
        assert_eq!(
            route,
            Route::Other {
                version: "v1.0".into(),
                segment: "upgrades".into()
            }
        );
        let route = parse("/v1.0/appCatalogs/teamsApp");
        assert_eq!(
            route,
            Route::Other {
                version: "v1.0".into(),
                segment: "teamsApp".into()
            }
        );
        assert_eq!(
            parse("/v1.0/users/%FF/teamwork/installedApps/i/upgrade"),
            Route::Undecodable
        );
    }
}
