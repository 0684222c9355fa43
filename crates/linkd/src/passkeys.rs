//! Passkeys: WebAuthn credentials a signed-in person adds on the account
//! page and signs in with on the sign-in page. The relying-party checks
//! (challenge, origin, RP id hash, flags, signature, COSE keys) are the
//! `webauthn_rp` crate's; this module keeps each ceremony's state in the
//! store, bound to the browser that asked, and the credentials with their
//! accounts.
//!
//! The relying party is the server's public URL: its host is the RP id
//! and its origin the only one accepted. WebAuthn §5.1.3 asks for a
//! domain as RP id, so a server reached at a bare IP address offers no
//! passkeys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rp::bin::{Decode, Encode};
use webauthn_rp::request::auth::AuthenticationVerificationOptions;
use webauthn_rp::request::register::{
    CredProtect, Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
    UserHandle16, Username,
};
use webauthn_rp::request::{
    AsciiDomain, ExtensionInfo, PublicKeyCredentialDescriptor, RpId, TimedCeremony,
};
use webauthn_rp::response::register::{DynamicState, StaticState};
use webauthn_rp::response::{AuthTransports, Backup, CredentialId};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthentication16, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions, Registration,
    RegistrationServerState,
};

use crate::codes::secret_hash;
use crate::limits::{Limits, Refused, RetryAfter};
use crate::store::{
    Account, Activity, ActivityKind, Passkey, PasskeyChallenge, Store, StoreError, Timestamp,
};

/// How long a ceremony's challenge is accepted: the crate's default
/// timeout, which the browser is told (WebAuthn §5.4 `timeout`).
pub const CEREMONY_SECS: i64 = 300;
/// The longest name a person may give a passkey.
pub const MAX_NAME_CHARS: usize = 64;
/// The most passkeys one account keeps.
pub const MAX_PER_ACCOUNT: usize = 20;
/// Larger answers are not a browser's: an attestation with an RSA key and
/// its certificates stays well under this.
const MAX_RESPONSE_BYTES: usize = 16 * 1024;

const REGISTER: &str = "register";
const SIGN_IN: &str = "sign_in";

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    /// The server is reached at an IP address or its URL has no host:
    /// WebAuthn needs a domain.
    #[error("passkeys need the server's public URL to name a domain")]
    Unavailable,
    /// Not a WebAuthn answer (bad JSON, wrong fields, too large).
    #[error("that is not a passkey's answer")]
    Malformed,
    /// No ceremony with that challenge from this browser: never sent,
    /// used already, expired, or sent to another browser.
    #[error("that passkey request expired or was used already")]
    UnknownChallenge,
    /// No account has that passkey (or it was removed).
    #[error("that passkey is not known here")]
    UnknownPasskey,
    /// The crate's checks refused the answer (origin, signature, flags…).
    #[error("the passkey's answer did not check out: {0}")]
    Rejected(String),
    /// The passkey is stored already (on this account or another).
    #[error("that passkey is added already")]
    Exists,
    #[error("an account keeps at most {MAX_PER_ACCOUNT} passkeys")]
    TooMany,
    /// The sign-in limits refused: try again after this long.
    #[error("too many sign-in attempts")]
    Limited(RetryAfter),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The relying party this server is: its RP id and its one origin.
pub struct RelyingParty {
    rp_id: RpId,
    origin: String,
}

impl RelyingParty {
    /// From the public URL (the issuer), or None when its host is not a
    /// domain.
    pub fn from_issuer(issuer: &str) -> Option<RelyingParty> {
        let url = url::Url::parse(issuer).ok()?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return None;
        };
        let rp_id = RpId::Domain(AsciiDomain::try_from(host.to_ascii_lowercase()).ok()?);
        // WebAuthn §13.4.9: the origin in the client data must be the
        // page's, scheme, host and port (RFC 6454 §4).
        let origin = url.origin().ascii_serialization();
        Some(RelyingParty { rp_id, origin })
    }
}

