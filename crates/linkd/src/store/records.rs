//! The records the store reads and writes, and the values its methods
//! take and answer with.

use super::{StoreError, StoreResult, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret for confidential clients; `None` for public ones.
    pub secret_hash: Option<String>,
    /// Space-separated scopes this client may ask for.
    pub scopes: String,
    /// Off: the app may not start device authorizations, and pending ones
    /// cannot be approved.
    pub device_flow_enabled: bool,
    /// The exact addresses authorization codes may be sent to,
    /// space-separated (RFC 6749 §3.1.2); empty for a device-only app.
    pub redirect_uris: String,
    /// Off: the app may not use the authorization code grant.
    pub code_flow_enabled: bool,
    /// Off: the app is given no refresh tokens and may not use them.
    pub refresh_enabled: bool,
    /// On: every token request must carry a DPoP proof (RFC 9449 §5), so
    /// the app's tokens are bound to its devices' keys.
    pub require_dpop: bool,
    /// Off: devices get no `verification_uri_complete` and a code in the
    /// link page's address is ignored; the person types the code.
    pub prefilled_links: bool,
    /// The prefix lengths (IPv4, IPv6) within which the device's and the
    /// approving browser's addresses must lie; `None`: not required.
    pub same_network: Option<SameNetwork>,
    pub created_at: Timestamp,
}

/// An app's "same network" rule: the prefix length for each address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SameNetwork {
    pub v4: u8,
    pub v6: u8,
}

impl SameNetwork {
    /// The default rule: an IPv4 /24 (one home or office subnet) and an
    /// IPv6 /56 (what ISPs delegate to one household).
    pub const DEFAULT: SameNetwork = SameNetwork { v4: 24, v6: 56 };

    /// Whether the two addresses lie in one network under this rule. An
    /// IPv4 address mapped into IPv6 counts as IPv4; addresses of two
    /// families are two networks.
    pub fn holds(&self, a: std::net::IpAddr, b: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (a.to_canonical(), b.to_canonical()) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                let bits = u32::from(self.v4.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(a) & mask == u32::from(b) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                let bits = u32::from(self.v6.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(a) & mask == u128::from(b) & mask
            }
            _ => false,
        }
    }

    /// The network `ip` lies in under this rule, written as a prefix
    /// (`192.0.2.0/24`, `2001:db8:0:1200::/56`): what [`Self::holds`]
    /// compares, as one value.
    pub fn prefix(&self, ip: std::net::IpAddr) -> String {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(self.v4.min(32));
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                format!("{}/{bits}", Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let bits = u32::from(self.v6.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                format!("{}/{bits}", Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// `24,56` (or `24/56`): the IPv4 and IPv6 prefix lengths.
    pub fn parse(text: &str) -> Result<SameNetwork, String> {
        let (v4, v6) = text
            .split_once([',', '/'])
            .ok_or_else(|| format!("{text:?}: give both prefix lengths, e.g. 24,56"))?;
        let v4: u8 = v4
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=32).contains(n))
            .ok_or_else(|| format!("{text:?}: the IPv4 prefix length is 1 to 32"))?;
        let v6: u8 = v6
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=128).contains(n))
            .ok_or_else(|| format!("{text:?}: the IPv6 prefix length is 1 to 128"))?;
        Ok(SameNetwork { v4, v6 })
    }

    fn from_columns(v4: Option<i64>, v6: Option<i64>) -> Option<SameNetwork> {
        Some(SameNetwork {
            v4: u8::try_from(v4?).ok()?,
            v6: u8::try_from(v6?).ok()?,
        })
    }
}

impl std::fmt::Display for SameNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{} (IPv4), /{} (IPv6)", self.v4, self.v6)
    }
}

/// Reads an app's rule from its two columns (NULL: not required).
pub(crate) fn same_network_from_columns(v4: Option<i64>, v6: Option<i64>) -> Option<SameNetwork> {
    SameNetwork::from_columns(v4, v6)
}

impl Client {
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.split(' ').any(|s| s == scope)
    }
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }
    /// The registered redirect URIs.
    pub fn redirect_uri_list(&self) -> impl Iterator<Item = &str> {
        self.redirect_uris.split(' ').filter(|u| !u.is_empty())
    }
}

