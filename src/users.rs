//! Dashboard users: the rules every way of making one shares (`gophergate users create`,
//! `POST /api/users`, the first start), password hashing and checking, and the first admin.
//!
//! bcrypt runs off the async runtime (`spawn_blocking`): a cost-12 hash is a quarter of a second of
//! CPU. Checking a password for a user that does not exist costs the same as a wrong one, so
//! neither the answer nor its timing tells whether a username exists.

use crate::{
    secret::Secret,
    store::{DynStore, StoreError, UserRecord, UserRole},
};
use rand::{Rng, distributions::Alphanumeric, rngs::OsRng};
use std::sync::LazyLock;

pub const BCRYPT_COST: u32 = 12;
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longer inputs are refused unchecked (bcrypt reads only the first 72 bytes anyway).
pub const MAX_FIELD_LEN: usize = 1024;
pub const MAX_USERNAME_CHARS: usize = 64;
/// The user `serve` creates when the database has none.
pub const FIRST_ADMIN: &str = "admin";
/// Length of the first admin's random password (62 symbols: about 119 bits).
const FIRST_PASSWORD_CHARS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("the username must not be empty")]
    EmptyUsername,
    #[error(
        "the username must be at most {MAX_USERNAME_CHARS} characters, without spaces or control characters"
    )]
    BadUsername,
    #[error("the password must be at least {MIN_PASSWORD_CHARS} characters long")]
    ShortPassword,
    #[error("the password must be at most {MAX_FIELD_LEN} bytes long")]
    LongPassword,
    #[error("could not hash the password: {0}")]
    Hash(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The username as stored: trimmed, non-empty, printable, no spaces.
pub fn check_username(username: &str) -> Result<String, UserError> {
    let name = username.trim();
    if name.is_empty() {
        return Err(UserError::EmptyUsername);
    }
    if name.chars().count() > MAX_USERNAME_CHARS
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(UserError::BadUsername);
    }
    Ok(name.to_string())
}

pub fn check_password(password: &str) -> Result<(), UserError> {
    if password.len() > MAX_FIELD_LEN {
        return Err(UserError::LongPassword);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(UserError::ShortPassword);
    }
    Ok(())
}

/// Checks the rules and hashes (bcrypt, cost 12, off the runtime).
pub async fn hash_password(password: Secret<String>) -> Result<String, UserError> {
    check_password(password.expose())?;
    tokio::task::spawn_blocking(move || bcrypt::hash(password.expose(), BCRYPT_COST))
        .await
        .map_err(|e| UserError::Hash(e.to_string()))?
        .map_err(|e| UserError::Hash(e.to_string()))
}

/// Creates a user after checking the username and password; a taken name is `Store(Conflict)`.
pub async fn create(
    store: &DynStore,
    username: &str,
    password: Secret<String>,
    role: UserRole,
) -> Result<UserRecord, UserError> {
    let username = check_username(username)?;
    let hash = hash_password(password).await?;
    Ok(store.create_user(&username, &hash, role).await?)
}

/// Verified when there is no user, so that case costs what a wrong password costs.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| bcrypt::hash("gophergate: no such user", BCRYPT_COST).unwrap_or_default());

/// Whether `password` matches `hash`; `None` (no such user) does the same work and says no.
pub async fn verify_password(hash: Option<String>, password: Secret<String>) -> bool {
    if password.expose().len() > MAX_FIELD_LEN {
        return false;
    }
    tokio::task::spawn_blocking(move || match hash {
        Some(hash) => bcrypt::verify(password.expose(), &hash).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a stored password hash is unusable");
            false
        }),
        None => {
            let _ = bcrypt::verify(password.expose(), &DUMMY_HASH);
            false
        }
    })
    .await
    .unwrap_or(false)
}

/// A fresh random password of letters and digits, from the OS's generator.
pub fn random_password() -> Secret<String> {
    Secret::new(
        (0..FIRST_PASSWORD_CHARS)
            .map(|_| char::from(OsRng.sample(Alphanumeric)))
            .collect(),
    )
}

/// First start: when there is no user at all, creates `admin` with a random password and returns
/// it (for the caller to show once). `None` when a user exists, including when another instance
/// starting at the same moment created `admin` first (the unique name decides).
pub async fn create_first_admin(store: &DynStore) -> Result<Option<Secret<String>>, UserError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = random_password();
    match create(store, FIRST_ADMIN, password.clone(), UserRole::Admin).await {
        Ok(_) => Ok(Some(password)),
        Err(UserError::Store(StoreError::Conflict(_))) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_and_passwords() {
        assert_eq!(check_username("  alice ").unwrap(), "alice");
        assert!(matches!(
            check_username("  "),
            Err(UserError::EmptyUsername)
        ));
        assert!(matches!(check_username("a b"), Err(UserError::BadUsername)));
        assert!(matches!(
            check_username(&"x".repeat(65)),
            Err(UserError::BadUsername)
        ));
        assert!(check_password("12345678").is_ok());
        assert!(matches!(
            check_password("1234567"),
            Err(UserError::ShortPassword)
        ));
        assert!(matches!(
            check_password(&"x".repeat(2000)),
            Err(UserError::LongPassword)
        ));
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password();
        assert_eq!(a.expose().len(), FIRST_PASSWORD_CHARS);
        assert!(a.expose().chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a.expose(), random_password().expose());
    }
}
