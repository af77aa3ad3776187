//! The fleet: which users the simulated tenant answers with an error instead of a 204,
//! loaded from a CSV file or built in code.

use std::collections::HashMap;
use std::path::Path;

use super::SimError;

/// The answer a listed user gets for any call about them that passed auth and the throttle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Behaviour {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Behaviour {
    pub fn new(status: u16, code: &str, message: &str) -> Self {
        Behaviour {
            status,
            code: code.to_string(),
            message: message.to_string(),
        }
    }

    /// A user never provisioned in Teams.
    pub fn not_found() -> Self {
        Behaviour::new(404, "NotFound", "User not found")
    }

    /// A user without a Teams licence.
    pub fn forbidden() -> Self {
        Behaviour::new(
            403,
            "Forbidden",
            "User is not licensed for Microsoft Teams.",
        )
    }

    pub fn bad_request(message: &str) -> Self {
        Behaviour::new(400, "BadRequest", message)
    }

    /// What Graph typically sends for a status when the fleet file gives no code or message.
    pub fn for_status(status: u16) -> Self {
        let (code, message) = match status {
            400 => ("BadRequest", "Bad request."),
            401 => (
                "InvalidAuthenticationToken",
                "Access token validation failure.",
            ),
            403 => return Behaviour::forbidden(),
            404 => return Behaviour::not_found(),
            409 => (
                "Conflict",
                "The request conflicts with the current state of the resource.",
            ),
            429 => (
                "TooManyRequests",
                "Too many requests. Please try again later.",
            ),
            500 => ("InternalServerError", "An internal server error occurred."),
            502 => ("BadGateway", "Bad gateway."),
            503 => (
                "ServiceUnavailable",
                "The service is temporarily unavailable.",
            ),
            504 => ("GatewayTimeout", "The gateway timed out."),
            _ => ("UnknownError", ""),
        };
        Behaviour::new(status, code, message)
    }
}

/// Users (matched case-insensitively, like Graph matches UPNs) and what they get.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    users: HashMap<String, Behaviour>,
}

impl Fleet {
    /// Reads a CSV file with the header `user,status,code,message`.
    ///
    /// `code` and `message` are optional: a missing column, or a row too short to reach it,
    /// takes the usual wording for the status. A cell that is present but empty stays empty,
    /// because Graph does send empty codes and messages and clients must cope.
    pub fn load(path: &Path) -> Result<Fleet, SimError> {
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .trim(csv::Trim::All)
            .from_path(path)
            .map_err(|source| SimError::FleetRead {
                path: path.to_path_buf(),
                source,
            })?;
        let at = |line: u64, reason: String| SimError::FleetLine {
            path: path.to_path_buf(),
            line,
            reason,
        };

        let headers = reader.headers().map_err(|e| at(1, e.to_string()))?.clone();
        let columns = Columns::find(&headers).map_err(|reason| at(1, reason))?;

        let mut fleet = Fleet::default();
        let mut first_seen: HashMap<String, u64> = HashMap::new();
        for record in reader.records() {
            let record = record.map_err(|e| {
                let line = e.position().map_or(0, |p| p.line());
                at(line, e.to_string())
            })?;
            let line = record.position().map_or(0, |p| p.line());
            let (user, behaviour) = columns.read(&record).map_err(|reason| at(line, reason))?;

            let key = user.to_lowercase();
            if let Some(first) = first_seen.insert(key.clone(), line) {
                return Err(at(
                    line,
                    format!("user '{user}' is listed twice (first on line {first})"),
                ));
            }
            fleet.users.insert(key, behaviour);
        }
        Ok(fleet)
    }

    /// Adds or replaces a user.
    pub fn insert(&mut self, user: &str, behaviour: Behaviour) {
        self.users.insert(user.to_lowercase(), behaviour);
    }