/// Which of an app's grants to switch on or off, and its redirect URIs
/// (`linkd client update`); `None` leaves a setting as it is.
#[derive(Debug, Clone, Default)]
pub struct ClientChanges<'a> {
    pub scopes: Option<&'a str>,
    pub device_flow_enabled: Option<bool>,
    pub code_flow_enabled: Option<bool>,
    pub refresh_enabled: Option<bool>,
    pub require_dpop: Option<bool>,
    /// Space-separated, replacing the list.
    pub redirect_uris: Option<&'a str>,
    pub prefilled_links: Option<bool>,
    /// `Some(None)` turns the rule off.
    pub same_network: Option<Option<SameNetwork>>,
}

/// A code handed to an app's redirect URI (RFC 6749 §4.1.2): single-use,
/// bound to its app, redirect URI and PKCE challenge (RFC 7636).
#[derive(Debug, Clone)]
pub struct AuthorizationCode {
    /// SHA-256 of the code.
    pub code_hash: String,
    pub client_id: String,
    pub account_id: String,
    /// The redirect URI the request named, `None` when it named none and
    /// the app's one registered URI was used.
    pub redirect_uri: Option<String>,
    pub scope: String,
    /// OpenID Connect Core §3.1.2.1: repeated in the ID token.
    pub nonce: Option<String>,
    /// BASE64URL(SHA-256(code_verifier)) (RFC 7636 §4.2, S256 only).
    pub code_challenge: Option<String>,
    /// When the person signed in (OpenID Connect Core §2 `auth_time`).
    pub auth_time: Timestamp,
    /// The network address of the browser that approved.
    pub ip: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub redeemed_at: Option<Timestamp>,
    /// The linked device the redemption made.
    pub device_id: Option<String>,
}

/// What redeeming an authorization code found.
#[derive(Debug, Clone)]
pub enum CodeRedeemOutcome {
    /// Redeemed: the device and its refresh token are stored.
    Redeemed,
    /// The domain declined (wrong verifier or redirect URI, a disabled
    /// account); the code is left as it was.
    Declined,
    /// The code is unknown, another app's, expired or already redeemed:
    /// the row as the writer saw it.
    NotRedeemable(Option<Box<AuthorizationCode>>),
}

/// What `redeem_authorization_code` asks the domain inside its
/// transaction: given the code and its account, what to write, or `None`.
pub type PrepareCodeRedemption<'a> =
    dyn FnMut(&AuthorizationCode, Option<&Account>) -> Option<Redemption> + Send + 'a;

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: Timestamp,
    pub disabled: bool,
    /// When a link mailed to `email` was last confirmed; `None` while the
    /// address is not shown to be the person's (migration 0014).
    pub email_verified_at: Option<Timestamp>,
    /// The IANA zone the person's browser last reported, for pages shown
    /// where no script runs (migration 0016).
    pub time_zone: Option<String>,
}

/// A person at one of the operator's OpenID providers, joined to an
/// account. (issuer, subject) is the key (OpenID Connect Core §5.7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub account_id: String,
    /// The configured provider's id when it was joined.
    pub provider: String,
    /// The email the provider gave when last used, if any.
    pub email: Option<String>,
    pub joined_at: Timestamp,
    pub last_used_at: Timestamp,
}

/// A passkey (a WebAuthn credential) of an account. The two states are
/// the relying-party crate's encodings, base64url (migration 0017).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id, base64url.
    pub id: String,
    pub account_id: String,
    /// The account's WebAuthn user handle, base64url.
    pub user_handle: String,
    pub name: String,
    pub static_state: String,
    pub dynamic_state: String,
    pub sign_count: i64,
    pub backed_up: bool,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

/// A WebAuthn ceremony in progress, keyed by its challenge and bound to
/// the browser that asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyChallenge {
    pub challenge: String,
    /// `register` or `sign_in`.
    pub purpose: String,
    /// The hash of the asking browser's session or form token.
    pub binding: String,
    /// The account adding a passkey; none for a sign-in.
    pub account_id: Option<String>,
    /// The crate's encoded ceremony state, base64url.
    pub state: String,
    pub expires_at: Timestamp,
}