/// The binding of a ceremony to the browser that asked: the hash of its
/// session's or anonymous form's token, which only that browser sends.
pub fn binding(form_token: &str) -> String {
    secret_hash(&format!("passkey:{form_token}"))
}

fn challenge_key(challenge: u128) -> String {
    format!("{challenge:032x}")
}

fn encode_state<T: Encode>(state: &T) -> Result<String, PasskeyError>
where
    for<'a> T::Output<'a>: AsRef<[u8]>,
{
    state
        .encode()
        .map(|bytes| URL_SAFE_NO_PAD.encode(bytes.as_ref()))
        .map_err(|_| PasskeyError::Store(StoreError::Corrupt("passkey ceremony state".into())))
}

/// Takes the ceremony an answer names by its challenge, once, for the
/// browser that asked; None when the answer names none.
async fn take_ceremony(
    store: &dyn Store,
    challenge: Option<webauthn_rp::response::SentChallenge>,
    purpose: &str,
    binding: &str,
    now: Timestamp,
) -> Result<PasskeyChallenge, PasskeyError> {
    let challenge = challenge.ok_or(PasskeyError::Malformed)?;
    store
        .take_passkey_challenge(&challenge_key(challenge.0), purpose, binding, now)
        .await?
        .ok_or(PasskeyError::UnknownChallenge)
}

fn corrupt(what: &str) -> PasskeyError {
    PasskeyError::Store(StoreError::Corrupt(format!("passkey {what}")))
}

/// The account's user handle: the one its passkeys carry, or a new random
/// one for its first (WebAuthn §14.6.1: no personal data in it).
fn user_handle(existing: &[Passkey]) -> Result<UserHandle16, PasskeyError> {
    match existing.first() {
        Some(p) => {
            let bytes = URL_SAFE_NO_PAD
                .decode(&p.user_handle)
                .map_err(|_| corrupt("user handle"))?;
            let bytes: [u8; 16] = bytes.try_into().map_err(|_| corrupt("user handle"))?;
            UserHandle16::decode(bytes).map_err(|_| corrupt("user handle"))
        }
        None => Ok(UserHandle16::new()),
    }
}

/// Starts adding a passkey to `account`: the options for
/// `navigator.credentials.create()` (PublicKeyCredentialCreationOptionsJSON,
/// WebAuthn §5.1.3), its challenge stored for this browser.
pub async fn registration_options(
    store: &dyn Store,
    rp: &RelyingParty,
    account: &Account,
    binding: &str,
    now: Timestamp,
) -> Result<String, PasskeyError> {
    let existing = store.list_passkeys(&account.id).await?;
    if existing.len() >= MAX_PER_ACCOUNT {
        return Err(PasskeyError::TooMany);
    }
    let handle = user_handle(&existing)?;
    let name = Username::try_from(account.email.as_str()).map_err(|_| PasskeyError::Malformed)?;
    let display = Nickname::try_from(account.email.as_str()).ok();
    // WebAuthn §5.4.3 excludeCredentials: the authenticator refuses to
    // make a second passkey for this account.
    let mut exclude = Vec::with_capacity(existing.len());
    for p in &existing {
        let id = URL_SAFE_NO_PAD
            .decode(&p.id)
            .map_err(|_| corrupt("credential id"))?;
        exclude.push(PublicKeyCredentialDescriptor {
            id: CredentialId::decode(id).map_err(|_| corrupt("credential id"))?,
            // No transports kept: the browser tries every one it has.
            transports: AuthTransports::decode(0).map_err(|_| corrupt("transports"))?,
        });
    }
    let user = PublicKeyCredentialUserEntity {
        name,
        id: &handle,
        display_name: display,
    };
    let mut creation = PublicKeyCredentialCreationOptions::passkey(&rp.rp_id, user, exclude);
    // CTAP 2.1 §12.1 credProtect: asked for, not enforced. Enforcing makes
    // the browser refuse every authenticator without the extension (many
    // platform ones); user verification is required anyway.
    creation.extensions.cred_protect =
        CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) = creation
        .start_ceremony()
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let options = serde_json::to_string(&client).map_err(|_| PasskeyError::Malformed)?;
    store
        .insert_passkey_challenge(&PasskeyChallenge {
            challenge: challenge_key(server.sent_challenge().0),
            purpose: REGISTER.into(),
            binding: binding.into(),
            account_id: Some(account.id.clone()),
            state: encode_state(&server)?,
            expires_at: now + CEREMONY_SECS,
        })
        .await?;
    Ok(options)
}

