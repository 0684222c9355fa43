//! The authorization code grant (RFC 6749 §4.1, OpenID Connect Core §3.1)
//! with PKCE (RFC 7636): checking an authorization request, issuing a
//! code once the person approved, and redeeming it at the token endpoint.
//! It ends in the same linked device and tokens as the device grant.

use crate::webhooks::{Event, UnlinkReason};
use url::Url;

use crate::codes::{random_secret, secret_hash};
use crate::ctx::Ctx;
use crate::device_flow::{PollError, resolve_scope};
use crate::i18n::Lang;
use crate::store::{
    Account, Activity, ActivityKind, AuthorizationCode, Client, CodeRedeemOutcome, GrantRef,
    LinkedDevice, Redemption, StoreError,
};
use crate::tokens::issue::{Grant, TokenSet, mint};
use crate::{link_notice, scopes};

/// RFC 6749 §4.1.2 asks for a short life, at most 10 minutes; the app is
/// waiting at its redirect URI and redeems at once.
pub const CODE_LIFETIME_SECS: i64 = 60;

/// Longest `state` or `nonce` kept: they travel back in a URL or a token.
const MAX_ECHO_LEN: usize = 512;

/// The parameters of an authorization request, as sent (each at most once).
#[derive(Debug, Clone, Default)]
pub struct AuthorizeRequest {
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub response_type: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<String>,
    pub login_hint: Option<String>,
    /// OpenID Connect Core §6: request objects, which linkd does not take.
    pub request: Option<String>,
    pub request_uri: Option<String>,
}

impl AuthorizeRequest {
    /// The request from its parameters; unknown ones are ignored
    /// (RFC 6749 §3.1).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut r = Self::default();
        for (name, value) in pairs {
            let slot = match name {
                "client_id" => &mut r.client_id,
                "redirect_uri" => &mut r.redirect_uri,
                "response_type" => &mut r.response_type,
                "scope" => &mut r.scope,
                "state" => &mut r.state,
                "nonce" => &mut r.nonce,
                "code_challenge" => &mut r.code_challenge,
                "code_challenge_method" => &mut r.code_challenge_method,
                "prompt" => &mut r.prompt,
                "max_age" => &mut r.max_age,
                "login_hint" => &mut r.login_hint,
                "request" => &mut r.request,
                "request_uri" => &mut r.request_uri,
                _ => continue,
            };
            // RFC 6749 §3.1: a parameter without a value counts as omitted.
            if !value.is_empty() {
                *slot = Some(value.to_string());
            }
        }
        r
    }

    /// The parameters again, for the confirmation form and the way back
    /// from sign-in.
    pub fn pairs(&self) -> Vec<(&'static str, &str)> {
        [
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("response_type", &self.response_type),
            ("scope", &self.scope),
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("code_challenge_method", &self.code_challenge_method),
            ("prompt", &self.prompt),
            ("max_age", &self.max_age),
            ("login_hint", &self.login_hint),
        ]
        .into_iter()
        .filter_map(|(n, v)| v.as_deref().map(|v| (n, v)))
        .collect()
    }
}

/// Why a request is refused before anything may be sent to its redirect
/// URI: the person is shown a page, never sent to an address the app did
/// not register (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageProblem {
    MissingClient,
    UnknownClient,
    /// Missing where the app registered several, or not one of them.
    BadRedirectUri,
    /// A parameter was sent twice (RFC 6749 §3.1).
    Repeated,
}

/// Where the answer goes: the redirect URI with the request's `state`.
#[derive(Debug, Clone)]
pub struct Reply {
    pub redirect_uri: String,
    pub state: Option<String>,
}

impl Reply {
    /// The redirect URI with `params`, `state` and `iss` (RFC 9207 §2)
    /// added to its query (RFC 6749 §4.1.2).
    pub fn location(&self, issuer: &str, params: &[(&str, &str)]) -> String {
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            // Only registered, parsed URIs get here.
            return self.redirect_uri.clone();
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = &self.state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", issuer);
        }
        url.to_string()
    }

    /// An RFC 6749 §4.1.2.1 error for the app.
    pub fn error(&self, issuer: &str, error: &str, description: &str) -> String {
        self.location(
            issuer,
            &[("error", error), ("error_description", description)],
        )
    }
}