/// What removing an identity from an account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityRemoval {
    Removed,
    /// No such identity on the account.
    NotFound,
    /// It is the account's last way in; kept.
    LastWayIn,
}

/// A sign-in at a provider in progress, stored until the person comes
/// back (or it expires).
#[derive(Debug, Clone)]
pub struct UpstreamLogin {
    /// SHA-256 of the `state` sent to the provider.
    pub state_hash: String,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    /// Where the person goes after (a path on linkd).
    pub next: String,
    /// Set when a signed-in person adds an identity to their account.
    pub account_id: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An identity a provider vouched for, waiting for the same browser to
/// sign in to the account its email belongs to (migration 0022).
#[derive(Debug, Clone)]
pub struct PendingJoin {
    /// SHA-256 of the secret in the browser's cookie.
    pub secret_hash: String,
    pub account_id: String,
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the cookie value.
    pub id_hash: String,
    pub account_id: String,
    /// The synchronizer token every state-changing form must carry.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 PEM of the RSA private key.
    pub private_pem: String,
    pub created_at: Timestamp,
    /// When `linkd keys revoke` took it out of use (a compromised key).
    pub revoked_at: Option<Timestamp>,
}

/// Where a device authorization is in its life (DESIGN.md: pending →
/// approved → redeemed, or pending → denied; expiry is derived from
/// `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationState {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

impl AuthorizationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Redeemed => "redeemed",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "redeemed" => Self::Redeemed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "authorization state {other:?}"
                )));
            }
        })
    }
}

/// What a poll of the token endpoint reads of its authorization: enough
/// to answer a pending code, which nearly every poll is. The whole row is
/// read only once the code was approved.
#[derive(Debug, Clone)]
pub struct PolledAuthorization {
    pub id: String,
    pub client_id: String,
    pub state: AuthorizationState,
    pub expires_at: Timestamp,
    /// The polling interval the device was told, in seconds.
    pub interval: i64,
}

#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub id: String,
    /// The device code's key (`codes::device_code_key`): its issue time
    /// and hash, or for a code from before codes carried their time, its
    /// hash alone. The column kept its name.
    pub device_code_hash: String,
    /// Normalised user code (eight letters, no dash).
    pub user_code: String,
    pub client_id: String,
    /// Space-separated scopes asked for.
    pub scope: String,
    pub state: AuthorizationState,
    /// The person who approved or denied.
    pub account_id: Option<String>,
    /// The network address the device asked from.
    pub requested_ip: String,
    /// A label the device gave itself (`device_name`), if any.
    pub device_name: Option<String>,
    /// The device's `User-Agent` when it asked for the code, if it sent one.
    pub user_agent: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The polling interval the device was told, in seconds.
    pub interval: i64,
    pub decided_at: Option<Timestamp>,
}

/// A lasting link between a person's account and one device of one app.
#[derive(Debug, Clone)]
pub struct LinkedDevice {
    pub id: String,
    pub account_id: String,
    pub client_id: String,
    /// The app's name, read with the device (not stored on it).
    pub app_name: String,
    pub label: String,
    pub scope: String,
    pub linked_at: Timestamp,
    pub linked_ip: String,
    pub last_refresh_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// The thumbprint (RFC 7638) of the DPoP key the device proved when it
    /// was linked: its tokens are bound to it (RFC 9449 §5, §6).
    pub dpop_jkt: Option<String>,
    /// How it was linked, which says what kind of device it is.
    pub kind: DeviceKind,
    /// Its refresh token, when it holds one in the form of migration 0028.
    pub refresh: Option<RefreshState>,
}

/// A device's refresh token family as one row of state (migration 0028):
/// the current token and the one before it, by their hashes. The token a
/// device holds names the device and its generation (`tokens::refresh`).
/// Its scope is the device's: a refresh token keeps the grant's scope
/// (RFC 6749 §6), narrowing applies to one access token only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshState {
    /// The current token's generation, counted from 1.
    pub generation: i64,
    /// SHA-256 of the current token.
    pub token_hash: String,
    /// SHA-256 of the previous generation's token: presented again, it is
    /// reuse (RFC 9700 §4.14.2).
    pub previous_hash: Option<String>,
    /// When the current token expires unless used (the idle lifetime).
    pub expires_at: Timestamp,
}