/// What a browser sends to add a passkey, and from where.
#[derive(Debug, Clone, Copy)]
pub struct NewPasskey<'a> {
    /// RegistrationResponseJSON.
    pub response: &'a str,
    /// The name the person gave it.
    pub name: &'a str,
    pub ip: &'a str,
}

/// Finishes adding a passkey: `response` is the browser's
/// RegistrationResponseJSON (WebAuthn §5.1 `toJSON()`), checked against
/// the ceremony this browser started for this account (WebAuthn §7.1).
pub async fn register(
    store: &dyn Store,
    rp: &RelyingParty,
    account: &Account,
    binding: &str,
    answer: &NewPasskey<'_>,
    now: Timestamp,
) -> Result<Passkey, PasskeyError> {
    let NewPasskey { response, name, ip } = *answer;
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(PasskeyError::Malformed);
    }
    let registration = Registration::from_json_relaxed(response.as_bytes())
        .map_err(|_| PasskeyError::Malformed)?;
    let challenge = registration.challenge_relaxed();
    let taken = take_ceremony(store, challenge.ok(), REGISTER, binding, now).await?;
    if taken.account_id.as_deref() != Some(account.id.as_str()) {
        return Err(PasskeyError::UnknownChallenge);
    }
    let state = URL_SAFE_NO_PAD
        .decode(&taken.state)
        .map_err(|_| corrupt("ceremony state"))?;
    let server = RegistrationServerState::<16>::decode(state.as_slice())
        .map_err(|_| corrupt("ceremony state"))?;
    let origins = [rp.origin.clone()];
    let options = RegistrationVerificationOptions::<String, String> {
        allowed_origins: &origins,
        ..RegistrationVerificationOptions::default()
    };
    let credential = server
        .verify(&rp.rp_id, &registration, &options)
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let (id, _transports, handle, static_state, dynamic_state, _metadata) = credential.into_parts();
    let name = clean_name(name);
    let passkey = Passkey {
        id: URL_SAFE_NO_PAD.encode(id.as_ref()),
        account_id: account.id.clone(),
        user_handle: URL_SAFE_NO_PAD.encode(handle.as_ref()),
        name: name.clone(),
        static_state: URL_SAFE_NO_PAD
            .encode(static_state.encode().map_err(|_| corrupt("public key"))?),
        dynamic_state: URL_SAFE_NO_PAD
            .encode(dynamic_state.encode().map_err(|_| corrupt("counter"))?),
        sign_count: i64::from(dynamic_state.sign_count),
        backed_up: matches!(dynamic_state.backup, Backup::Exists),
        created_at: now,
        last_used_at: None,
    };
    let activity = Activity {
        account_id: account.id.clone(),
        kind: ActivityKind::PasskeyAdded,
        client_id: String::new(),
        app_name: name,
        device: None,
        ip: ip.into(),
        at: now,
    };
    match store.insert_passkey(&passkey, &activity).await {
        Ok(()) => Ok(passkey),
        Err(StoreError::Conflict) => Err(PasskeyError::Exists),
        Err(e) => Err(e.into()),
    }
}

/// A passkey's name as kept: visible characters, at most
/// [`MAX_NAME_CHARS`]; "Passkey" when nothing is left.
pub fn clean_name(name: &str) -> String {
    crate::text::visible_name(name, MAX_NAME_CHARS).unwrap_or_else(|| "Passkey".into())
}