    /// The behaviour for a user, matched case-insensitively.
    pub fn get(&self, user: &str) -> Option<&Behaviour> {
        self.users.get(&user.to_lowercase())
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Where each known column sits in the file.
struct Columns {
    width: usize,
    user: usize,
    status: usize,
    code: Option<usize>,
    message: Option<usize>,
}

impl Columns {
    fn find(headers: &csv::StringRecord) -> Result<Columns, String> {
        let position = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        if let Some(unknown) = headers.iter().find(|h| {
            !["user", "status", "code", "message"]
                .iter()
                .any(|k| h.eq_ignore_ascii_case(k))
        }) {
            return Err(format!(
                "unknown column '{unknown}' (expected user,status,code,message)"
            ));
        }
        let required = |name: &str| {
            position(name).ok_or_else(|| {
                format!("the header has no '{name}' column (expected user,status,code,message)")
            })
        };
        Ok(Columns {
            width: headers.len(),
            user: required("user")?,
            status: required("status")?,
            code: position("code"),
            message: position("message"),
        })
    }

    fn read(&self, record: &csv::StringRecord) -> Result<(String, Behaviour), String> {
        if record.len() > self.width {
            return Err(format!(
                "{} fields, but the header has {}",
                record.len(),
                self.width
            ));
        }
        let user = record.get(self.user).unwrap_or("");
        if user.is_empty() {
            return Err("the user is empty".to_string());
        }
        let status = record.get(self.status).unwrap_or("");
        let status: u16 = status
            .parse()
            .ok()
            .filter(|s| (400..=599).contains(s))
            .ok_or_else(|| format!("status '{status}' is not an HTTP error status (400 to 599)"))?;

        let mut behaviour = Behaviour::for_status(status);
        if let Some(code) = self.code.and_then(|i| record.get(i)) {
            behaviour.code = code.to_string();
        }
        if let Some(message) = self.message.and_then(|i| record.get(i)) {
            behaviour.message = message.to_string();
        }
        Ok((user.to_string(), behaviour))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(text: &str) -> (tempfile::NamedTempFile, Result<Fleet, SimError>) {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        let fleet = Fleet::load(file.path());
        (file, fleet)
    }

    #[test]
    fn load_reads_statuses_codes_and_messages() {
        let text = "user,status,code,message\n\
                    Ghost@Contoso.com,404\n\
                    bob@contoso.com,403,Forbidden,No licence\n\
                    carol@contoso.com,400,,\n";
        let (_file, fleet) = load(text);
        let fleet = fleet.unwrap();

        assert_eq!(fleet.len(), 3);
        assert_eq!(
            fleet.get("ghost@contoso.com"),
            Some(&Behaviour::not_found())
        );
        assert_eq!(fleet.get("BOB@contoso.com").unwrap().message, "No licence");
        let carol = fleet.get("carol@contoso.com").unwrap();
        assert_eq!(
            (carol.status, carol.code.as_str(), carol.message.as_str()),
            (400, "", "")
        );
        assert!(fleet.get("dave@contoso.com").is_none());
    }

    #[test]
    fn load_accepts_a_file_without_optional_columns() {
        let (_file, fleet) = load("status,user\n503,a@x\n");
        assert_eq!(
            fleet.unwrap().get("A@X").unwrap().code,
            "ServiceUnavailable"
        );
    }

    #[test]
    fn load_errors_name_the_file_and_the_line() {
        let (file, fleet) = load("user,status\na@x,404\nb@x,four-oh-four\n");
        let message = fleet.unwrap_err().to_string();
        assert!(
            message.contains(&file.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("four-oh-four"), "{message}");

        let (_file, fleet) = load("user,status\na@x,404\nA@x,403\n");
        let message = fleet.unwrap_err().to_string();
        assert!(
            message.contains("line 3") && message.contains("first on line 2"),
            "{message}"
        );

        let (_file, fleet) = load("user,state\n");
        assert!(fleet.unwrap_err().to_string().contains("line 1"));
    }

    #[test]
    fn load_of_a_missing_file_names_it() {
        let message = Fleet::load(Path::new("/nonexistent/fleet.csv"))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/fleet.csv"), "{message}");
    }
}