/// A refusal the app hears at its redirect URI.
#[derive(Debug, Clone)]
pub struct ReplyError {
    pub reply: Reply,
    pub error: &'static str,
    pub description: String,
}

#[derive(Debug, Clone)]
pub enum RequestError {
    Page(PageProblem),
    Reply(ReplyError),
}

/// OpenID Connect Core §3.1.2.1 `prompt`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Prompt {
    pub none: bool,
    pub login: bool,
    pub consent: bool,
}

/// A request that passed every check: what the confirmation page shows
/// and what a code will be bound to.
#[derive(Debug, Clone)]
pub struct ValidRequest {
    pub client: Client,
    pub reply: Reply,
    /// The redirect URI as named in the request (`None`: the app's only one).
    pub named_redirect_uri: Option<String>,
    /// The scopes granted, sorted: one consent per set, whatever the order.
    pub scope: String,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Prompt,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
}

/// Whether `requested` is one of the app's registered redirect URIs:
/// compared as strings (RFC 9700 §2.1), except that a loopback address
/// may name any port (RFC 8252 §7.3: a native app listens on a port it
/// gets from the system).
pub fn redirect_uri_matches(registered: &str, requested: &str) -> bool {
    if registered == requested {
        return true;
    }
    let (Ok(reg), Ok(req)) = (Url::parse(registered), Url::parse(requested)) else {
        return false;
    };
    let loopback = |u: &Url| {
        u.scheme() == "http"
            && matches!(
                u.host(),
                Some(url::Host::Ipv4(ip)) if ip == std::net::Ipv4Addr::LOCALHOST
            )
            || u.scheme() == "http"
                && matches!(u.host(), Some(url::Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST)
    };
    if !loopback(&reg) || !loopback(&req) || requested.contains('#') {
        return false;
    }
    // Everything but the port exactly as registered; the requested text
    // must also be exactly what the parsed URI says (no tricks that the
    // parser normalises away).
    let mut without_port = req.clone();
    if without_port.set_port(None).is_err() {
        return false;
    }
    let mut reg_without_port = reg.clone();
    if reg_without_port.set_port(None).is_err() {
        return false;
    }
    req.as_str() == requested && without_port.as_str() == reg_without_port.as_str()
}

/// Checks a redirect URI an operator registers: absolute, no fragment
/// (RFC 6749 §3.1.2), https, or http only on a loopback address
/// (RFC 8252 §7.3), or an app's private-use scheme (RFC 8252 §7.1).
pub fn check_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = Url::parse(uri).map_err(|e| format!("{uri:?} is not an absolute URI: {e}"))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(format!("{uri:?} has a fragment (RFC 6749 §3.1.2)"));
    }
    if uri.len() > 512 || uri.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{uri:?} is too long or holds spaces"));
    }
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            _ => Err(format!(
                "{uri:?}: plain http only for 127.0.0.1 or [::1] (RFC 8252 §7.3)"
            )),
        },
        // RFC 8252 §7.1: private-use schemes are reverse domain names.
        scheme if scheme.contains('.') => Ok(()),
        scheme => Err(format!(
            "{uri:?}: scheme {scheme:?} is neither https nor a reverse domain name (RFC 8252 §7.1)"
        )),
    }
}

