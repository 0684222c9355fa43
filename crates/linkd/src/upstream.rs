//! Sign-in through the operator's OpenID providers (OpenID Connect Core
//! §3.1, with PKCE and `nonce`): starting a sign-in at a provider,
//! checking the person's return (the ID token fully validated against the
//! provider's JWKS), and deciding which account it opens. Identities are
//! keyed by (issuer, subject), never by email alone.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use axum::http::HeaderValue;

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};

use crate::accounts;
use crate::codes::{random_secret, secret_hash};
use crate::config::ProviderConfig;
use crate::ctx::Ctx;
use crate::store::{
    Account, Activity, ActivityKind, Identity, IdentityRemoval, PendingJoin, StoreError,
    UpstreamLogin,
};

/// How long a person may take at the provider before coming back.
pub const LOGIN_LIFETIME: i64 = 600;
/// How long an offered join waits for the person to sign in to the
/// account it is for.
pub const JOIN_LIFETIME: i64 = 600;
/// A provider that does not answer within this is treated as down: the
/// person gets a page saying so instead of a hanging request.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no such provider")]
    UnknownProvider,
    /// Discovery, the JWKS or the token endpoint could not be reached or
    /// answered with an error.
    #[error("the provider is unavailable: {0}")]
    Unavailable(String),
    /// The `state` is unknown, used, expired or of another provider.
    #[error("this sign-in is unknown or expired")]
    Expired,
    /// The provider answered the person with an error (RFC 6749 §4.1.2.1),
    /// `access_denied` when they cancelled.
    #[error("the provider refused: {0}")]
    Refused(String),
    /// The ID token failed validation: signature, issuer, audience,
    /// expiry or nonce (OpenID Connect Core §3.1.3.7).
    #[error("the ID token is not valid: {0}")]
    BadIdToken(String),
    /// The provider gave no usable email for a new account.
    #[error("the provider gave no email address")]
    NoEmail,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configured providers and the HTTP client that talks to them.
pub struct Providers {
    list: Vec<ProviderConfig>,
    http: reqwest::Client,
    /// The origin of each provider's authorization endpoint as last
    /// discovered, by provider id: where "Continue with …" leads.
    authorization_origins: RwLock<HashMap<String, String>>,
    /// The pages' CSP with those origins in form-action; None without
    /// providers (`web::headers`).
    csp: RwLock<Option<HeaderValue>>,
}

impl Providers {
    pub fn new(list: &[ProviderConfig]) -> Self {
        // openidconnect's advice: following redirects opens the client to
        // SSRF; discovery and token endpoints answer directly.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(PROVIDER_TIMEOUT)
            .timeout(PROVIDER_TIMEOUT)
            .build()
            .unwrap_or_default();
        let providers = Providers {
            list: list.to_vec(),
            http,
            authorization_origins: RwLock::new(HashMap::new()),
            csp: RwLock::new(None),
        };
        providers.update_csp();
        providers
    }

    /// Discovers every provider once, so that the pages' form-action
    /// names where their authorization endpoints really are. Run in the
    /// background at start-up: a provider that is down must not hold the
    /// server back, and each sign-in discovers again anyway.
    pub async fn discover_all(&self) {
        for provider in &self.list {
            if let Err(e) = self.discover(provider).await {
                tracing::warn!(provider = %provider.id, error = %e, "OpenID provider discovery failed");
            }
        }
    }

