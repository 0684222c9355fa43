//! Filling a fresh store, through linkd's own `Store`, before the server
//! starts: the `bench` client and any number of pending device
//! authorizations whose device codes the load generator keeps.

use anyhow::Context;
use linkd::codes::{
    DEVICE_CODE_LEN, USER_CODE_ALPHABET, USER_CODE_LEN, device_code, device_code_key, sortable_id,
};
use linkd::store::{AuthorizationState, Client, DeviceAuthorization};

/// The public client every request of the bench names.
pub const CLIENT_ID: &str = "bench";
/// What the bench client may ask for (the approve scenario asks for all of it).
pub const CLIENT_SCOPES: &str = "openid profile offline_access";
/// Rows per store call: big enough that a million codes take few
/// transactions, small enough that one statement stays modest.
const BATCH: usize = 5000;
/// Seeded codes outlive any run.
const LIFETIME_SECS: i64 = 3600;

/// Device codes kept back to back in one buffer: a million of them as
/// separate `String`s would cost the load generator a third more memory
/// and a million allocations.
#[derive(Debug, Default)]
pub struct DeviceCodes {
    bytes: Vec<u8>,
}

impl DeviceCodes {
    /// `n` fresh random codes, not stored anywhere (for the bare server,
    /// which never looks them up).
    pub fn generate(n: usize) -> Self {
        let mut codes = DeviceCodes::with_capacity(n);
        for _ in 0..n {
            codes.push(&device_code(now_ms()));
        }
        codes
    }

    fn with_capacity(n: usize) -> Self {
        DeviceCodes {
            bytes: Vec::with_capacity(n * DEVICE_CODE_LEN),
        }
    }

    fn push(&mut self, code: &str) {
        // Every code has the same length, which is what makes indexing
        // by position possible.
        assert_eq!(code.len(), DEVICE_CODE_LEN, "device codes have one length");
        self.bytes.extend_from_slice(code.as_bytes());
    }