/// Checks an authorization request against its app (`None`: no app of
/// that id). The order matters: until the app and redirect URI are known
/// good, a refusal is a page; after, it goes to the app.
pub fn validate(
    req: &AuthorizeRequest,
    client: Option<Client>,
) -> Result<ValidRequest, RequestError> {
    if req.client_id.is_none() {
        return Err(RequestError::Page(PageProblem::MissingClient));
    }
    let client = client.ok_or(RequestError::Page(PageProblem::UnknownClient))?;
    let registered: Vec<&str> = client.redirect_uri_list().collect();
    let redirect_uri = match (&req.redirect_uri, registered.as_slice()) {
        (Some(asked), _) if registered.iter().any(|r| redirect_uri_matches(r, asked)) => {
            asked.clone()
        }
        // RFC 6749 §3.1.2.3: without one named, the only registered one.
        (None, [only]) => (*only).to_string(),
        _ => return Err(RequestError::Page(PageProblem::BadRedirectUri)),
    };
    let state = req
        .state
        .as_ref()
        .map(|s| s.chars().take(MAX_ECHO_LEN).collect::<String>());
    let reply = Reply {
        redirect_uri,
        state,
    };
    let refuse = |error: &'static str, description: &str| {
        RequestError::Reply(ReplyError {
            reply: reply.clone(),
            error,
            description: description.to_string(),
        })
    };
    // OpenID Connect Core §6: request objects are optional to support.
    if req.request.is_some() {
        return Err(refuse(
            "request_not_supported",
            "linkd takes no request objects",
        ));
    }
    if req.request_uri.is_some() {
        return Err(refuse(
            "request_uri_not_supported",
            "linkd takes no request objects",
        ));
    }
    match req.response_type.as_deref() {
        None => {
            return Err(refuse(
                "invalid_request",
                "the response_type parameter is missing",
            ));
        }
        Some("code") => {}
        Some(_) => {
            return Err(refuse(
                "unsupported_response_type",
                "linkd supports only response_type=code",
            ));
        }
    }
    if !client.code_flow_enabled {
        return Err(refuse(
            "unauthorized_client",
            "this app may not use the authorization code grant",
        ));
    }
    // RFC 7636 §4.3 and RFC 9700 §2.1.1: S256 only, and required of
    // public apps (they cannot keep a secret that would protect the code).
    let code_challenge = match (
        req.code_challenge.as_deref(),
        req.code_challenge_method.as_deref(),
    ) {
        (Some(c), Some("S256")) => {
            if c.len() != 43
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(refuse(
                    "invalid_request",
                    "code_challenge must be the base64url SHA-256 of the verifier (43 characters)",
                ));
            }
            Some(c.to_string())
        }
        (Some(_), None | Some("plain")) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256; plain is not accepted",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(refuse(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        (None, Some(_)) => {
            return Err(refuse("invalid_request", "code_challenge is missing"));
        }
        (None, None) if !client.is_confidential() => {
            return Err(refuse(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (None, None) => None,
    };
    let mut prompt = Prompt::default();
    if let Some(p) = &req.prompt {
        for value in p.split(' ').filter(|v| !v.is_empty()) {
            match value {
                "none" => prompt.none = true,
                "login" => prompt.login = true,
                // select_account: the confirmation page offers to switch.
                "consent" | "select_account" => prompt.consent = true,
                _ => return Err(refuse("invalid_request", "prompt holds an unknown value")),
            }
        }
        // OpenID Connect Core §3.1.2.1: none goes with no other value.
        if prompt.none && (prompt.login || prompt.consent) {
            return Err(refuse(
                "invalid_request",
                "prompt=none cannot be combined with other values",
            ));
        }
    }
    let max_age = match &req.max_age {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Some(n),
            _ => {
                return Err(refuse(
                    "invalid_request",
                    "max_age must be a number of seconds",
                ));
            }
        },
    };
    let scope = match resolve_scope(&client, req.scope.as_deref()) {
        Ok(s) => s,
        Err(why) => return Err(refuse("invalid_scope", &why)),
    };
    let mut sorted: Vec<&str> = scope.split(' ').filter(|s| !s.is_empty()).collect();
    sorted.sort_unstable();
    let scope = sorted.join(" ");
    if req.nonce.as_ref().is_some_and(|n| n.len() > MAX_ECHO_LEN) {
        return Err(refuse("invalid_request", "the nonce is too long"));
    }
    Ok(ValidRequest {
        named_redirect_uri: req.redirect_uri.clone(),
        reply,
        scope,
        nonce: req.nonce.clone(),
        code_challenge,
        prompt,
        max_age,
        login_hint: req.login_hint.clone(),
        client,
    })
}

