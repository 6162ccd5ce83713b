//! Every SQL statement on `users`, `sessions` and `api_tokens`. Writes are [`AuthWrite`]s
//! that the single writer applies inside its transaction ([`apply`]); the one exception is
//! [`seed_users`], run at start before the writer exists.

use std::collections::BTreeSet;

use serde::Serialize;

use super::users::{User, UserConfig};
use super::{Principal, Role, Via};
use crate::store::{Conn, Context, Pool, Sql, StoreError};

#[derive(Debug, Clone, sqlx::FromRow)]
struct UserRow {
    name: String,
    role: String,
    regions: String,
    estates: String,
    guard_id: Option<String>,
    password_hash: String,
    disabled: i64,
    from_config: i64,
    created_at_ms: i64,
    updated_at_ms: i64,
}

fn set_of(json: &str) -> BTreeSet<String> {
    serde_json::from_str(json).unwrap_or_default()
}

fn json_of(set: &BTreeSet<String>) -> String {
    serde_json::to_string(set).unwrap_or_else(|_| "[]".into())
}

fn role_of(s: &str) -> Option<Role> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

impl UserRow {
    /// None when the stored role is not one this build knows (then the user cannot sign in).
    fn user(self) -> Option<(User, String)> {
        let role = role_of(&self.role)?;
        Some((
            User {
                name: self.name,
                role,
                regions: set_of(&self.regions),
                estates: set_of(&self.estates),
                guard_id: self.guard_id,
                disabled: self.disabled != 0,
                from_config: self.from_config != 0,
                created_at_ms: self.created_at_ms,
                updated_at_ms: self.updated_at_ms,
            },
            self.password_hash,
        ))
    }
}

/// A user and their password hash.
pub async fn find_user(pool: &Pool, name: &str) -> Result<Option<(User, String)>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT name, role, regions, estates, guard_id, password_hash, disabled, from_config, created_at_ms, updated_at_ms FROM users WHERE name = $1",
    )
        .bind(name)
        .fetch_optional(pool)
        .await
        .context(|| format!("reading user {name:?}"))?;
    Ok(row.and_then(UserRow::user))
}

pub async fn list_users(pool: &Pool) -> Result<Vec<User>, StoreError> {
    let rows: Vec<UserRow> = sqlx::query_as(
        "SELECT name, role, regions, estates, guard_id, password_hash, disabled, from_config, created_at_ms, updated_at_ms FROM users ORDER BY name",
    )
        .fetch_all(pool)
        .await
        .context(|| "listing users".into())?;
    Ok(rows.into_iter().filter_map(UserRow::user).map(|(u, _)| u).collect())
}

/// The principal of a live session of an enabled user.
pub async fn session_principal(pool: &Pool, token_sha256: &str, now_ms: i64) -> Result<Option<Principal>, StoreError> {
    let row: Option<UserRow> = sqlx::query_as(
        "SELECT u.name, u.role, u.regions, u.estates, u.guard_id, u.password_hash, u.disabled, u.from_config, u.created_at_ms, u.updated_at_ms FROM sessions s JOIN users u ON u.name = s.user_name \
         WHERE s.token_sha256 = $1 AND s.expires_at_ms > $2 AND u.disabled = 0",
    )
    .bind(token_sha256)
    .bind(now_ms)
    .fetch_optional(pool)
    .await
    .context(|| "reading a session".into())?;
    Ok(row.and_then(UserRow::user).map(|(u, _)| u.principal(Via::Session)))
}

/// An admin-made API token as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub regions: BTreeSet<String>,
    pub estates: BTreeSet<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    role: String,
    regions: String,
    estates: String,
    created_by: String,
    created_at_ms: i64,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
}

impl TokenRow {
    fn token(self) -> Option<ApiToken> {
        Some(ApiToken {
            id: self.id,
            role: role_of(&self.role)?,
            name: self.name,
            regions: set_of(&self.regions),
            estates: set_of(&self.estates),
            created_by: self.created_by,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
        })
    }
}

pub async fn list_tokens(pool: &Pool) -> Result<Vec<ApiToken>, StoreError> {
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, name, role, regions, estates, created_by, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens ORDER BY id",
    )
        .fetch_all(pool)
        .await
        .context(|| "listing API tokens".into())?;
    Ok(rows.into_iter().filter_map(TokenRow::token).collect())
}

