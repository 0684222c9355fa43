//! The device authorization grant's domain (RFC 8628): starting an
//! authorization, the person's decision, and the device's polls that end in
//! tokens. Functions here take the store and never see HTTP.

mod group_commit;
mod poll_table;

pub use group_commit::Inserter;
pub use poll_table::{PollTracker, SLOW_DOWN_STEP_SECS};

use crate::codes::{CodeError, UserCode, device_code, device_code_key};
use crate::ctx::Ctx;
use crate::i18n::Lang;
use crate::store::{
    Account, Activity, ActivityKind, AuthorizationState, Client, DecisionRecord,
    DeviceAuthorization, Event, GrantRef, LinkedDevice, PolledAuthorization, RedeemOutcome,
    Redemption, StoreError,
};
use crate::tokens::issue::{Grant, TokenSet, mint};
use crate::{link_notice, scopes};

/// Longest `device_name` kept; longer names are cut.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;

/// What the device is given (RFC 8628 §3.2).
#[derive(Debug)]
pub struct IssuedCodes {
    pub device_code: String,
    pub user_code: UserCode,
    pub expires_in: i64,
    pub interval: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    InvalidScope(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides the scope of a request: the client's whole allowance when none
/// is asked for (RFC 6749 §3.3 lets the server pick a default), else exactly
/// what was asked, which must be known and allowed to the client.
pub fn resolve_scope(client: &Client, requested: Option<&str>) -> Result<String, String> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let tokens = scopes::parse(requested).ok_or("the scope parameter is malformed")?;
    if tokens.is_empty() {
        return Ok(client.scopes.clone());
    }
    for token in &tokens {
        if !scopes::is_known(token) || !client.allows_scope(token) {
            return Err(format!("this app may not ask for the scope {token:?}"));
        }
    }
    Ok(tokens.join(" "))
}

/// A label for a device the person will recognise: the name the device
/// gave (or the person typed), without invisible or reordering characters
/// and cut to length (`text::visible_name`).
pub fn clean_device_name(name: Option<&str>) -> Option<String> {
    crate::text::visible_name(name?, MAX_DEVICE_NAME_CHARS)
}

/// Longest `User-Agent` kept; longer ones are cut.
const MAX_USER_AGENT_CHARS: usize = 200;

/// A device's `User-Agent` as the confirmation page shows it: visible
/// characters only, cut to length. It is what the device says, not a
/// proof of anything; the page says so.
pub fn clean_user_agent(user_agent: Option<&str>) -> Option<String> {
    crate::text::visible_name(user_agent?, MAX_USER_AGENT_CHARS)
}

/// What a device sends when it asks for a code (RFC 8628 §3.1), and from
/// where.
pub struct DeviceRequest<'a> {
    pub scope: Option<&'a str>,
    /// A label the device gives itself (linkd's `device_name` parameter).
    pub device_name: Option<&'a str>,
    /// The device's `User-Agent` header, shown to the person as what the
    /// device reported itself as.
    pub user_agent: Option<&'a str>,
    pub ip: &'a str,
}

/// Starts a device authorization (RFC 8628 §3.1-3.2).
pub async fn start(
    ctx: &Ctx<'_>,
    inserter: &Inserter,
    client: &Client,
    request: DeviceRequest<'_>,
) -> Result<IssuedCodes, StartError> {
    let (config, now) = (ctx.config, ctx.now);
    let scope = resolve_scope(client, request.scope).map_err(StartError::InvalidScope)?;
    let device_code = device_code(ctx.now_ms);
    // The window the person has to approve in, told to the device as
    // `expires_in` and stored as the code's deadline; an approved code is
    // redeemable a little longer (`REDEEM_GRACE_SECS`).
    let expires_in = i64::from(config.approval_window());
    let interval = i64::from(config.poll_interval);
    let mut auth = DeviceAuthorization {
        // The id and the code carry the same time.
        id: crate::codes::sortable_id(ctx.now_ms),
        device_code_hash: device_code_key(&device_code),
        user_code: String::new(),
        client_id: client.client_id.clone(),
        scope,
        state: AuthorizationState::Pending,
        account_id: None,
        requested_ip: request.ip.to_string(),
        device_name: clean_device_name(request.device_name),
        user_agent: clean_user_agent(request.user_agent),
        created_at: now,
        expires_at: now + expires_in,
        interval,
        decided_at: None,
    };
    // 20^8 codes: a collision with a stored code is rare; try again on one.
    for _ in 0..8 {
        let user_code = UserCode::generate(&mut rand::thread_rng());
        auth.user_code = user_code.as_str().to_string();
        if inserter.insert(auth.clone()).await? {
            return Ok(IssuedCodes {
                device_code,
                user_code,
                expires_in,
                interval,
            });
        }
    }
    Err(StoreError::Unavailable("could not find a free user code".into()).into())
}