/// How a device was linked (migration 0015).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// A device that showed a code (RFC 8628): a TV, console, tool.
    Code,
    /// An app that signed in through the browser (RFC 6749 §4.1).
    Browser,
}

impl DeviceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Code => "device_code",
            Self::Browser => "authorization_code",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        match s {
            "device_code" => Ok(Self::Code),
            "authorization_code" => Ok(Self::Browser),
            other => Err(StoreError::Corrupt(format!("device kind {other:?}"))),
        }
    }
}

/// A refresh token issued before migration 0028, one row per rotation in
/// `refresh_tokens`. linkd only reads these, marks one rotated when a
/// device trades it for its first token of the new form
/// ([`Store::upgrade_legacy_refresh_token`]), and purges them.
#[derive(Debug, Clone)]
pub struct LegacyRefreshToken {
    pub token_hash: String,
    /// The linked device, which is also the token family for reuse detection.
    pub device_id: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when the token was exchanged for a newer one.
    pub rotated_at: Option<Timestamp>,
}

/// Something that happened to a person's devices, shown on their account page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Linked,
    Denied,
    Unlinked,
    /// A rotated refresh token came back: the device's tokens were revoked
    /// (RFC 9700 §4.14.2).
    RefreshReuse,
    /// The password was set anew through a reset link.
    PasswordReset,
    /// The person said a device linked to their account was not theirs;
    /// it was unlinked.
    NotMe,
    /// A sign-in with the password.
    SignIn,
    /// The password was changed on the account page.
    PasswordChanged,
    /// A first password was set on the account page (it had signed in
    /// only through OpenID providers).
    PasswordSet,
    /// A change of address was asked for; `app_name` holds the new one.
    EmailChangeRequested,
    /// The address changed to `app_name` (its link was confirmed).
    EmailChanged,
    /// The address `app_name` was confirmed.
    EmailVerified,
    /// Every other browser was signed out.
    SignedOutElsewhere,
    /// An identity at an OpenID provider was joined to the account
    /// (`app_name` is the provider's name, `device` the identity's email).
    IdentityJoined,
    /// An identity at an OpenID provider was removed from the account.
    IdentityRemoved,
    /// The person picked a code their device did not show for a code that
    /// came in a link (number matching); the code was denied.
    WrongCode,
    /// The person said they did not start a code ("I didn't start
    /// this"); it was denied and reported.
    Reported,
    /// A passkey was added (`app_name` is its name).
    PasskeyAdded,
    /// A passkey was removed (`app_name` is its name).
    PasskeyRemoved,
    /// A sign-in with a passkey (`app_name` is its name).
    PasskeySignIn,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Denied => "denied",
            Self::Unlinked => "unlinked",
            Self::RefreshReuse => "refresh_reuse",
            Self::PasswordReset => "password_reset",
            Self::NotMe => "not_me",
            Self::SignIn => "sign_in",
            Self::PasswordChanged => "password_changed",
            Self::PasswordSet => "password_set",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChanged => "email_changed",
            Self::EmailVerified => "email_verified",
            Self::SignedOutElsewhere => "signed_out_elsewhere",
            Self::IdentityJoined => "identity_joined",
            Self::IdentityRemoved => "identity_removed",
            Self::WrongCode => "wrong_code",
            Self::Reported => "reported",
            Self::PasskeyAdded => "passkey_added",
            Self::PasskeyRemoved => "passkey_removed",
            Self::PasskeySignIn => "passkey_sign_in",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "linked" => Self::Linked,
            "denied" => Self::Denied,
            "unlinked" => Self::Unlinked,
            "refresh_reuse" => Self::RefreshReuse,
            "password_reset" => Self::PasswordReset,
            "not_me" => Self::NotMe,
            "sign_in" => Self::SignIn,
            "password_changed" => Self::PasswordChanged,
            "password_set" => Self::PasswordSet,
            "email_change_requested" => Self::EmailChangeRequested,
            "email_changed" => Self::EmailChanged,
            "email_verified" => Self::EmailVerified,
            "signed_out_elsewhere" => Self::SignedOutElsewhere,
            "identity_joined" => Self::IdentityJoined,
            "identity_removed" => Self::IdentityRemoved,
            "wrong_code" => Self::WrongCode,
            "reported" => Self::Reported,
            "passkey_added" => Self::PasskeyAdded,
            "passkey_removed" => Self::PasskeyRemoved,
            "passkey_sign_in" => Self::PasskeySignIn,
            other => return Err(StoreError::Corrupt(format!("activity kind {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Activity {
    pub account_id: String,
    pub kind: ActivityKind,
    pub client_id: String,
    pub app_name: String,
    /// The device's label, when the event concerns one device.
    pub device: Option<String>,
    pub ip: String,
    pub at: Timestamp,
}

/// What a mailed single-use link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkPurpose {
    /// Sets a new password.
    PasswordReset,
    /// "This wasn't me": unlinks the device named in `subject`.
    NotMe,
    /// Confirms the address in `subject` as the account's.
    VerifyEmail,
}

impl LinkPurpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PasswordReset => "password_reset",
            Self::NotMe => "not_me",
            Self::VerifyEmail => "verify_email",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "password_reset" => Self::PasswordReset,
            "not_me" => Self::NotMe,
            "verify_email" => Self::VerifyEmail,
            other => return Err(StoreError::Corrupt(format!("link purpose {other:?}"))),
        })
    }
}