/// The principal of a live (not revoked, not expired) admin-made token.
pub async fn token_principal(pool: &Pool, token_sha256: &str, now_ms: i64) -> Result<Option<Principal>, StoreError> {
    let row: Option<TokenRow> = sqlx::query_as(
        "SELECT id, name, role, regions, estates, created_by, created_at_ms, expires_at_ms, revoked_at_ms FROM api_tokens WHERE token_sha256 = $1 AND revoked_at_ms IS NULL \
         AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
    )
    .bind(token_sha256)
    .bind(now_ms)
    .fetch_optional(pool)
    .await
    .context(|| "reading an API token".into())?;
    Ok(row.and_then(TokenRow::token).map(|t| Principal {
        scope: super::users::scope_of(&t.regions, &t.estates),
        user: t.name,
        role: t.role,
        via: Via::ApiToken,
        guard_id: None,
    }))
}

/// At start, before the writer runs: the configured users are created or overwritten (the
/// config is the truth for them); a user that was from the config and no longer is listed
/// is disabled, not deleted (its name stays in the records it made).
pub async fn seed_users(pool: &Pool, users: &[UserConfig], now_ms: i64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await.context(|| "seeding users".into())?;
    let mut gone = Sql::new("UPDATE users SET disabled = 1, updated_at_ms = ");
    gone.push_bind(now_ms).push(" WHERE from_config = 1 AND disabled = 0");
    if !users.is_empty() {
        gone.push(" AND name NOT IN (")
            .push_list(users.iter().map(|u| u.name.as_str()))
            .push(")");
    }
    gone.build()
        .execute(&mut *tx)
        .await
        .context(|| "disabling users no longer configured".into())?;
    for u in users {
        let before: Option<(i64, String)> = sqlx::query_as("SELECT disabled, password_hash FROM users WHERE name = $1")
            .bind(&u.name)
            .fetch_optional(&mut *tx)
            .await
            .context(|| format!("reading user {:?}", u.name))?;
        sqlx::query(
            "INSERT INTO users (name, role, regions, estates, guard_id, password_hash, disabled, from_config, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $8) \
             ON CONFLICT (name) DO UPDATE SET role = excluded.role, regions = excluded.regions, estates = excluded.estates, \
             guard_id = excluded.guard_id, password_hash = excluded.password_hash, disabled = excluded.disabled, \
             from_config = 1, updated_at_ms = excluded.updated_at_ms",
        )
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(json_of(&u.regions))
        .bind(json_of(&u.estates))
        .bind(&u.guard_id)
        .bind(&u.password_hash)
        .bind(i64::from(u.disabled))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .context(|| format!("seeding user {:?}", u.name))?;
        // A changed password or a disabling in the config ends the user's sessions.
        if let Some((_, old_hash)) = before
            && (old_hash != u.password_hash || u.disabled)
        {
            end_sessions(&mut tx, &u.name).await?;
        }
    }
    sqlx::query("DELETE FROM sessions WHERE user_name IN (SELECT name FROM users WHERE disabled = 1)")
        .execute(&mut *tx)
        .await
        .context(|| "ending disabled users' sessions".into())?;
    tx.commit().await.context(|| "seeding users".into())?;
    Ok(())
}

async fn end_sessions(conn: &mut Conn, user: &str) -> Result<u64, StoreError> {
    Ok(sqlx::query("DELETE FROM sessions WHERE user_name = $1")
        .bind(user)
        .execute(&mut *conn)
        .await
        .context(|| format!("ending the sessions of {user:?}"))?
        .rows_affected())
}

/// A user to create through the API.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub name: String,
    pub role: Role,
    pub regions: BTreeSet<String>,
    pub estates: BTreeSet<String>,
    pub guard_id: Option<String>,
    pub password_hash: String,
}

/// A change to a user through the API; `None` keeps the field.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub role: Option<Role>,
    pub regions: Option<BTreeSet<String>>,
    pub estates: Option<BTreeSet<String>>,
    pub guard_id: Option<Option<String>>,
    pub password_hash: Option<String>,
    pub disabled: Option<bool>,
}

/// A write of sign-in state, carried out by the single writer.
#[derive(Debug, Clone)]
pub enum AuthWrite {
    /// Answers 1.
    StartSession {
        token_sha256: String,
        user: String,
        expires_at_ms: i64,
        source: Option<String>,
    },
    /// Answers how many sessions ended (0 or 1).
    EndSession { token_sha256: String },
    /// Answers 1 if created, 0 if the name is taken.
    CreateUser(NewUser),
    /// Answers 1 if changed, 0 if there is no such user.
    ChangeUser { name: String, change: UserChange },
    /// Answers 1 if deleted, 0 if there is no such user.
    DeleteUser { name: String },
    /// Answers the new token's id.
    CreateToken {
        name: String,
        role: Role,
        regions: BTreeSet<String>,
        estates: BTreeSet<String>,
        token_sha256: String,
        created_by: String,
        expires_at_ms: Option<i64>,
    },
    /// Answers 1 if revoked, 0 if there is no such live token.
    RevokeToken { id: i64 },
}

