//! People: accounts, Argon2id password hashes and browser sessions.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

use crate::codes::{random_secret, secret_hash};
use crate::hashing::{Busy, HashPool};
use crate::store::{Account, Session, Store, StoreError, Timestamp};

/// NIST SP 800-63B §5.1.1.2: at least 8 characters, no composition rules.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Bounds the hashing work one request can ask for.
pub const MAX_PASSWORD_LEN: usize = 1024;
pub const MAX_EMAIL_LEN: usize = 254;

#[derive(Debug, thiserror::Error)]
pub enum SignUpError {
    #[error("that does not look like an email address")]
    InvalidEmail,
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    BadPassword,
    #[error("an account with that email already exists")]
    Taken,
    /// Every password-hashing slot stayed busy (see `hashing`).
    #[error("too many passwords are being checked; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Wrong email, wrong password, or a disabled account: one answer for
    /// all so the form does not reveal which accounts exist.
    #[error("the email or password is not right")]
    Invalid,
    /// Every password-hashing slot stayed busy: the password was not
    /// checked.
    #[error("too many passwords are being checked; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Hashes with Argon2id at the crate's default cost (OWASP's minimum:
/// 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        // Hashing only fails on parameters or salts that are out of range,
        // which the defaults and a generated salt never are.
        .unwrap_or_default()
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A hash to verify against when no account matches, so a sign-in for an
/// unknown email takes as long as one for a known email.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| hash_password("linkd-no-such-account"));

/// Normalises an email for storage and lookup: trimmed. Lookups ignore
/// ASCII case.
pub fn normalize_email(email: &str) -> Result<String, SignUpError> {
    let email = email.trim();
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if valid {
        Ok(email.to_string())
    } else {
        Err(SignUpError::InvalidEmail)
    }
}

pub fn new_account_id() -> String {
    crate::codes::random_id()
}

/// Creates an account. With `verify` (mail is set up), a verification
/// link for the address is mailed, written with the account.
pub async fn sign_up(
    store: &dyn Store,
    hashing: &HashPool,
    email: &str,
    password: &str,
    now: Timestamp,
    verify: Option<&crate::recovery::MailContext<'_>>,
) -> Result<Account, SignUpError> {
    let email = normalize_email(email)?;
    let chars = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
        return Err(SignUpError::BadPassword);
    }
    let password = password.to_string();
    let password_hash = hashing
        .run(move || hash_password(&password))
        .await
        .map_err(|Busy| SignUpError::Busy)?;
    let account = Account {
        id: new_account_id(),
        email,
        password_hash,
        created_at: now,
        disabled: false,
        email_verified_at: None,
        time_zone: None,
    };
    let stored = match verify {
        Some(mail) => {
            let (link, message) =
                crate::verification::link_for(&account, &account.email, now, mail);
            store
                .insert_account_with_link(&account, &link, &[message])
                .await
        }
        None => store.insert_account(&account).await,
    };
    match stored {
        Ok(()) => Ok(account),
        Err(StoreError::Conflict) => Err(SignUpError::Taken),
        Err(e) => Err(e.into()),
    }
}

/// Checks a password. An unknown email costs a hash too, through the same
/// pool, so neither timing nor the pool's queue tells which accounts exist.
pub async fn sign_in(
    store: &dyn Store,
    hashing: &HashPool,
    email: &str,
    password: &str,
) -> Result<Account, SignInError> {
    if password.len() > MAX_PASSWORD_LEN * 4 || email.len() > MAX_EMAIL_LEN * 4 {
        return Err(SignInError::Invalid);
    }
    let account = store.get_account_by_email(email.trim()).await?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let password = password.to_string();
    let ok = hashing
        .run(move || {
            let hash = hash.unwrap_or_else(|| DUMMY_HASH.clone());
            verify_password(&password, &hash)
        })
        .await
        .map_err(|Busy| SignInError::Busy)?;
    match account {
        Some(account) if ok && !account.disabled => Ok(account),
        _ => Err(SignInError::Invalid),
    }
}

/// A new browser session; returns the cookie value (only its hash is stored).
pub async fn start_session(
    store: &dyn Store,
    account_id: &str,
    now: Timestamp,
    lifetime: i64,
) -> Result<String, StoreError> {
    let token = random_secret(32);
    store
        .insert_session(&Session {
            id_hash: secret_hash(&token),
            account_id: account_id.to_string(),
            csrf_token: random_secret(32),
            created_at: now,
            expires_at: now + lifetime,
        })
        .await?;
    Ok(token)
}

/// The live session and account behind a cookie value, if any. A disabled
/// account has no live sessions.
pub async fn resolve_session(
    store: &dyn Store,
    token: &str,
    now: Timestamp,
) -> Result<Option<(Session, Account)>, StoreError> {
    if token.len() > 64 {
        return Ok(None);
    }
    let Some(session) = store.get_session(&secret_hash(token), now).await? else {
        return Ok(None);
    };
    match store.get_account(&session.account_id).await? {
        Some(account) if !account.disabled => Ok(Some((session, account))),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2id_round_trip() {
        let hash = hash_password("correct horse");
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn email_validation() {
        assert_eq!(normalize_email("  a@b.example ").unwrap(), "a@b.example");
        for bad in [
            "", "ab", "@b", "a@", "a b@c", "a@b@c", "a@.b", "a@b.", "a@b\0",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_email(&format!("{}@b.example", "a".repeat(300))).is_err());
    }
}