/// Whether the person must sign in again first: `prompt=login`, or a
/// sign-in older than `max_age` (OpenID Connect Core §3.1.2.1).
pub fn needs_fresh_sign_in(request: &ValidRequest, signed_in_at: i64, now: i64) -> bool {
    request.prompt.login || request.max_age.is_some_and(|age| now - signed_in_at > age)
}

/// Issues a code for an approved request, notes the approval in the
/// person's activity and sends the "a new device was linked" notice,
/// written with the code (`link_notice`), and answers where to send the
/// browser.
pub async fn issue_code(
    ctx: &Ctx<'_>,
    request: &ValidRequest,
    account: &Account,
    lang: Lang,
    auth_time: i64,
    ip: &str,
) -> Result<String, StoreError> {
    let (store, now) = (ctx.store, ctx.now);
    let code = random_secret(32);
    let code_hash = secret_hash(&code);
    let record = link_notice::approval_record(
        ctx,
        &link_notice::Approval {
            account,
            lang,
            client_id: &request.client.client_id,
            app: &request.client.name,
            device_name: None,
            requested_from: ip,
            approved_from: ip,
            grant: GrantRef::AuthorizationCode(&code_hash),
        },
    );
    store
        .insert_authorization_code_recorded(
            &AuthorizationCode {
                code_hash: code_hash.clone(),
                client_id: request.client.client_id.clone(),
                account_id: account.id.clone(),
                redirect_uri: request.named_redirect_uri.clone(),
                scope: request.scope.clone(),
                nonce: request.nonce.clone(),
                code_challenge: request.code_challenge.clone(),
                auth_time,
                ip: ip.to_string(),
                created_at: now,
                expires_at: now + CODE_LIFETIME_SECS,
                redeemed_at: None,
                device_id: None,
            },
            &record,
        )
        .await?;
    if !record.outbox.is_empty() {
        ctx.outbox.wake();
    }
    crate::telemetry::authorization("approved");
    Ok(request
        .reply
        .location(&ctx.config.issuer(), &[("code", code.as_str())]))
}

/// How redeeming a code ends at the token endpoint.
#[derive(Debug)]
pub enum CodeGrantOutcome {
    Tokens(Box<TokenSet>),
    /// RFC 6749 §5.2 invalid_grant, with the reason.
    InvalidGrant(&'static str),
}

/// What the app presents with the code (RFC 6749 §4.1.3, RFC 7636 §4.5).
pub struct CodeGrant<'a> {
    pub code: &'a str,
    pub redirect_uri: Option<&'a str>,
    pub code_verifier: Option<&'a str>,
    /// The thumbprint of the request's DPoP key (RFC 9449 §5), which the
    /// device and its tokens are bound to.
    pub dpop_jkt: Option<&'a str>,
}