/// An approved code stays redeemable this long past its deadline (or two
/// poll intervals, if longer): a person who approves in the window's last
/// seconds still reaches a device whose next poll comes after it (RFC
/// 8628 §3.5: the device waits `interval` seconds between polls).
pub const REDEEM_GRACE_SECS: i64 = 60;

/// When an authorization stops being usable: a pending or denied one at
/// its deadline, an approved one after the redemption grace.
fn usable_until(state: AuthorizationState, expires_at: i64, interval: i64) -> i64 {
    match state {
        AuthorizationState::Approved => {
            expires_at.saturating_add(REDEEM_GRACE_SECS.max(interval.saturating_mul(2)))
        }
        _ => expires_at,
    }
}

/// How a poll of the token endpoint ends (RFC 8628 §3.5).
#[derive(Debug)]
pub enum PollOutcome {
    Tokens(Box<TokenSet>),
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// Unknown device code, one issued to another client, or one already
    /// redeemed.
    InvalidGrant(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// One poll of the token endpoint, given what the caller read of the
/// authorization its device code names (`None`: no such code). A pending
/// code costs no store access at all beyond the caller's read, and no
/// write.
/// `dpop_jkt`: the thumbprint of the key the poll's DPoP proof was signed
/// with (RFC 9449), which the device and its tokens are bound to if this
/// poll redeems the code.
pub async fn poll(
    ctx: &Ctx<'_>,
    polls: &PollTracker,
    client: &Client,
    polled: Option<PolledAuthorization>,
    dpop_jkt: Option<&str>,
) -> Result<PollOutcome, PollError> {
    let (now, now_ms) = (ctx.now, ctx.now_ms);
    let Some(auth) = polled else {
        return Ok(PollOutcome::InvalidGrant("the device code is not known"));
    };
    // RFC 6749 §5.2: a grant issued to another client is invalid_grant.
    if auth.client_id != client.client_id {
        return Ok(PollOutcome::InvalidGrant("the device code is not known"));
    }
    if auth.state == AuthorizationState::Redeemed {
        return Ok(PollOutcome::InvalidGrant(
            "the device code has already been used",
        ));
    }
    if usable_until(auth.state, auth.expires_at, auth.interval) <= now {
        // Counted once: the first poll after the deadline.
        if polls.forget(&auth.id) {
            crate::telemetry::authorization("expired");
        }
        return Ok(PollOutcome::Expired);
    }
    match auth.state {
        AuthorizationState::Pending => Ok(match polls.check(&auth, now_ms) {
            Ok(()) => PollOutcome::Pending,
            Err(_) => PollOutcome::SlowDown,
        }),
        AuthorizationState::Denied => {
            polls.forget(&auth.id);
            Ok(PollOutcome::Denied)
        }
        AuthorizationState::Redeemed => Ok(PollOutcome::InvalidGrant(
            "the device code has already been used",
        )),
        AuthorizationState::Approved => redeem(ctx, polls, client, &auth, dpop_jkt).await,
    }
}

/// Redeems an approved code. The store decides on the row it redeems, not
/// on the poll's read (which may come from an older snapshot, see the
/// `Store` trait's read consistency), and reports what it found instead
/// when that row is no longer approved.
async fn redeem(
    ctx: &Ctx<'_>,
    polls: &PollTracker,
    client: &Client,
    polled: &PolledAuthorization,
    dpop_jkt: Option<&str>,
) -> Result<PollOutcome, PollError> {
    let (store, now) = (ctx.store, ctx.now);
    let id = polled.id.as_str();
    let grace = usable_until(AuthorizationState::Approved, 0, polled.interval);
    let mut minted = None;
    let mut failed = None;
    let outcome = store
        .redeem_device_authorization(id, now.saturating_sub(grace), &mut |auth, account| {
            let account = account.filter(|a| !a.disabled)?;
            match redemption(ctx, client, auth, account, dpop_jkt) {
                Ok((redemption, tokens)) => {
                    minted = Some(tokens);
                    Some(redemption)
                }
                Err(e) => {
                    failed = Some(e);
                    None
                }
            }
        })
        .await?;
    match outcome {
        RedeemOutcome::Redeemed => {
            polls.forget(id);
            ctx.outbox.wake();
            crate::telemetry::authorization("redeemed");
            // Set whenever the store redeemed: it wrote what `redemption`
            // made along with these tokens.
            match minted {
                Some(tokens) => Ok(PollOutcome::Tokens(Box::new(tokens))),
                None => Err(PollError::Store(StoreError::Corrupt(
                    "redeemed without tokens".into(),
                ))),
            }
        }
        RedeemOutcome::Declined => match failed {
            Some(e) => Err(PollError::Signing(e)),
            None => Ok(PollOutcome::InvalidGrant(
                "the approving account no longer exists",
            )),
        },
        RedeemOutcome::NotRedeemable(found) => Ok(match found {
            // Purged in the meantime: as for any code no longer known.
            None => PollOutcome::InvalidGrant("the device code is not known"),
            Some((AuthorizationState::Redeemed, _)) => {
                // Another poll redeemed it between our read and our update.
                PollOutcome::InvalidGrant("the device code has already been used")
            }
            Some((state, expires_at))
                if usable_until(state, expires_at, polled.interval) <= now =>
            {
                if polls.forget(id) {
                    crate::telemetry::authorization("expired");
                }
                PollOutcome::Expired
            }
            Some((AuthorizationState::Denied, _)) => {
                polls.forget(id);
                PollOutcome::Denied
            }
            // The poll's read was newer than any state the writer can
            // see but this one; the next poll tries again.
            Some((AuthorizationState::Pending | AuthorizationState::Approved, _)) => {
                PollOutcome::Pending
            }
        }),
    }
}

/// What redeeming `auth` writes (the linked device and its first refresh
/// token) and the tokens it hands out, signed before the state change
/// commits so that a signing failure cannot leave a redeemed code whose
/// tokens were never handed out. `None` (no account, or a disabled one)
/// declines.
fn redemption(
    ctx: &Ctx<'_>,
    client: &Client,
    auth: &DeviceAuthorization,
    account: &Account,
    dpop_jkt: Option<&str>,
) -> Result<(Redemption, TokenSet), jsonwebtoken::errors::Error> {
    let (config, now) = (ctx.config, ctx.now);
    // Fixed at approval: the notice's "This wasn't me" link names it.
    let id = link_notice::device_id(GrantRef::DeviceAuthorization(&auth.id));
    let refresh = (client.refresh_enabled && scopes::contains(&auth.scope, "offline_access"))
        .then(|| crate::tokens::refresh::first_token(&id, config, now));
    let device = LinkedDevice {
        id,
        account_id: account.id.clone(),
        client_id: client.client_id.clone(),
        app_name: client.name.clone(),
        label: auth
            .device_name
            .clone()
            .unwrap_or_else(|| client.name.clone()),
        scope: auth.scope.clone(),
        linked_at: now,
        linked_ip: auth.requested_ip.clone(),
        last_refresh_at: None,
        revoked_at: None,
        dpop_jkt: dpop_jkt.map(str::to_string),
        kind: crate::store::DeviceKind::Code,
        refresh: refresh.as_ref().map(|(_, state)| state.clone()),
    };
    let grant = Grant {
        account,
        device: &device,
        scope: &auth.scope,
        auth_time: auth.decided_at.unwrap_or(now),
        nonce: None,
        dpop_jkt,
    };
    let tokens = mint(
        &ctx.keys,
        ctx.config,
        now,
        &grant,
        refresh.map(|(token, _)| token),
    )?;
    Ok((
        Redemption {
            outbox: vec![crate::webhooks::Event::device_linked(&device, now).to_outbox()],
            device,
        },
        tokens,
    ))
}

/// Why a code a person typed cannot be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("malformed code: {0}")]
    Malformed(#[from] CodeError),
    #[error("no such code")]
    NotFound,
    #[error("the code has expired")]
    Expired,
    #[error("the code has already been used")]
    AlreadyUsed,
    /// Older than the server's maximum approval age: more likely a lure
    /// than a device in front of the person.
    #[error("the code is too old to approve")]
    TooOld,
    /// The operator turned the device flow off for this app.
    #[error("this app may not link devices")]
    AppDisabled,
    /// The app requires the approving browser on the device's network,
    /// and this one is elsewhere.
    #[error("approval must come from the device's network")]
    OtherNetwork,
    /// Reports blocked the network the code was requested from ("I
    /// didn't start this"): its codes are refused until the block ends.
    #[error("the code's network is blocked")]
    NetworkBlocked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pending authorization the person may approve, with its app.
pub struct PendingAuthorization {
    pub auth: DeviceAuthorization,
    pub client: Client,
    pub user_code: UserCode,
}

/// Finds the pending authorization behind a code a person typed, if it
/// may still be approved: not expired, not older than the maximum
/// approval age, and its app still allowed to link devices.
pub async fn find_pending(ctx: &Ctx<'_>, input: &str) -> Result<PendingAuthorization, LookupError> {
    let (store, now) = (ctx.store, ctx.now);
    let max_age = i64::from(ctx.config.max_approval_age);
    let user_code = UserCode::parse(input)?;
    let auth = store
        .get_device_authorization_by_user_code(user_code.as_str())
        .await?
        .ok_or(LookupError::NotFound)?;
    // A code from a blocked network is refused even if it was made after
    // the block denied the network's codes (on another instance before it
    // re-read the blocks), and a report that lost its code to the block
    // is told why rather than that the code was used. Read from the store,
    // not the instance's copy: one small read per page, not per poll.
    if matches!(
        auth.state,
        AuthorizationState::Pending | AuthorizationState::Denied
    ) && let Ok(device) = auth.requested_ip.parse()
        && store
            .network_blocked_until(&crate::phishing::requesting_network(device), now)
            .await?
            .is_some()
    {
        return Err(LookupError::NetworkBlocked);
    }
    if auth.state != AuthorizationState::Pending {
        return Err(LookupError::AlreadyUsed);
    }
    if auth.expires_at <= now {
        return Err(LookupError::Expired);
    }
    if now - auth.created_at > max_age {
        return Err(LookupError::TooOld);
    }
    let client = store
        .get_client(&auth.client_id)
        .await?
        .ok_or(LookupError::NotFound)?;
    if !client.device_flow_enabled {
        return Err(LookupError::AppDisabled);
    }
    Ok(PendingAuthorization {
        auth,
        client,
        user_code,
    })
}

/// What a person decided about a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
    /// A decoy picked for a code that came in a link (number matching):
    /// the person does not see the device's code, so it is denied.
    WrongPick,
    /// "I didn't start this": denied, and reported.
    Report,
}

impl Decision {
    pub fn approves(self) -> bool {
        self == Decision::Approve
    }

    fn activity(self) -> ActivityKind {
        match self {
            Decision::Approve => ActivityKind::Linked,
            Decision::Deny => ActivityKind::Denied,
            Decision::WrongPick => ActivityKind::WrongCode,
            Decision::Report => ActivityKind::Reported,
        }
    }
}

/// Records the person's decision, and notes it in their activity; an
/// approval is followed by the "a new device was linked" notice, written
/// with it (`link_notice`). Exactly one decision wins; a second one, or
/// one after the deadline, finds the code no longer pending.
pub async fn decide(
    ctx: &Ctx<'_>,
    input: &str,
    approve: bool,
    account: &Account,
    lang: Lang,
    ip: &str,
) -> Result<PendingAuthorization, LookupError> {
    let decision = if approve {
        Decision::Approve
    } else {
        Decision::Deny
    };
    decide_as(ctx, input, decision, account, lang, ip).await
}

/// [`decide`], for any [`Decision`]. An approval from outside the
/// device's network is refused when the app requires the same network.
pub async fn decide_as(
    ctx: &Ctx<'_>,
    input: &str,
    decision: Decision,
    account: &Account,
    lang: Lang,
    ip: &str,
) -> Result<PendingAuthorization, LookupError> {
    let (store, now) = (ctx.store, ctx.now);
    let approve = decision.approves();
    let pending = find_pending(ctx, input).await?;
    if approve
        && let Ok(browser) = ip.parse::<std::net::IpAddr>()
        && !crate::phishing::Proximity::of(&pending.client, &pending.auth.requested_ip, browser)
            .allows_approval()
    {
        return Err(LookupError::OtherNetwork);
    }
    let record = if approve {
        link_notice::approval_record(
            ctx,
            &link_notice::Approval {
                account,
                lang,
                client_id: &pending.client.client_id,
                app: &pending.client.name,
                device_name: pending.auth.device_name.as_deref(),
                requested_from: &pending.auth.requested_ip,
                approved_from: ip,
                grant: GrantRef::DeviceAuthorization(&pending.auth.id),
            },
        )
    } else {
        DecisionRecord {
            activity: Activity {
                account_id: account.id.clone(),
                kind: decision.activity(),
                client_id: pending.client.client_id.clone(),
                app_name: pending.client.name.clone(),
                // A report names where the code was asked for from: the
                // network the person said was not theirs.
                device: if decision == Decision::Report {
                    Some(pending.auth.requested_ip.clone())
                } else {
                    pending.auth.device_name.clone()
                },
                ip: ip.to_string(),
                at: now,
            },
            link: None,
            outbox: Vec::new(),
        }
    };
    let decided = if decision == Decision::Report {
        crate::phishing::report(ctx, &pending, account, ip, record).await?
    } else {
        let decided = store
            .decide_device_authorization_recorded(
                &pending.auth.id,
                approve,
                &account.id,
                now,
                &record,
            )
            .await?;
        if decided && !record.outbox.is_empty() {
            ctx.outbox.wake();
        }
        decided
    };
    if decided {
        crate::telemetry::authorization(if approve { "approved" } else { "denied" });
        // The decision is committed. Events only wake waiters up, so a lost
        // one delays the device to its next poll and must not turn the
        // person's success into an error page.
        if let Err(e) = store
            .publish(Event::Decided {
                authorization_id: pending.auth.id.clone(),
            })
            .await
        {
            tracing::warn!(error = %e, "could not publish a decision");
        }
        Ok(pending)
    } else {
        // Lost a race with another decision or the deadline; say which.
        match find_pending(ctx, input).await {
            Err(e) => Err(e),
            Ok(_) => Err(LookupError::AlreadyUsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::Config;
    use crate::store::Store;
    use crate::tokens::Keys;

    fn test_keys() -> Arc<Keys> {
        let key = crate::tokens::generate_signing_key(0).unwrap();
        Arc::new(Keys::from_stored(&[key], 0, 3600).unwrap())
    }

    /// A poll of a code whose read said approved, at `now_ms`, by the
    /// fixtures' app.
    async fn poll_approved(
        store: &dyn Store,
        polls: &PollTracker,
        keys: &Arc<Keys>,
        id: &str,
        now_ms: i64,
    ) -> Result<PollOutcome, PollError> {
        let config = Config::defaults();
        let limits = crate::limits::Limits::new(&config);
        let outbox = crate::outbox::Outbox::new(Vec::new());
        let brand = crate::brand::Brand::from_config(&config).unwrap().0;
        let ctx = Ctx {
            store,
            keys: keys.clone(),
            config: &config,
            brand: &brand,
            limits: &limits,
            outbox: &outbox,
            now: now_ms.div_euclid(1000),
            now_ms,
        };
        let polled = PolledAuthorization {
            state: AuthorizationState::Approved,
            ..crate::store::sqlite::fixtures::polled(id, 5)
        };
        let client = crate::store::sqlite::fixtures::client("openid");
        poll(&ctx, polls, &client, Some(polled), None).await
    }

    /// A poll's read saw the approval, but the row the store would redeem
    /// says otherwise (the SQLite store's readers keep a snapshot up to
    /// 2 ms): that row decides, and the store reports what it found.
    #[tokio::test]
    async fn the_row_to_redeem_decides_the_state() {
        use crate::store::sqlite::fixtures::{authorization, insert_account, store_with_client};
        let (_dir, store) = store_with_client().await;
        let (keys, polls) = (test_keys(), PollTracker::new(0));
        let poll_at = |id: &'static str, now_ms| poll_approved(&store, &polls, &keys, id, now_ms);
        // Pending in the store, approved in what the poll read.
        store
            .insert_device_authorization(&authorization(0))
            .await
            .unwrap();
        let outcome = poll_at("id-0", 1_000).await.unwrap();
        assert!(matches!(outcome, PollOutcome::Pending), "{outcome:?}");
        // Gone by the redeem: as for any code no longer known.
        let outcome = poll_at("id-none", 1_000).await.unwrap();
        assert!(
            matches!(
                outcome,
                PollOutcome::InvalidGrant("the device code is not known")
            ),
            "{outcome:?}"
        );
        // Denied in the store.
        store
            .insert_device_authorization(&authorization(1))
            .await
            .unwrap();
        insert_account(&store).await;
        assert!(
            store
                .decide_device_authorization("id-1", false, "acct", 1)
                .await
                .unwrap()
        );
        let outcome = poll_at("id-1", 1_000).await.unwrap();
        assert!(matches!(outcome, PollOutcome::Denied), "{outcome:?}");
        // Approved: the first redeem wins, the next finds it used.
        store
            .insert_device_authorization(&authorization(2))
            .await
            .unwrap();
        assert!(
            store
                .decide_device_authorization("id-2", true, "acct", 1)
                .await
                .unwrap()
        );
        let outcome = poll_at("id-2", 2_000).await.unwrap();
        assert!(matches!(outcome, PollOutcome::Tokens(_)), "{outcome:?}");
        let outcome = poll_at("id-2", 2_000).await.unwrap();
        assert!(
            matches!(
                outcome,
                PollOutcome::InvalidGrant("the device code has already been used")
            ),
            "{outcome:?}"
        );
    }

    /// A declined redeem (the approving account was disabled after it
    /// approved) changes nothing: the code stays approved, and redeems
    /// once the account is back.
    #[tokio::test]
    async fn a_declined_redeem_leaves_the_code_approved() {
        use crate::store::sqlite::fixtures::{authorization, insert_account, store_with_client};
        let (_dir, store) = store_with_client().await;
        let (keys, polls) = (test_keys(), PollTracker::new(0));
        insert_account(&store).await;
        store
            .insert_device_authorization(&authorization(0))
            .await
            .unwrap();
        assert!(
            store
                .decide_device_authorization("id-0", true, "acct", 1)
                .await
                .unwrap()
        );
        store.set_account_disabled("acct", true).await.unwrap();
        let poll_now = || poll_approved(&store, &polls, &keys, "id-0", 2_000);
        let outcome = poll_now().await.unwrap();
        assert!(
            matches!(
                outcome,
                PollOutcome::InvalidGrant("the approving account no longer exists")
            ),
            "{outcome:?}"
        );
        let row = store
            .get_device_authorization_by_code_hash("hash-0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.state, AuthorizationState::Approved);
        assert!(store.list_linked_devices("acct").await.unwrap().is_empty());
        store.set_account_disabled("acct", false).await.unwrap();
        let outcome = poll_now().await.unwrap();
        assert!(matches!(outcome, PollOutcome::Tokens(_)), "{outcome:?}");
        assert_eq!(store.list_linked_devices("acct").await.unwrap().len(), 1);
    }

    #[test]
    fn device_names_are_cleaned() {
        assert_eq!(
            clean_device_name(Some("  Living room TV\n")).as_deref(),
            Some("Living room TV")
        );
        assert_eq!(clean_device_name(Some("\u{0}\u{7}")), None);
        assert_eq!(
            clean_device_name(Some(&"x".repeat(100))).unwrap().len(),
            MAX_DEVICE_NAME_CHARS
        );
    }
}