/// A single-use link mailed to a person (migration 0014).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountLink {
    /// SHA-256 of the secret in the link.
    pub token_hash: String,
    pub account_id: String,
    pub purpose: LinkPurpose,
    /// What the link acts on (a linked device's id), if anything.
    pub subject: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub used_at: Option<Timestamp>,
}

/// What a person's decision writes beside itself, in the same
/// transaction: its activity entry and, after an approval, the "This
/// wasn't me" link with the notice mail that carries it
/// (`link_notice.rs`).
#[derive(Debug, Clone)]
pub struct DecisionRecord {
    pub activity: Activity,
    pub link: Option<AccountLink>,
    pub outbox: Vec<OutboxMessage>,
}

/// The grant an approval made: what a "This wasn't me" link stops if the
/// device has not collected its tokens yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantRef<'a> {
    /// A device authorization, by id.
    DeviceAuthorization(&'a str),
    /// An authorization code, by the hash of the code.
    AuthorizationCode(&'a str),
}

/// "This wasn't me", as the store carries it out in one transaction: the
/// link is used, the grant stopped, the device unlinked with its tokens,
/// the app's remembered consent withdrawn and the report recorded.
#[derive(Debug, Clone)]
pub struct NotMeReport<'a> {
    pub token_hash: &'a str,
    pub grant: GrantRef<'a>,
    /// The linked device the grant makes (or made) when redeemed.
    pub device_id: &'a str,
    /// Its account, client and time; `kind` is `NotMe`.
    pub activity: &'a Activity,
    /// Written only if the device was linked until now (the
    /// `device.unlinked` webhook event).
    pub outbox: &'a [OutboxMessage],
    /// Written with the report in any case (the `link.reported` event).
    pub reported: &'a [OutboxMessage],
}

/// What an outbox message is, which decides who delivers it (outbox.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// A mail, sent over SMTP (mail.rs).
    Mail,
    /// A webhook event as it happened, before it is addressed: the worker
    /// replaces it with one `Webhook` per endpoint that wants it
    /// (webhooks.rs), so writers need not know the endpoints.
    WebhookEvent,
    /// One webhook event for one endpoint, POSTed and signed (webhooks.rs).
    Webhook,
}

impl OutboxKind {
    pub const ALL: &'static [OutboxKind] = &[
        OutboxKind::Mail,
        OutboxKind::WebhookEvent,
        OutboxKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::WebhookEvent => "webhook_event",
            Self::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "mail" => Self::Mail,
            "webhook_event" => Self::WebhookEvent,
            "webhook" => Self::Webhook,
            other => return Err(StoreError::Corrupt(format!("outbox kind {other:?}"))),
        })
    }
}