/// Why the domain declined a code it could redeem.
enum Decline {
    Reason(&'static str),
    Signing(jsonwebtoken::errors::Error),
}

/// Redeems a code for tokens. The store decides on the row it redeems;
/// a code used a second time revokes what its first use issued
/// (RFC 6749 §4.1.2: the code is compromised).
pub async fn redeem(
    ctx: &Ctx<'_>,
    client: &Client,
    grant: &CodeGrant<'_>,
) -> Result<CodeGrantOutcome, PollError> {
    use CodeGrantOutcome::InvalidGrant;
    let (store, now) = (ctx.store, ctx.now);
    if !client.code_flow_enabled {
        return Ok(InvalidGrant(
            "this app may not use the authorization code grant",
        ));
    }
    if grant.code.len() > 256 {
        return Ok(InvalidGrant("the authorization code is not known"));
    }
    let code_hash = secret_hash(grant.code);
    let mut minted = None;
    let mut declined = None;
    let outcome = store
        .redeem_authorization_code(&code_hash, &client.client_id, now, &mut |code, account| {
            match redemption(ctx, client, code, account, grant) {
                Ok((redemption, tokens)) => {
                    minted = Some(tokens);
                    Some(redemption)
                }
                Err(why) => {
                    declined = Some(why);
                    None
                }
            }
        })
        .await?;
    match outcome {
        CodeRedeemOutcome::Redeemed => match minted {
            Some(tokens) => {
                ctx.outbox.wake();
                crate::telemetry::authorization("redeemed");
                Ok(CodeGrantOutcome::Tokens(Box::new(tokens)))
            }
            None => Err(PollError::Store(StoreError::Corrupt(
                "redeemed without tokens".into(),
            ))),
        },
        CodeRedeemOutcome::Declined => match declined {
            Some(Decline::Signing(e)) => Err(PollError::Signing(e)),
            Some(Decline::Reason(why)) => Ok(InvalidGrant(why)),
            None => Ok(InvalidGrant("the authorization code is not valid")),
        },
        CodeRedeemOutcome::NotRedeemable(found) => Ok(match found {
            // RFC 6749 §5.2: a code issued to another client is invalid_grant,
            // and stays usable by its own app.
            Some(code) if code.client_id != client.client_id => {
                InvalidGrant("the authorization code is not known")
            }
            None => InvalidGrant("the authorization code is not known"),
            Some(code) if code.redeemed_at.is_some() => {
                if let Some(device_id) = &code.device_id
                    && let Some(device) = store.get_linked_device(device_id).await?
                    && store
                        .revoke_linked_device(
                            device_id,
                            now,
                            &[Event::device_unlinked(
                                &device,
                                UnlinkReason::AuthorizationCodeReuse,
                                &code.ip,
                                now,
                            )
                            .to_outbox()],
                        )
                        .await?
                {
                    ctx.outbox.wake();
                    tracing::warn!(
                        client_id = %client.client_id,
                        "an authorization code was used twice: its tokens are revoked"
                    );
                    store
                        .insert_activity(&Activity {
                            account_id: code.account_id.clone(),
                            kind: ActivityKind::RefreshReuse,
                            client_id: client.client_id.clone(),
                            app_name: client.name.clone(),
                            device: Some(client.name.clone()),
                            ip: code.ip.clone(),
                            at: now,
                        })
                        .await?;
                }
                InvalidGrant("the authorization code has already been used")
            }
            Some(_) => InvalidGrant("the authorization code has expired"),
        }),
    }
}

/// What redeeming `code` writes and hands out, once the request matches
/// what the code is bound to.
fn redemption(
    ctx: &Ctx<'_>,
    client: &Client,
    code: &AuthorizationCode,
    account: Option<&Account>,
    grant: &CodeGrant<'_>,
) -> Result<(Redemption, TokenSet), Decline> {
    let (config, now) = (ctx.config, ctx.now);
    // RFC 6749 §4.1.3: the same redirect_uri as the authorization request,
    // if it named one.
    let redirect_ok = match (&code.redirect_uri, grant.redirect_uri) {
        (Some(bound), Some(given)) => bound == given,
        (Some(_), None) => false,
        (None, None) => true,
        (None, Some(given)) => {
            let mut registered = client.redirect_uri_list();
            registered.next() == Some(given) && registered.next().is_none()
        }
    };
    if !redirect_ok {
        return Err(Decline::Reason(
            "redirect_uri does not match the authorization request",
        ));
    }
    // RFC 7636 §4.6; RFC 9700 §2.1.1: a verifier without a challenge is
    // refused too (PKCE downgrade).
    match (&code.code_challenge, grant.code_verifier) {
        (Some(challenge), Some(verifier)) => {
            let well_formed = (43..=128).contains(&verifier.len())
                && verifier
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
            if !well_formed || secret_hash(verifier) != *challenge {
                return Err(Decline::Reason("the code_verifier does not match"));
            }
        }
        (Some(_), None) => return Err(Decline::Reason("the code_verifier is missing")),
        (None, Some(_)) => {
            return Err(Decline::Reason(
                "a code_verifier was sent for a code issued without code_challenge",
            ));
        }
        (None, None) => {}
    }
    let Some(account) = account.filter(|a| !a.disabled) else {
        return Err(Decline::Reason("the account is not active"));
    };
    // Fixed at approval: the notice's "This wasn't me" link names it.
    let id = link_notice::device_id(GrantRef::AuthorizationCode(&code.code_hash));
    let refresh = (client.refresh_enabled && scopes::contains(&code.scope, "offline_access"))
        .then(|| crate::tokens::refresh::first_token(&id, config, now));
    let device = LinkedDevice {
        id,
        account_id: account.id.clone(),
        client_id: client.client_id.clone(),
        app_name: client.name.clone(),
        label: client.name.clone(),
        scope: code.scope.clone(),
        linked_at: now,
        linked_ip: code.ip.clone(),
        last_refresh_at: None,
        revoked_at: None,
        dpop_jkt: grant.dpop_jkt.map(str::to_string),
        kind: crate::store::DeviceKind::Browser,
        refresh: refresh.as_ref().map(|(_, state)| state.clone()),
    };
    let tokens = mint(
        &ctx.keys,
        config,
        now,
        &Grant {
            account,
            device: &device,
            scope: &code.scope,
            auth_time: code.auth_time,
            nonce: code.nonce.as_deref(),
            dpop_jkt: grant.dpop_jkt,
        },
        refresh.map(|(token, _)| token),
    )
    .map_err(Decline::Signing)?;
    Ok((
        Redemption {
            outbox: vec![Event::device_linked(&device, now).to_outbox()],
            device,
        },
        tokens,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_take_any_port_and_nothing_else() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_uri_matches(reg, reg));
        assert!(redirect_uri_matches(reg, "http://127.0.0.1:53121/callback"));
        assert!(redirect_uri_matches(
            "http://[::1]/cb",
            "http://[::1]:4000/cb"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:53121/callback/x"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:53121/callback#x"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://127.0.0.1:53121/callback?x=1"
        ));
        assert!(!redirect_uri_matches(
            reg,
            "http://localhost:53121/callback"
        ));
        assert!(!redirect_uri_matches(reg, "http://[::1]:53121/callback"));
        // Not loopback: exactly as registered, port included.
        let web = "https://app.example/cb";
        assert!(!redirect_uri_matches(web, "https://app.example:8443/cb"));
        assert!(!redirect_uri_matches(web, "https://app.example/cb/"));
        assert!(!redirect_uri_matches(web, "https://app.example/c"));
        assert!(!redirect_uri_matches(web, "https://APP.example/cb"));
    }

    #[test]
    fn registered_redirect_uris_are_checked() {
        assert!(check_redirect_uri("https://app.example/cb").is_ok());
        assert!(check_redirect_uri("http://127.0.0.1/cb").is_ok());
        assert!(check_redirect_uri("http://[::1]/cb").is_ok());
        assert!(check_redirect_uri("com.example.app:/oauth").is_ok());
        assert!(check_redirect_uri("http://app.example/cb").is_err());
        assert!(check_redirect_uri("https://app.example/cb#x").is_err());
        assert!(check_redirect_uri("/cb").is_err());
        assert!(check_redirect_uri("javascript:alert(1)").is_err());
    }

    #[test]
    fn replies_carry_state_and_issuer() {
        let reply = Reply {
            redirect_uri: "https://app.example/cb?x=1".into(),
            state: Some("a b&c".into()),
        };
        assert_eq!(
            reply.location("https://linkd.example", &[("code", "C")]),
            "https://app.example/cb?x=1&code=C&state=a+b%26c&iss=https%3A%2F%2Flinkd.example"
        );
    }
}
