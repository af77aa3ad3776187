//! Which columns hold the user and the installation: header names as people
//! and export tools write them, compared with case, spaces, `_` and `-` folded.

/// Folded names of the user column, in tiers from best to worst: a column
/// that says UPN or user beats `ObjectId`, which beats a bare `Id` (an
/// Entra export has `id` next to `userPrincipalName`).
const USER: &[&[&str]] = &[
    &["userid", "userprincipalname", "upn", "user"],
    &["objectid"],
    &["id"],
];

/// Folded names of the installation column. `id` is never one of them: in
/// an export it is the user's object id.
const INSTALLATION: &[&[&str]] = &[&[
    "installationid",
    "appinstallationid",
    "installation",
    "teamsappinstallationid",
]];

/// The names accepted for each column, as the error messages list them.
pub const USER_NAMES: &str = "userId, userPrincipalName, upn, user, objectId or id";
pub const INSTALLATION_NAMES: &str =
    "installationId, appInstallationId, installation or teamsAppInstallationId; or, with only \
     users in the file, pass --app-id APP to have each user's installation looked up";

/// Where the two columns are, counted from 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Columns {
    pub user: Option<usize>,
    pub installation: Option<usize>,
}

/// Fold a header name: lower case, without whitespace, `_` or `-`.
pub fn fold(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '_' | '-' | '\u{feff}')))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Find both columns among the header's fields.
pub fn find<'a>(fields: impl IntoIterator<Item = &'a [u8]>) -> Columns {
    let folded: Vec<String> = fields.into_iter().map(fold).collect();
    Columns {
        user: best(&folded, USER),
        installation: best(&folded, INSTALLATION),
    }
}

/// The leftmost column of the best tier that has one.
fn best(folded: &[String], tiers: &[&[&str]]) -> Option<usize> {
    tiers
        .iter()
        .find_map(|tier| folded.iter().position(|name| tier.contains(&name.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns(names: &[&str]) -> Columns {
        find(names.iter().map(|n| n.as_bytes()))
    }

    #[test]
    fn names_match_in_any_case_with_spaces_underscores_or_hyphens() {
        for user in [
            "User Principal Name",
            "user_id",
            "UPN",
            " userId ",
            "USER-ID",
        ] {
            assert_eq!(columns(&[user, "Installation Id"]).user, Some(0), "{user}");
        }
        for installation in [
            "Installation Id",
            "installation_id",
            "APP INSTALLATION ID",
            "teamsAppInstallationId",
            "installation",
        ] {
            let found = columns(&["upn", installation]);
            assert_eq!(found.installation, Some(1), "{installation}");
        }
    }

    #[test]
    fn a_upn_column_beats_object_id_which_beats_id() {
        let found = columns(&["id", "ObjectId", "displayName", "UserPrincipalName", "x"]);
        assert_eq!(found.user, Some(3));
        assert_eq!(columns(&["Id", "ObjectId", "installationId"]).user, Some(1));
        assert_eq!(columns(&["Id", "installationId"]).user, Some(0));
    }

    #[test]
    fn an_id_column_is_never_the_installation() {
        let found = columns(&["userPrincipalName", "Id"]);
        assert_eq!(found.installation, None);
        assert_eq!(columns(&["Id"]).user, Some(0));
    }

    #[test]
    fn a_byte_order_mark_left_on_a_name_is_ignored() {
        assert_eq!(columns(&["\u{feff}upn", "installationId"]).user, Some(0));
    }

    #[test]
    fn unrelated_columns_match_nothing() {
        let found = columns(&["displayName", "appId", "userType"]);
        assert_eq!(found.user, None);
        assert_eq!(found.installation, None);
    }
}
