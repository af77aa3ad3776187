//! Rows that repeat an earlier one. Each distinct row costs a 96-bit
//! fingerprint and its line, never its strings, so huge inputs stay small.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};

/// The table is split so that growing it copies one shard at a time: a
/// single table would briefly hold its old and new copies, 1.5 times its
/// size, at every doubling.
const SHARDS: usize = 16;

/// 96 bits of two independent SipHashes of the key: a false duplicate among
/// ten million rows has odds of about one in 10^15, and an entry with its
/// line packs into 16 bytes (128 bits would take a quarter more memory for
/// odds no input can tell apart).
type Fingerprint = [u32; 3];

/// The rows seen so far, by fingerprint, with the line each was first on.
pub struct Seen {
    keys: [RandomState; 2],
    shards: Vec<HashMap<Fingerprint, u32>>,
    /// The user in lower case, kept to spare an allocation per row.
    lower: String,
}

impl Default for Seen {
    fn default() -> Seen {
        Seen {
            keys: [RandomState::new(), RandomState::new()],
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            lower: String::new(),
        }
    }
}

impl Seen {
    /// The line of an earlier row with the same user and installation, or
    /// `None` after remembering `line` as the first with them.
    pub fn first_line(&mut self, user: &str, installation: &str, line: u64) -> Option<u64> {
        let print = self.fingerprint(user, installation);
        let shard = &mut self.shards[print[0] as usize % SHARDS];
        if let Some(&first) = shard.get(&print) {
            return Some(u64::from(first));
        }
        // Four billion lines would keep Graph busy for over four years at
        // 30 calls a second; rows beyond are not remembered rather than
        // remembered under a wrong line.
        if let Ok(line) = u32::try_from(line) {
            shard.insert(print, line);
        }
        None
    }

    /// The key: the user in lower case, as Graph compares UPNs and object
    /// ids without case, and the installation exactly, since base64 has
    /// case.
    fn fingerprint(&mut self, user: &str, installation: &str) -> Fingerprint {
        self.lower.clear();
        if user.is_ascii() {
            self.lower.push_str(user);
            self.lower.make_ascii_lowercase();
        } else {
            self.lower.extend(user.chars().flat_map(char::to_lowercase));
        }
        let [a, b] = self.keys.each_ref().map(|key| {
            let mut hasher = key.build_hasher();
            hasher.write(self.lower.as_bytes());
            // 0xFF is never part of UTF-8, so the user cannot run into the
            // installation.
            hasher.write_u8(0xFF);
            hasher.write(installation.as_bytes());
            hasher.finish()
        });
        [a as u32, (a >> 32) as u32, b as u32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_later_copy_names_the_first_line() {
        let mut seen = Seen::default();
        assert_eq!(seen.first_line("a@x", "i1", 2), None);
        assert_eq!(seen.first_line("b@x", "i1", 3), None);
        assert_eq!(seen.first_line("a@x", "i1", 4), Some(2));
        assert_eq!(seen.first_line("a@x", "i1", 9), Some(2));
    }

    #[test]
    fn users_compare_without_case_including_non_ascii_and_guids() {
        let mut seen = Seen::default();
        seen.first_line("Józef.Żółć@Contoso.com", "i", 2);
        assert_eq!(seen.first_line("józef.żółć@contoso.COM", "i", 3), Some(2));
        seen.first_line("4f302b5e-4562-4792-8f6f-01842cc39122", "i", 4);
        assert_eq!(
            seen.first_line("4F302B5E-4562-4792-8F6F-01842CC39122", "i", 5),
            Some(4)
        );
    }

    #[test]
    fn installations_compare_with_case() {
        let mut seen = Seen::default();
        seen.first_line("a@x", "AbC=", 2);
        assert_eq!(seen.first_line("a@x", "abc=", 3), None);
    }

    #[test]
    fn the_boundary_between_user_and_installation_counts() {
        let mut seen = Seen::default();
        seen.first_line("ab", "c", 2);
        assert_eq!(seen.first_line("a", "bc", 3), None);
    }

    #[test]
    fn an_entry_takes_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<(Fingerprint, u32)>(), 16);
    }
}