    pub fn len(&self) -> usize {
        self.bytes.len() / DEVICE_CODE_LEN
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The code at `index` (`index < len()`), as raw base64url bytes: they
    /// need no escaping in a form body.
    pub fn bytes(&self, index: usize) -> &[u8] {
        &self.bytes[index * DEVICE_CODE_LEN..(index + 1) * DEVICE_CODE_LEN]
    }

    /// The code at `index` as text.
    pub fn get(&self, index: usize) -> &str {
        // Only ASCII went in through `push`.
        std::str::from_utf8(self.bytes(index)).unwrap_or_default()
    }
}

/// The user code of the `index`-th seeded authorization: `index` written in
/// base 20 over linkd's alphabet, eight letters. Random codes would collide
/// now and then among a million (a birthday bound on 20^8); derived ones
/// are distinct for every index below 20^8.
pub fn user_code_for(index: u64) -> String {
    let base = USER_CODE_ALPHABET.len() as u64;
    let mut letters = [0u8; USER_CODE_LEN];
    let mut rest = index;
    for letter in letters.iter_mut().rev() {
        *letter = USER_CODE_ALPHABET[(rest % base) as usize];
        rest /= base;
    }
    letters.iter().map(|&b| char::from(b)).collect()
}

fn now() -> i64 {
    now_ms() / 1000
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Migrates the empty store at `database_url`, registers the bench client
/// and inserts `n` pending device authorizations. Returns their device
/// codes, in the order they were stored.
pub async fn seed(database_url: &str, n: usize) -> anyhow::Result<DeviceCodes> {
    let store = linkd::store::open(database_url)
        .await
        .context("opening the store to seed it")?;
    store.migrate().await.context("migrating the store")?;
    let now = now();
    store
        .insert_client(&Client {
            client_id: CLIENT_ID.into(),
            name: "linkd bench".into(),
            secret_hash: None,
            scopes: CLIENT_SCOPES.into(),
            device_flow_enabled: true,
            redirect_uris: String::new(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: now,
        })
        .await
        .context("registering the bench client")?;

    let mut codes = DeviceCodes::with_capacity(n);
    let mut batch = Vec::with_capacity(BATCH.min(n));
    for index in 0..n {
        let issued_ms = now_ms();
        let device_code = device_code(issued_ms);
        batch.push(DeviceAuthorization {
            id: sortable_id(issued_ms),
            device_code_hash: device_code_key(&device_code),
            user_code: user_code_for(index as u64),
            client_id: CLIENT_ID.into(),
            // Refreshable once redeemed (the links scenario refreshes).
            scope: "openid offline_access".into(),
            state: AuthorizationState::Pending,
            account_id: None,
            requested_ip: "127.0.0.1".into(),
            device_name: None,
            created_at: now,
            expires_at: now + LIFETIME_SECS,
            // No minimum gap between polls, so every poll is answered
            // authorization_pending and never slow_down (RFC 8628 §3.5).
            interval: 0,
            decided_at: None,
            user_agent: None,
        });
        codes.push(&device_code);
        if batch.len() == BATCH {
            insert(store.as_ref(), &batch).await?;
            batch.clear();
        }
    }
    insert(store.as_ref(), &batch).await?;
    // The store (and its pool) closes here, before the server opens the
    // same database.
    drop(store);
    Ok(codes)
}

/// `n` pending device authorizations asked for over HTTP, as devices ask
/// (RFC 8628 §3.1), `connections` at a time spread over `servers`;
/// returns their device codes. The servers write them as they would any
/// device's, through the group commit, and the polls that follow read
/// what that left behind (a write-ahead log not yet checkpointed, say).
pub async fn over_http(
    servers: &[std::net::SocketAddr],
    n: usize,
    connections: usize,
) -> anyhow::Result<DeviceCodes> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let remaining = std::sync::Arc::new(AtomicUsize::new(n));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..connections.max(1) {
        let url = format!(
            "http://{}/oauth/device_authorization",
            servers[w % servers.len()]
        );
        let remaining = std::sync::Arc::clone(&remaining);
        tasks.spawn(async move {
            let http = reqwest::Client::new();
            let mut codes = Vec::new();
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |r| r.checked_sub(1))
                .is_ok()
            {
                let answer: serde_json::Value = http
                    .post(&url)
                    .form(&[("client_id", CLIENT_ID), ("scope", "openid offline_access")])
                    .send()
                    .await?
                    .error_for_status()?
                    .json()
                    .await?;
                let code = answer["device_code"]
                    .as_str()
                    .context("no device_code in the answer")?;
                codes.push(code.to_string());
            }
            anyhow::Ok(codes)
        });
    }
    let mut all = DeviceCodes::with_capacity(n);
    while let Some(joined) = tasks.join_next().await {
        for code in joined.context("a seeding task panicked")?? {
            all.push(&code);
        }
    }
    Ok(all)
}

/// `n` people with an account each and a signed-in session; returns the
/// session cookies' values. Made through the store, as `linkd user add`
/// does, so the run does not pay for password hashing.
pub async fn seed_people(database_url: &str, n: usize) -> anyhow::Result<Vec<String>> {
    let store = linkd::store::open(database_url)
        .await
        .context("opening the store to seed people")?;
    let hashing = linkd::hashing::HashPool::new(1);
    let now = now();
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let account = linkd::accounts::sign_up(
            store.as_ref(),
            &hashing,
            &format!("person-{i}@example.com"),
            "a person's password, long enough",
            now,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("seeding a person: {e:?}"))?;
        sessions.push(
            linkd::accounts::start_session(store.as_ref(), &account.id, now, 86_400)
                .await
                .context("starting a person's session")?,
        );
    }
    drop(store);
    Ok(sessions)
}

/// Stores one batch in one transaction.
async fn insert(
    store: &dyn linkd::store::Store,
    batch: &[DeviceAuthorization],
) -> anyhow::Result<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let stored = store
        .insert_device_authorizations(batch)
        .await
        .context("inserting pending device authorizations")?;
    // Derived user codes and random 256-bit device codes cannot be taken
    // in a fresh store; if one was, the seeding is wrong, not unlucky.
    let taken = stored.iter().filter(|&&ok| !ok).count();
    if taken > 0 {
        anyhow::bail!("{taken} seeded device authorizations clashed with stored ones");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_distinct_and_parse_as_linkd_codes() {
        let n = 1_000_000u64;
        let mut seen = std::collections::HashSet::with_capacity(n as usize);
        for index in 0..n {
            assert!(seen.insert(user_code_for(index)), "index {index} repeats");
        }
        for index in [0, 1, 19, 20, 999_999, 20u64.pow(8) - 1] {
            let code = user_code_for(index);
            let parsed = linkd::codes::UserCode::parse(&code).expect("a valid user code");
            assert_eq!(parsed.as_str(), code);
        }
        assert_eq!(user_code_for(0), "BBBBBBBB");
        assert_eq!(user_code_for(21), "BBBBBBCC");
    }

    #[test]
    fn device_codes_come_back_by_position() {
        let codes = DeviceCodes::generate(3);
        assert_eq!(codes.len(), 3);
        assert_ne!(codes.get(0), codes.get(2));
        assert_eq!(codes.get(1).len(), DEVICE_CODE_LEN);
        assert!(DeviceCodes::default().is_empty());
    }
}