/// A message waiting in the outbox, written with what caused it and sent
/// by the background worker (outbox.rs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub kind: OutboxKind,
    /// What the kind's sender needs, as JSON (for mail: the rendered
    /// message, `mail::MailPayload`).
    pub payload: String,
    /// Claims so far, the one in progress included.
    pub attempts: i64,
    /// Due from this time; while claimed, the lease's end.
    pub next_attempt_at: Timestamp,
    /// The claim that holds the message, if any.
    pub lease: Option<String>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    /// Set when the worker gave up on it.
    pub failed_at: Option<Timestamp>,
}

/// Something other requests, possibly on other linkd instances, wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A person approved or denied the device authorization with this id.
    Decided { authorization_id: String },
    /// An account's synced settings changed.
    SettingsChanged { account_id: String },
}

/// One step on the security limits every instance shares (PostgreSQL,
/// migration 0025): `limits.rs` says which steps a request takes, the
/// store makes them one atomic round trip ([`Store::tally_limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitOp<'a> {
    pub kind: LimitOpKind,
    /// Which limit.
    pub name: &'static str,
    /// Whose count.
    pub key: &'a str,
    /// The member of `key`'s set (a network among an account's), or "".
    pub sub: &'a str,
    /// `max` for a take, `free` for a reserve, `cap` for an admit.
    pub a: i64,
    /// The window, reset period or lifetime in seconds; for a give, when
    /// the slot was taken.
    pub b: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOpKind {
    /// A slot in a fixed window of `b` seconds, at most `a` (0: no limit);
    /// a refusal gives back the steps before it and stops.
    Take,
    /// Like `Take`, but a refusal only reports (the server-wide code
    /// budget pauses rather than refuses).
    Try,
    /// A slot taken at `b` goes back, if its window is still current.
    Give,
    /// One failure counted in advance, refused while the backoff after
    /// the failures so far (`a` free) runs; forgotten `b` seconds after
    /// the last one.
    Reserve,
    /// A reserved failure goes back.
    Unreserve,
    /// The count starts over.
    Reset,
    /// `sub` joins `key`'s set of at most `a` members, each kept `b`
    /// seconds after it last joined; members known to `key` (see `Know`,
    /// under `name:known`) are let through without joining.
    Admit,
    /// `sub` leaves `key`'s set.
    Forget,
    /// `sub` is known to `key` for `b` seconds.
    Know,
}

impl LimitOp<'_> {
    /// A take or try of a limit that is off (`a` 0): `linkd_tally` counts
    /// nothing for it and never refuses it.
    pub fn is_off(&self) -> bool {
        matches!(self.kind, LimitOpKind::Take | LimitOpKind::Try) && self.a == 0
    }
}

impl LimitOpKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            LimitOpKind::Take => "take",
            LimitOpKind::Try => "try",
            LimitOpKind::Give => "give",
            LimitOpKind::Reserve => "reserve",
            LimitOpKind::Unreserve => "unreserve",
            LimitOpKind::Reset => "reset",
            LimitOpKind::Admit => "admit",
            LimitOpKind::Forget => "forget",
            LimitOpKind::Know => "know",
        }
    }
}

/// Deadlines before which rows go in a purge.
#[derive(Debug, Clone, Copy)]
pub struct PurgeBefore {
    /// Sessions and revoked access-token ids that expired before this.
    pub now: Timestamp,
    /// Device authorizations whose deadline is before this.
    pub codes: Timestamp,
    /// Refresh tokens of the old form (`refresh_tokens`, issued before
    /// migration 0028) that expired before this. Later than their expiry:
    /// a rotated token presented again must still be recognised, and its
    /// family revoked (RFC 9700 §4.14.2), for as long as the family could
    /// live (the absolute refresh lifetime). Tokens of the new form are
    /// state on their device's row and leave nothing to purge.
    pub refresh_tokens: Timestamp,
    /// Sync tombstones written before this (`--sync-tombstone-retention`);
    /// each account's purge horizon rises past the ones purged.
    pub tombstones: Timestamp,
}