/// Applies one write inside the writer's transaction; the answer is described per variant.
pub async fn apply(conn: &mut Conn, write: &AuthWrite, now_ms: i64) -> Result<u64, StoreError> {
    match write {
        AuthWrite::StartSession {
            token_sha256,
            user,
            expires_at_ms,
            source,
        } => {
            // Expired sessions are swept as new ones start, so the table stays small.
            sqlx::query("DELETE FROM sessions WHERE expires_at_ms <= $1")
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .context(|| "sweeping expired sessions".into())?;
            sqlx::query(
                "INSERT INTO sessions (token_sha256, user_name, created_at_ms, expires_at_ms, source) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(token_sha256)
            .bind(user)
            .bind(now_ms)
            .bind(expires_at_ms)
            .bind(source)
            .execute(&mut *conn)
            .await
            .context(|| format!("starting a session of {user:?}"))?;
            Ok(1)
        }
        AuthWrite::EndSession { token_sha256 } => Ok(sqlx::query("DELETE FROM sessions WHERE token_sha256 = $1")
            .bind(token_sha256)
            .execute(&mut *conn)
            .await
            .context(|| "ending a session".into())?
            .rows_affected()),
        AuthWrite::CreateUser(u) => Ok(sqlx::query(
            "INSERT INTO users (name, role, regions, estates, guard_id, password_hash, disabled, from_config, created_at_ms, updated_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, 0, 0, $7, $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&u.name)
        .bind(u.role.as_str())
        .bind(json_of(&u.regions))
        .bind(json_of(&u.estates))
        .bind(&u.guard_id)
        .bind(&u.password_hash)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .context(|| format!("creating user {:?}", u.name))?
        .rows_affected()),
        AuthWrite::ChangeUser { name, change } => {
            let c = change;
            let changed = sqlx::query(
                "UPDATE users SET role = COALESCE($2, role), regions = COALESCE($3, regions), estates = COALESCE($4, estates), \
                 guard_id = CASE WHEN $5 THEN $6 ELSE guard_id END, password_hash = COALESCE($7, password_hash), \
                 disabled = COALESCE($8, disabled), updated_at_ms = $9 WHERE name = $1",
            )
            .bind(name)
            .bind(c.role.map(Role::as_str))
            .bind(c.regions.as_ref().map(json_of))
            .bind(c.estates.as_ref().map(json_of))
            .bind(c.guard_id.is_some())
            .bind(c.guard_id.clone().flatten())
            .bind(&c.password_hash)
            .bind(c.disabled.map(i64::from))
            .bind(now_ms)
            .execute(&mut *conn)
            .await
            .context(|| format!("changing user {name:?}"))?
            .rows_affected();
            // New rights or a new password: the user signs in again.
            if changed > 0 {
                end_sessions(conn, name).await?;
            }
            Ok(changed)
        }
        AuthWrite::DeleteUser { name } => {
            end_sessions(conn, name).await?;
            Ok(sqlx::query("DELETE FROM users WHERE name = $1")
                .bind(name)
                .execute(&mut *conn)
                .await
                .context(|| format!("deleting user {name:?}"))?
                .rows_affected())
        }
        AuthWrite::CreateToken {
            name,
            role,
            regions,
            estates,
            token_sha256,
            created_by,
            expires_at_ms,
        } => {
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO api_tokens (name, role, regions, estates, token_sha256, created_by, created_at_ms, expires_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(name)
            .bind(role.as_str())
            .bind(json_of(regions))
            .bind(json_of(estates))
            .bind(token_sha256)
            .bind(created_by)
            .bind(now_ms)
            .bind(expires_at_ms)
            .fetch_one(&mut *conn)
            .await
            .context(|| format!("creating API token {name:?}"))?;
            Ok(u64::try_from(id).unwrap_or(0))
        }
        AuthWrite::RevokeToken { id } => Ok(sqlx::query(
            "UPDATE api_tokens SET revoked_at_ms = $2 WHERE id = $1 AND revoked_at_ms IS NULL",
        )
        .bind(id)
        .bind(now_ms)
        .execute(&mut *conn)
        .await
        .context(|| format!("revoking API token {id}"))?
        .rows_affected()),
    }
}