    /// The pages' Content-Security-Policy while providers are configured.
    pub fn csp(&self) -> Option<HeaderValue> {
        // Every response asks, polls too: no lock without providers.
        if self.list.is_empty() {
            return None;
        }
        self.csp.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The origins the sign-in forms may lead to: each provider's
    /// discovered authorization endpoint, or its issuer's until discovery
    /// has answered (where Google, Entra ID, Keycloak and Okta have it).
    pub fn form_action_origins(&self) -> Vec<String> {
        let discovered = self
            .authorization_origins
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut origins: Vec<String> = Vec::new();
        for provider in &self.list {
            let origin = discovered
                .get(&provider.id)
                .cloned()
                .or_else(|| tuple_origin(&provider.issuer));
            if let Some(origin) = origin.filter(|o| !origins.contains(o)) {
                origins.push(origin);
            }
        }
        origins
    }

    /// Notes where discovery says a provider's authorization endpoint is,
    /// and rebuilds the CSP when that moved.
    fn found_authorization_endpoint(&self, provider: &ProviderConfig, endpoint: &str) {
        let Some(origin) = tuple_origin(endpoint) else {
            return;
        };
        let moved = {
            let mut known = self
                .authorization_origins
                .write()
                .unwrap_or_else(|e| e.into_inner());
            known.insert(provider.id.clone(), origin.clone()) != Some(origin)
        };
        if moved {
            self.update_csp();
        }
    }

    fn update_csp(&self) {
        let policy = crate::web::headers::policy_with_form_origins(&self.form_action_origins());
        *self.csp.write().unwrap_or_else(|e| e.into_inner()) = policy;
    }

    pub fn get(&self, id: &str) -> Option<&ProviderConfig> {
        self.list.iter().find(|p| p.id == id)
    }

    pub fn list(&self) -> &[ProviderConfig] {
        &self.list
    }

    /// The provider a stored identity came from, by its issuer first (the
    /// id may have been renamed in the configuration since).
    pub fn for_identity(&self, identity: &Identity) -> Option<&ProviderConfig> {
        self.list
            .iter()
            .find(|p| same_issuer(&p.issuer, &identity.issuer))
            .or_else(|| self.get(&identity.provider))
    }

    /// The provider's discovery document and JWKS; notes where its
    /// authorization endpoint is for the pages' form-action.
    async fn discover(
        &self,
        provider: &ProviderConfig,
    ) -> Result<CoreProviderMetadata, UpstreamError> {
        let issuer = IssuerUrl::new(provider.issuer.clone())
            .map_err(|e| UpstreamError::Unavailable(format!("issuer: {e}")))?;
        // Checks that the document names this issuer (OpenID Connect
        // Discovery §4.3) and fetches its JWKS.
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
        self.found_authorization_endpoint(provider, metadata.authorization_endpoint().as_str());
        Ok(metadata)
    }

    /// Discovery and the JWKS, fetched fresh: a sign-in is rare next to
    /// polls, and fresh keys follow the provider's rotations at once.
    async fn client(
        &self,
        provider: &ProviderConfig,
        redirect_uri: &str,
    ) -> Result<ConfiguredClient, UpstreamError> {
        let metadata = self.discover(provider).await?;
        let redirect = RedirectUrl::new(redirect_uri.to_string())
            .map_err(|e| UpstreamError::Unavailable(format!("redirect URI: {e}")))?;
        Ok(CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(provider.client_id.clone()),
            Some(ClientSecret::new(provider.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }
}

type ConfiguredClient = CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

/// Issuers compare as strings (OpenID Connect Discovery §4.3), but a
/// trailing slash in the configuration is a common slip.
fn same_issuer(a: &str, b: &str) -> bool {
    a.trim_end_matches('/') == b.trim_end_matches('/')
}

/// A URL's origin (scheme, host, port) as CSP writes it; None for an
/// opaque one.
fn tuple_origin(url: &str) -> Option<String> {
    let origin = url::Url::parse(url).ok()?.origin();
    origin.is_tuple().then(|| origin.ascii_serialization())
}

/// An error and its causes on one line, for logs and the outage page's
/// log entry (never shown to the person).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Starts a sign-in at `provider`: stores what the return must match and
/// answers the provider's authorization URL and the `state`, which the
/// caller also keeps in the browser (so only the browser that started a
/// sign-in can finish it). `account_id` is set when a signed-in person
/// adds the identity to their account.
pub async fn begin(
    ctx: &Ctx<'_>,
    providers: &Providers,
    provider_id: &str,
    redirect_uri: &str,
    next: &str,
    account_id: Option<&str>,
) -> Result<(String, String), UpstreamError> {
    let provider = providers
        .get(provider_id)
        .ok_or(UpstreamError::UnknownProvider)?;
    let client = providers.client(provider, redirect_uri).await?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = random_secret(32);
    let nonce = random_secret(32);
    let (state_for_url, nonce_for_url) = (state.clone(), nonce.clone());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state_for_url),
            move || Nonce::new(nonce_for_url),
        )
        .set_pkce_challenge(challenge);
    for scope in provider.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, _, _) = request.url();
    ctx.store
        .insert_upstream_login(&UpstreamLogin {
            state_hash: secret_hash(&state),
            provider: provider.id.clone(),
            nonce,
            pkce_verifier: verifier.secret().clone(),
            next: next.to_string(),
            account_id: account_id.map(String::from),
            created_at: ctx.now,
            expires_at: ctx.now + LOGIN_LIFETIME,
        })
        .await?;
    Ok((url.to_string(), state))
}

/// A person the provider vouched for, with where they were going.
#[derive(Debug, Clone)]
pub struct Verified {
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub next: String,
    /// The signed-in account that asked to add this identity, if any.
    pub account_id: Option<String>,
}

/// What the provider sent the person back with (RFC 6749 §4.1.2).
pub enum Callback<'a> {
    Code(&'a str),
    Error(&'a str),
}

/// Checks a return from the provider: the stored sign-in taken by its
/// `state` (once), the code redeemed with the PKCE verifier, the ID token
/// validated (signature by the provider's JWKS, issuer, audience, expiry
/// by linkd's clock, nonce).
pub async fn finish(
    ctx: &Ctx<'_>,
    providers: &Providers,
    provider_id: &str,
    redirect_uri: &str,
    state: &str,
    callback: Callback<'_>,
) -> Result<Verified, UpstreamError> {
    let provider = providers
        .get(provider_id)
        .ok_or(UpstreamError::UnknownProvider)?;
    let login = ctx
        .store
        .take_upstream_login(&secret_hash(state), ctx.now)
        .await?
        .filter(|l| l.provider == provider.id)
        .ok_or(UpstreamError::Expired)?;
    let code = match callback {
        Callback::Code(code) => code,
        Callback::Error(error) => return Err(UpstreamError::Refused(error.to_string())),
    };
    let client = providers.client(provider, redirect_uri).await?;
    let response = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?
        .set_pkce_verifier(PkceCodeVerifier::new(login.pkce_verifier.clone()))
        .request_async(&providers.http)
        .await
        .map_err(|e| UpstreamError::Unavailable(error_chain(&e)))?;
    let id_token = response
        .id_token()
        .ok_or_else(|| UpstreamError::BadIdToken("no ID token in the token response".into()))?;
    let now = ctx.now;
    let verifier = client
        .id_token_verifier()
        .set_time_fn(move || chrono::DateTime::from_timestamp(now, 0).unwrap_or_default());
    let claims = id_token
        .claims(&verifier, &Nonce::new(login.nonce.clone()))
        .map_err(|e| UpstreamError::BadIdToken(error_chain(&e)))?;
    // The signature was checked on exactly this token, so its payload
    // can be read for a claim openidconnect has no field for.
    let email = if provider.email_claim == "email" {
        claims.email().map(|e| e.to_string())
    } else {
        payload_claim(&id_token.to_string(), &provider.email_claim)
    };
    Ok(Verified {
        provider: provider.id.clone(),
        issuer: claims.issuer().to_string(),
        subject: claims.subject().to_string(),
        email: email.and_then(|e| accounts::normalize_email(&e).ok()),
        email_verified: claims.email_verified() == Some(true),
        next: login.next,
        account_id: login.account_id,
    })
}

/// A string claim from a JWT's payload (already verified by the caller).
fn payload_claim(jwt: &str, name: &str) -> Option<String> {
    use base64::Engine;
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get(name)?.as_str().map(String::from)
}

/// Which account a verified return opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Sign in to this account (a known identity, a new account, or one
    /// joined by a verified email as the operator allows).
    SignIn(String),
    /// The identity is now (or already was) joined to the signed-in
    /// account that asked.
    Joined,
    /// An account with this email exists and the identity may not join it
    /// on the provider's word alone: the person signs in to it, and the
    /// identity joins then ([`offer_join`], [`accept_join`]).
    ProveAccount(String),
    /// The identity belongs to another account.
    JoinedElsewhere,
    /// The account is disabled.
    Disabled,
}

/// Decides what a verified return does, recording joins in the account's
/// activity.
pub async fn resolve(
    ctx: &Ctx<'_>,
    providers: &Providers,
    v: &Verified,
    ip: &str,
) -> Result<Outcome, UpstreamError> {
    let provider = providers
        .get(&v.provider)
        .ok_or(UpstreamError::UnknownProvider)?;
    let identity = |account_id: &str| Identity {
        issuer: v.issuer.clone(),
        subject: v.subject.clone(),
        account_id: account_id.to_string(),
        provider: provider.id.clone(),
        email: v.email.clone(),
        joined_at: ctx.now,
        last_used_at: ctx.now,
    };
    let joined = |account_id: &str| Activity {
        account_id: account_id.to_string(),
        kind: ActivityKind::IdentityJoined,
        client_id: String::new(),
        app_name: provider.name.clone(),
        device: v.email.clone(),
        ip: ip.to_string(),
        at: ctx.now,
    };
    let existing = ctx.store.get_identity(&v.issuer, &v.subject).await?;

    // A signed-in person adding an identity has proved the account.
    if let Some(account_id) = &v.account_id {
        return match existing {
            Some(i) if i.account_id == *account_id => Ok(Outcome::Joined),
            Some(_) => Ok(Outcome::JoinedElsewhere),
            None => match ctx
                .store
                .join_identity(&identity(account_id), &joined(account_id))
                .await
            {
                Ok(()) => Ok(Outcome::Joined),
                Err(StoreError::Conflict) => Ok(Outcome::JoinedElsewhere),
                Err(e) => Err(e.into()),
            },
        };
    }

    if let Some(i) = existing {
        ctx.store
            .touch_identity(&v.issuer, &v.subject, v.email.as_deref(), ctx.now)
            .await?;
        return open(ctx, &i.account_id).await;
    }
    let email = v.email.clone().ok_or(UpstreamError::NoEmail)?;
    if let Some(account) = ctx.store.get_account_by_email(&email).await? {
        // Never joined on the email alone: only when the provider vouches
        // for it and the operator trusts the provider to.
        if !(provider.join_by_verified_email && v.email_verified) {
            return Ok(Outcome::ProveAccount(email));
        }
        return match ctx
            .store
            .join_identity(&identity(&account.id), &joined(&account.id))
            .await
        {
            Ok(()) => open(ctx, &account.id).await,
            Err(StoreError::Conflict) => retry_known(ctx, v).await,
            Err(e) => Err(e.into()),
        };
    }
    let account = Account {
        id: accounts::new_account_id(),
        email,
        // No local password: the account opens through its identities.
        password_hash: String::new(),
        created_at: ctx.now,
        disabled: false,
        // The provider vouched for the address (OpenID Connect Core §5.1).
        email_verified_at: v.email_verified.then_some(ctx.now),
        time_zone: None,
    };
    match ctx
        .store
        .insert_account_with_identity(
            &account,
            &identity(&account.id),
            account.email_verified_at,
            &joined(&account.id),
        )
        .await
    {
        Ok(()) => Ok(Outcome::SignIn(account.id)),
        // A racing first sign-in of the same person made it, or someone
        // took the email in between.
        Err(StoreError::Conflict) => retry_known(ctx, v).await,
        Err(e) => Err(e.into()),
    }
}

/// After losing a race to create or join: the identity is known now, or
/// the email belongs to an account the person must prove.
async fn retry_known(ctx: &Ctx<'_>, v: &Verified) -> Result<Outcome, UpstreamError> {
    match ctx.store.get_identity(&v.issuer, &v.subject).await? {
        Some(i) => open(ctx, &i.account_id).await,
        None => Ok(Outcome::ProveAccount(v.email.clone().unwrap_or_default())),
    }
}

async fn open(ctx: &Ctx<'_>, account_id: &str) -> Result<Outcome, UpstreamError> {
    match ctx.store.get_account(account_id).await? {
        Some(a) if !a.disabled => Ok(Outcome::SignIn(a.id)),
        _ => Ok(Outcome::Disabled),
    }
}

/// Offers to join a verified identity to the account its email belongs
/// to (after [`Outcome::ProveAccount`]): stored until this browser signs
/// in to that account, see [`accept_join`]. Answers the secret for the
/// browser's cookie; None when no account has the email any more.
pub async fn offer_join(
    ctx: &Ctx<'_>,
    v: &Verified,
    email: &str,
) -> Result<Option<String>, StoreError> {
    let Some(account) = ctx.store.get_account_by_email(email).await? else {
        return Ok(None);
    };
    let secret = random_secret(32);
    ctx.store
        .insert_pending_join(&PendingJoin {
            secret_hash: secret_hash(&secret),
            account_id: account.id,
            provider: v.provider.clone(),
            issuer: v.issuer.clone(),
            subject: v.subject.clone(),
            email: v.email.clone(),
            created_at: ctx.now,
            expires_at: ctx.now + JOIN_LIFETIME,
        })
        .await?;
    Ok(Some(secret))
}

/// After a sign-in to `account_id` by a browser holding an offered join
/// (`secret`): the identity joins when the offer was for this account,
/// which is both proofs, the provider's return and the account's own
/// sign-in, in one browser. Recorded in the activity; answers the
/// provider's name when joined. The offer is taken whatever the outcome,
/// so it works once.
pub async fn accept_join(
    ctx: &Ctx<'_>,
    providers: &Providers,
    secret: &str,
    account_id: &str,
    ip: &str,
) -> Result<Option<String>, StoreError> {
    let Some(join) = ctx
        .store
        .take_pending_join(&secret_hash(secret), ctx.now)
        .await?
        .filter(|j| j.account_id == account_id)
    else {
        return Ok(None);
    };
    let name = providers
        .get(&join.provider)
        .map_or_else(|| join.provider.clone(), |p| p.name.clone());
    let identity = Identity {
        issuer: join.issuer,
        subject: join.subject,
        account_id: account_id.to_string(),
        provider: join.provider,
        email: join.email.clone(),
        joined_at: ctx.now,
        last_used_at: ctx.now,
    };
    let activity = Activity {
        account_id: account_id.to_string(),
        kind: ActivityKind::IdentityJoined,
        client_id: String::new(),
        app_name: name.clone(),
        device: join.email,
        ip: ip.to_string(),
        at: ctx.now,
    };
    match ctx.store.join_identity(&identity, &activity).await {
        Ok(()) => Ok(Some(name)),
        // Joined in the meantime (from another tab, or to another
        // account by its owner): nothing to add.
        Err(StoreError::Conflict) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes an identity from an account, never its last way in: the
/// password counts only while local passwords are on.
pub async fn remove(
    ctx: &Ctx<'_>,
    providers: &Providers,
    account_id: &str,
    issuer: &str,
    subject: &str,
    ip: &str,
) -> Result<IdentityRemoval, UpstreamError> {
    let Some(identity) = ctx.store.get_identity(issuer, subject).await? else {
        return Ok(IdentityRemoval::NotFound);
    };
    let name = providers
        .for_identity(&identity)
        .map(|p| p.name.clone())
        .unwrap_or_else(|| identity.provider.clone());
    let activity = Activity {
        account_id: account_id.to_string(),
        kind: ActivityKind::IdentityRemoved,
        client_id: String::new(),
        app_name: name,
        device: identity.email.clone(),
        ip: ip.to_string(),
        at: ctx.now,
    };
    Ok(ctx
        .store
        .remove_identity(issuer, subject, !ctx.config.no_local_passwords, &activity)
        .await?)
}

/// True when the account can sign in with a password here.
pub fn has_password(ctx: &Ctx<'_>, account: &Account) -> bool {
    !ctx.config.no_local_passwords && !account.password_hash.is_empty()
}