/// Starts a sign-in: the options for `navigator.credentials.get()`
/// (PublicKeyCredentialRequestOptionsJSON) with no allowCredentials, so
/// the browser offers every passkey it has for this site (discoverable
/// credentials, WebAuthn §6.2.2), its challenge stored for this browser.
pub async fn sign_in_options(
    store: &dyn Store,
    rp: &RelyingParty,
    binding: &str,
    now: Timestamp,
) -> Result<String, PasskeyError> {
    let (server, client) = DiscoverableCredentialRequestOptions::passkey(&rp.rp_id)
        .start_ceremony()
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let options = serde_json::to_string(&client).map_err(|_| PasskeyError::Malformed)?;
    store
        .insert_passkey_challenge(&PasskeyChallenge {
            challenge: challenge_key(server.sent_challenge().0),
            purpose: SIGN_IN.into(),
            binding: binding.into(),
            account_id: None,
            state: encode_state(&server)?,
            expires_at: now + CEREMONY_SECS,
        })
        .await?;
    Ok(options)
}

/// Finishes a sign-in: `response` is the browser's
/// AuthenticationResponseJSON, checked against the ceremony this browser
/// started (WebAuthn §7.2). The account's sign-in limits are taken before
/// the signature is checked, as for a password; a disabled account gets
/// the answer an unknown passkey gets.
pub async fn sign_in(
    store: &dyn Store,
    limits: &Limits,
    rp: &RelyingParty,
    binding: &str,
    response: &str,
    ip: std::net::IpAddr,
    now: Timestamp,
) -> Result<(Account, Passkey), PasskeyError> {
    if response.len() > MAX_RESPONSE_BYTES {
        return Err(PasskeyError::Malformed);
    }
    let authentication = DiscoverableAuthentication16::from_json_relaxed(response.as_bytes())
        .map_err(|_| PasskeyError::Malformed)?;
    let challenge = authentication.challenge_relaxed();
    let taken = take_ceremony(store, challenge.ok(), SIGN_IN, binding, now).await?;
    let id = URL_SAFE_NO_PAD.encode(authentication.raw_id().as_ref());
    let handle = URL_SAFE_NO_PAD.encode(authentication.response().user_handle().as_ref());
    let stored = store.get_passkey(&id).await?;
    let account = match &stored {
        Some(p) => store.get_account(&p.account_id).await?,
        None => None,
    };
    // Counted under the account's address like a password attempt, or
    // under the unknown credential (which still counts for the network).
    let limit_key = match &account {
        Some(a) => a.email.clone(),
        None => format!("passkey:{id}"),
    };
    let attempt = match limits.begin_sign_in(&limit_key, ip, now).await {
        Ok(attempt) => attempt,
        Err(Refused::Wait(wait)) => return Err(PasskeyError::Limited(wait)),
        Err(Refused::Store(e)) => return Err(e.into()),
    };
    // WebAuthn §7.2 step 6: the user handle names the account the
    // credential belongs to.
    let (Some(mut passkey), Some(account)) = (stored, account) else {
        return Err(PasskeyError::UnknownPasskey);
    };
    if passkey.user_handle != handle || account.disabled {
        return Err(PasskeyError::UnknownPasskey);
    }
    let verified = verify_assertion(rp, &taken, &authentication, &passkey);
    let dynamic = match verified {
        Ok(dynamic) => dynamic,
        Err(e) => return Err(e),
    };
    let previous = passkey.sign_count;
    passkey.dynamic_state =
        URL_SAFE_NO_PAD.encode(dynamic.encode().map_err(|_| corrupt("counter"))?);
    passkey.sign_count = i64::from(dynamic.sign_count);
    passkey.backed_up = matches!(dynamic.backup, Backup::Exists);
    passkey.last_used_at = Some(now);
    let activity = Activity {
        account_id: account.id.clone(),
        kind: ActivityKind::PasskeySignIn,
        client_id: String::new(),
        app_name: passkey.name.clone(),
        device: None,
        ip: ip.to_string(),
        at: now,
    };
    match store.use_passkey(&passkey, previous, &activity).await {
        Ok(true) => {
            limits.sign_in_succeeded(attempt, now).await;
            Ok((account, passkey))
        }
        // Another sign-in moved the counter first, or the passkey was
        // removed meanwhile.
        Ok(false) => Err(PasskeyError::UnknownPasskey),
        Err(e) => {
            limits.sign_in_not_tried(attempt, now).await;
            Err(e.into())
        }
    }
}

