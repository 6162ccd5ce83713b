//! The credentials the simulators use against a hub (issue 12 §3): the demo's users, one per
//! role, with random passwords, and a supervisor's API token of every estate, which the
//! scripted operator, the harness and the load tools send as `Authorization: Bearer`.
//!
//! All are made once per process from OS randomness; the hub config [`hub_toml_section`]
//! writes holds only their hashes. `GATEHOUSE_TOKEN` replaces the token (a hub this process
//! did not configure).

use std::sync::OnceLock;

use anyhow::Context;
use gatehouse_hub::auth::sessions::new_secret;
use gatehouse_hub::auth::token_sha256;
use gatehouse_hub::auth::users::hash_password;

/// The environment variable that names the API token for a hub this process did not start.
pub const TOKEN_ENV: &str = "GATEHOUSE_TOKEN";

/// The configured API token's name (who acted, in the hub's records).
pub const TOKEN_NAME: &str = "supervisor-script";

/// One demo login.
#[derive(Debug, Clone)]
pub struct Login {
    pub user: &'static str,
    pub role: &'static str,
    pub password: String,
    hash: String,
}

struct Made {
    token: String,
    logins: Vec<Login>,
}

/// The users the demo creates: one per role. The guard is Wang Fang of estate-a's gate post.
const USERS: [(&str, &str); 6] = [
    ("operator", "operator"),
    ("supervisor", "supervisor"),
    ("duty-manager", "duty_manager"),
    ("facility", "facility"),
    ("admin", "admin"),
    ("guard-wang", "guard"),
];

fn made() -> anyhow::Result<&'static Made> {
    static MADE: OnceLock<Made> = OnceLock::new();
    if let Some(m) = MADE.get() {
        return Ok(m);
    }
    let token = match std::env::var(TOKEN_ENV) {
        Ok(t) if !t.trim().is_empty() => t.trim().to_owned(),
        _ => new_secret("ght_").context("making the API token")?,
    };
    let mut logins = Vec::new();
    for (user, role) in USERS {
        // 12 random bytes, hex: plenty for a demo and easy to type.
        let password = new_secret("").context("making a password")?[..24].to_owned();
        let hash = hash_password(&password).map_err(|e| anyhow::anyhow!("{e}"))?;
        logins.push(Login {
            user,
            role,
            password,
            hash,
        });
    }
    Ok(MADE.get_or_init(|| Made { token, logins }))
}

/// The API token (a supervisor of every estate) this process's clients send.
pub fn token() -> anyhow::Result<&'static str> {
    Ok(&made()?.token)
}

/// The demo's logins (user, role, password).
pub fn logins() -> anyhow::Result<&'static [Login]> {
    Ok(&made()?.logins)
}

/// The login of `role` (e.g. "operator").
pub fn login(role: &str) -> anyhow::Result<&'static Login> {
    logins()?
        .iter()
        .find(|l| l.role == role)
        .with_context(|| format!("no demo user of role {role}"))
}

/// `[[users]]` and the `[[api_tokens]]` entry, for the hub config.
pub fn hub_toml_section() -> anyhow::Result<String> {
    let m = made()?;
    let mut s = format!(
        "[[api_tokens]]\nname = \"{TOKEN_NAME}\"\nrole = \"supervisor\"\ntoken_sha256 = \"{}\"\n\n",
        token_sha256(&m.token)
    );
    for l in &m.logins {
        s += &format!(
            "[[users]]\nname = \"{}\"\nrole = \"{}\"\npassword_hash = \"{}\"\n",
            l.user, l.role, l.hash
        );
        if l.role == "guard" {
            s += "guard_id = \"g-wang-estate-a\"\n";
        }
        s += "\n";
    }
    Ok(s)
}

/// An HTTP client builder that sends the API token with every request.
pub fn client_builder() -> anyhow::Result<reqwest::ClientBuilder> {
    let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", token()?))
        .context("the API token is not a valid header value")?;
    value.set_sensitive(true);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, value);
    Ok(reqwest::Client::builder().default_headers(headers))
}

/// [`client_builder`], built.
pub fn client() -> anyhow::Result<reqwest::Client> {
    client_builder()?.build().context("building an HTTP client")
}