impl PurgeBefore {
    /// Each purged table with its primary key's columns and the deadline
    /// its rows' `expires_at` is held to. Every one has an index on
    /// expires_at (migrations 0001, 0002, 0005, 0007, 0008, 0014, 0017,
    /// 0020, 0021, 0022, 0023, 0025), so a batch reads only the rows it
    /// deletes, and finds them again by their key.
    pub(crate) fn by_table(&self) -> [(&'static str, &'static str, Timestamp); 14] {
        [
            // Passkey ceremonies nobody finished (0017).
            ("passkey_challenges", "challenge", self.now),
            // Reports past their window, and blocks that ended (0020).
            ("link_reports", "id", self.now),
            ("network_blocks", "network", self.now),
            // Limit counters whose window or backoff is over (0025): a
            // missing row counts the same as an expired one.
            ("limit_counts", "name, key, sub", self.now),
            // Sign-ins at a provider nobody came back from (0023).
            ("upstream_logins", "state_hash", self.now),
            // Joins offered that nobody signed in to take (0022).
            ("pending_joins", "secret_hash", self.now),
            // Mailed links, used or not, once they expired (0014).
            ("account_links", "token_hash", self.now),
            // Messages that failed for good, once the operator had time
            // to look (migration 0008).
            ("outbox", "id", self.now),
            ("device_authorizations", "id", self.codes),
            // Kept past redemption until they expire (migration 0007), so
            // that a second use is still recognised.
            ("authorization_codes", "code_hash", self.now),
            ("sessions", "id_hash", self.now),
            // Only tokens issued before migration 0028 are rows here.
            ("refresh_tokens", "token_hash", self.refresh_tokens),
            ("revoked_access_tokens", "jti", self.now),
            // DPoP proofs past their acceptable `iat` (0021).
            ("dpop_proofs", "id", self.now),
        ]
    }
}

/// How many events a slow subscriber may fall behind before it misses some
/// (it then re-reads the store, which is always the truth).
pub const EVENT_BACKLOG: usize = 4096;

/// The namespace of the collection every app of an account shares.
pub const SHARED_NAMESPACE: &str = "account";

/// One synced settings document (or its tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDocument {
    pub account_id: String,
    /// The app's client_id, or [`SHARED_NAMESPACE`].
    pub namespace: String,
    pub collection: String,
    pub key: String,
    /// The JSON text; `None` once deleted.
    pub body: Option<String>,
    /// Bytes of `body` (0 for a tombstone).
    pub size: i64,
    /// The account's sequence number of the last write: the version and
    /// the position in the change feed.
    pub seq: i64,
    pub deleted: bool,
    pub updated_at: Timestamp,
    /// The device that wrote last; `None` for the person on their page.
    pub updated_by: Option<String>,
}

/// What a conditional write requires of the current document
/// (RFC 9110 §13.1.1 If-Match, §13.1.2 If-None-Match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPrecondition {
    /// `If-None-Match: *`: no live document (a tombstone counts as none).
    Absent,
    /// `If-Match: *`: a live document, whatever its version.
    Present,
    /// `If-Match: "7", "9"`: a live document at one of these versions.
    Versions(Vec<i64>),
}

/// A write or delete, applied only if its precondition holds.
#[derive(Debug, Clone)]
pub struct SyncWrite {
    pub account_id: String,
    pub namespace: String,
    pub collection: String,
    pub key: String,
    /// The new JSON text; `None` deletes (writes a tombstone).
    pub body: Option<String>,
    pub precondition: SyncPrecondition,
    pub device_id: Option<String>,
    pub now: Timestamp,
    /// Documents the account may hold after this write, live ones and
    /// tombstones together (tombstones make room for new documents).
    pub max_documents: i64,
}

/// The rows an account's sync documents take: live documents and
/// tombstones (deleted documents kept for the change feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncRows {
    pub live: i64,
    pub tombstones: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncWriteOutcome {
    Written(SyncDocument),
    /// The precondition failed: the current document (live or tombstone),
    /// if any.
    PreconditionFailed(Option<SyncDocument>),
    /// Creating it would exceed `max_documents`.
    TooManyDocuments,
}