/// The crate's checks of an assertion against the stored credential and
/// the ceremony's state; the credential's new counter and flags.
fn verify_assertion(
    rp: &RelyingParty,
    taken: &PasskeyChallenge,
    authentication: &DiscoverableAuthentication16,
    passkey: &Passkey,
) -> Result<DynamicState, PasskeyError> {
    // `passkey` was found by the answer's credential id, so that id is
    // the stored one.
    let state = URL_SAFE_NO_PAD
        .decode(&taken.state)
        .map_err(|_| corrupt("ceremony state"))?;
    let server = DiscoverableAuthenticationServerState::decode(state.as_slice())
        .map_err(|_| corrupt("ceremony state"))?;
    let handle = authentication.response().user_handle();
    let static_bytes = URL_SAFE_NO_PAD
        .decode(&passkey.static_state)
        .map_err(|_| corrupt("public key"))?;
    let static_state =
        StaticState::decode(static_bytes.as_slice()).map_err(|_| corrupt("public key"))?;
    let dynamic_bytes: [u8; 7] = URL_SAFE_NO_PAD
        .decode(&passkey.dynamic_state)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("counter"))?;
    let dynamic_state = DynamicState::decode(dynamic_bytes).map_err(|_| corrupt("counter"))?;
    let mut credential =
        AuthenticatedCredential::new(authentication.raw_id(), handle, static_state, dynamic_state)
            .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    let origins = [rp.origin.clone()];
    let options = AuthenticationVerificationOptions::<String, String> {
        allowed_origins: &origins,
        // A passkey made with user verification keeps asking for it
        // (the crate's credProtect level); keep the flag current.
        update_uv: true,
        ..AuthenticationVerificationOptions::default()
    };
    server
        .verify(&rp.rp_id, authentication, &mut credential, &options)
        .map_err(|e| PasskeyError::Rejected(e.to_string()))?;
    Ok(credential.dynamic_state())
}

/// Removes a passkey of `account_id` and records it; false when the
/// account has none by that id.
pub async fn remove(
    store: &dyn Store,
    account_id: &str,
    id: &str,
    ip: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let name = match store.get_passkey(id).await? {
        Some(p) if p.account_id == account_id => p.name,
        _ => return Ok(false),
    };
    store
        .remove_passkey(
            id,
            &Activity {
                account_id: account_id.into(),
                kind: ActivityKind::PasskeyRemoved,
                client_id: String::new(),
                app_name: name,
                device: None,
                ip: ip.into(),
                at: now,
            },
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_is_the_public_urls_domain() {
        let rp = RelyingParty::from_issuer("https://Link.Example.com:8443/base").unwrap();
        assert_eq!(rp.origin, "https://link.example.com:8443");
        assert!(matches!(&rp.rp_id, RpId::Domain(d) if d.as_ref() == "link.example.com"));
        assert_eq!(
            RelyingParty::from_issuer("http://localhost:3000")
                .unwrap()
                .origin,
            "http://localhost:3000"
        );
        // WebAuthn §5.1.3: an RP id is a domain, never an address.
        assert!(RelyingParty::from_issuer("http://127.0.0.1:3000").is_none());
        assert!(RelyingParty::from_issuer("http://[::1]:3000").is_none());
    }

    #[test]
    fn names_are_cleaned_and_never_empty() {
        assert_eq!(clean_name("  My phone "), "My phone");
        assert_eq!(clean_name(" \u{200b} "), "Passkey");
        assert_eq!(clean_name(&"x".repeat(200)).chars().count(), MAX_NAME_CHARS);
    }
}
