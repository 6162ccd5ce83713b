//! Users: the configured `[[users]]`, names, argon2id password hashes, and a user's
//! principal. Passwords exist in clear only inside [`hash_password`] and [`verify_password`];
//! the database and the config hold PHC strings.

use std::collections::BTreeSet;
use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use serde::{Deserialize, Serialize};

use super::{Principal, Role, Scope, Via};

/// `[[users]]` in the hub config: at every start the config is the truth for the users it
/// lists (created or overwritten); users an admin made through the API are kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserConfig {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub regions: BTreeSet<String>,
    #[serde(default)]
    pub estates: BTreeSet<String>,
    /// For role guard: the rota guard id (`[[guards]] id`).
    #[serde(default)]
    pub guard_id: Option<String>,
    /// argon2id PHC string (`gatehouse-hub hash-password`).
    pub password_hash: String,
    #[serde(default)]
    pub disabled: bool,
}

/// A stored user (never with its password hash in an answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    pub regions: BTreeSet<String>,
    pub estates: BTreeSet<String>,
    pub guard_id: Option<String>,
    pub disabled: bool,
    pub from_config: bool,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl User {
    pub fn principal(&self, via: Via) -> Principal {
        Principal {
            user: self.name.clone(),
            role: self.role,
            scope: scope_of(&self.regions, &self.estates),
            via,
            guard_id: self.guard_id.clone(),
        }
    }
}

/// Both empty: every estate (as for `[[api_tokens]]`).
pub fn scope_of(regions: &BTreeSet<String>, estates: &BTreeSet<String>) -> Scope {
    if regions.is_empty() && estates.is_empty() {
        Scope::All
    } else {
        Scope::Some {
            regions: regions.clone(),
            estates: estates.clone(),
        }
    }
}

/// Why a name or password is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unacceptable(pub String);

/// A login name: 1–64 characters of letters, digits, `.`, `_`, `-` and `@`, not starting
/// with a punctuation mark (names appear in logs, the audit log and the board).
pub fn check_name(name: &str) -> Result<(), Unacceptable> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if name.is_empty() || name.len() > 64 {
        return Err(Unacceptable("a user name has 1 to 64 characters".into()));
    }
    if !name.chars().all(ok_char) || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(Unacceptable(
            "a user name is letters, digits, '.', '_', '-' and '@', starting with a letter or digit".into(),
        ));
    }
    Ok(())
}

/// Passwords set through the API: at least 10 characters, at most 1024 bytes (argon2 takes
/// any length; the bound keeps a request from hashing megabytes).
pub fn check_password(password: &str) -> Result<(), Unacceptable> {
    if password.chars().count() < 10 {
        return Err(Unacceptable("a password has at least 10 characters".into()));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Unacceptable(format!(
            "a password has at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Longer passwords are refused before hashing.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// A configured hash must be an argon2id PHC string.
pub fn check_hash(hash: &str) -> Result<(), Unacceptable> {
    match argon2::password_hash::phc::PasswordHash::new(hash) {
        Ok(h) if h.algorithm.as_str() == "argon2id" => Ok(()),
        Ok(h) => Err(Unacceptable(format!(
            "expected an argon2id hash, got {}",
            h.algorithm.as_str()
        ))),
        Err(e) => Err(Unacceptable(format!("not a PHC password hash: {e}"))),
    }
}

/// argon2id with the crate's defaults (19 MiB, 2 passes) and a random salt. CPU-heavy: call
/// from a blocking task.
pub fn hash_password(password: &str) -> Result<String, Unacceptable> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Unacceptable(format!("cannot hash the password: {e}")))
}

/// Whether `password` matches `hash`. With no hash (unknown user) it still runs argon2
/// against a fixed dummy hash, so an unknown name and a wrong password take the same time.
pub fn verify_password(password: &str, hash: Option<&str>) -> bool {
    let password = if password.len() > MAX_PASSWORD_BYTES {
        // Still spend the time, on a bounded input.
        &password[..0]
    } else {
        password
    };
    match hash {
        Some(hash) => Argon2::default().verify_password(password.as_bytes(), hash).is_ok(),
        None => {
            let _ = Argon2::default().verify_password(password.as_bytes(), dummy_hash());
            false
        }
    }
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_password("no user has this password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_never_contain_the_password() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        check_hash(&hash).unwrap();
        assert!(verify_password("correct horse battery", Some(&hash)));
        assert!(!verify_password("wrong horse battery", Some(&hash)));
        assert!(!verify_password("correct horse battery", None));
        assert!(!verify_password("x", Some("not a hash")));
    }

    #[test]
    fn names_are_checked() {
        check_name("alice").unwrap();
        check_name("j.smith@estate-a").unwrap();
        for bad in ["", "-x", "a b", "a/b", "../etc", &"x".repeat(65), "ä"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_hash("$pbkdf2-sha256$i=1$c2FsdHNhbHQ$aGFzaA").is_err());
    }
}