/// What one app keeps in one collection, for the account page.
#[derive(Debug, Clone)]
pub struct SyncUsage {
    pub namespace: String,
    /// The app's name (`None` for the shared namespace or a removed app).
    pub app_name: Option<String>,
    pub collection: String,
    pub documents: i64,
    pub bytes: i64,
    pub last_change_at: Timestamp,
    /// The label of the device that made the last change, if a device did
    /// and it is still known.
    pub last_device: Option<String>,
}

/// What redeeming an approved authorization writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Redemption {
    /// The device, with its first refresh token's state if it gets one.
    pub device: LinkedDevice,
    /// Messages the link causes (the `device.linked` webhook event).
    pub outbox: Vec<OutboxMessage>,
}

/// What redeeming found on the row it tried to update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    /// The code was approved and live: it is redeemed, and the device and
    /// its refresh token are stored.
    Redeemed,
    /// The code was approved and live, but the domain declined to redeem
    /// it (see `redeem_device_authorization`); nothing changed.
    Declined,
    /// The code was not approved and live: its state and deadline as the
    /// writer saw them, or `None` when there is no such code any more.
    NotRedeemable(Option<(AuthorizationState, Timestamp)>),
}

/// What `redeem_device_authorization` asks the domain, inside its
/// transaction: given the row it redeems and the approving account (if it
/// still exists), what to write, or `None` to decline.
pub type PrepareRedemption<'a> =
    dyn FnMut(&DeviceAuthorization, Option<&Account>) -> Option<Redemption> + Send + 'a;

/// When reports block a requesting network (`--network-block-reports`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRule {
    /// Distinct accounts whose reports within `window` block a network;
    /// 0 never blocks.
    pub threshold: u32,
    /// Networks one account's reports may count for within `window`;
    /// past them, a report still denies its code but counts towards no
    /// block.
    pub per_account: u32,
    /// How far back reports count, in seconds.
    pub window: i64,
    /// How long a block lasts, in seconds. At least `window`, so that the
    /// reports behind one block have stopped counting when it ends.
    pub block_secs: i64,
}

/// "I didn't start this", as the store carries it out in one transaction
/// with the denial of the code (`Store::report_device_authorization`).
pub struct LinkReport<'a> {
    /// The requesting network (the device's address prefix).
    pub network: &'a str,
    pub client_id: &'a str,
    /// The reporting browser's address.
    pub reporting_ip: &'a str,
    /// False when the report cannot count towards a block at all (the
    /// person is on the device's own network).
    pub eligible: bool,
    pub rule: BlockRule,
    /// Whether a pending code's requested address lies in `network`.
    pub in_network: &'a (dyn Fn(&str) -> bool + Send + Sync),
    /// The `network.blocked` event for a block after so many accounts'
    /// reports, until the given time.
    pub blocked_event: &'a (dyn Fn(i64, Timestamp) -> OutboxMessage + Send + Sync),
}

/// What a report did beyond denying its code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportOutcome {
    /// Whether it counted towards a block.
    pub counted: bool,
    /// The block it started, if it was the one that crossed the threshold.
    pub blocked: Option<NetworkBlock>,
    /// The ids of the network's pending codes the block denied.
    pub denied: Vec<String>,
}

/// A requesting network whose codes are refused until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkBlock {
    pub network: String,
    /// The distinct accounts' reports that led to it.
    pub reports: i64,
    pub blocked_at: Timestamp,
    pub until: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: LimitOpKind, a: i64) -> LimitOp<'static> {
        LimitOp {
            kind,
            name: "limit",
            key: "key",
            sub: "",
            a,
            b: 60,
        }
    }

    #[test]
    fn only_takes_and_tries_of_a_zero_limit_are_off() {
        assert!(op(LimitOpKind::Take, 0).is_off());
        assert!(op(LimitOpKind::Try, 0).is_off());
        assert!(!op(LimitOpKind::Take, 5).is_off());
        assert!(!op(LimitOpKind::Try, 1).is_off());
        // These change counts whatever their `a` says.
        for kind in [
            LimitOpKind::Give,
            LimitOpKind::Reserve,
            LimitOpKind::Unreserve,
            LimitOpKind::Reset,
            LimitOpKind::Admit,
            LimitOpKind::Forget,
            LimitOpKind::Know,
        ] {
            assert!(!op(kind, 0).is_off(), "{kind:?}");
        }
    }
}
