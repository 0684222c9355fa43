// Runs MSAL for Node (@azure/msal-node), a library linkd's authors did not
// write, against a linkd server as a non-Azure OpenID provider: MSAL reads
// linkd's discovery document itself (no authorityMetadata). Driven by
// crates/linkd/tests/api/clients.rs; run `npm ci` here first.
//
// Usage: node msal.mjs <issuer> <client_id> <redirect_uri>
//
// MSAL refuses an authority without https, so the issuer is linkd
// terminating TLS itself; NODE_EXTRA_CA_CERTS names its certificate.
//
// stdout gets JSON lines:
// 1. {"user_code"} from MSAL's device code grant, for the test to approve
//    (MSAL posts to the token endpoint's address with /token replaced by
//    /devicecode, Azure AD's layout, which linkd also serves), then
//    {"device", "claims"} once MSAL polled the tokens and validated the
//    ID token.
// 2. {"authorization_url"}: the authorization code flow with PKCE; the
//    test then writes the address linkd redirected the browser to.
// 3. {"claims", "username", "local_account_id", "scopes", "access_token"}
//    once MSAL redeemed the code and validated the ID token.
// 4. {"refreshed", "access_token"} after acquireTokenSilent with
//    forceRefresh, a refresh_token grant (RFC 6749 §6).
// On any other failure the error goes to stderr and the exit status is 1.

import { createInterface } from 'node:readline'
import { CryptoProvider, LogLevel, PublicClientApplication } from '@azure/msal-node'

const [issuer, clientId, redirectUri] = process.argv.slice(2)
if (!issuer || !clientId || !redirectUri) {
  console.error('usage: node msal.mjs <issuer> <client_id> <redirect_uri>')
  process.exit(2)
}

function line(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

function describe(error) {
  if (!(error instanceof Error)) return JSON.stringify(error)
  const parts = [`${error.name}: ${error.message}`]
  for (const key of ['errorCode', 'subError', 'status']) {
    if (error[key] !== undefined && error[key] !== '') parts.push(`${key}=${JSON.stringify(error[key])}`)
  }
  if (error.cause !== undefined) parts.push(`cause: ${describe(error.cause)}`)
  return parts.join('\n  ')
}

const input = createInterface({ input: process.stdin })[Symbol.asyncIterator]()

// MSAL adds openid, profile and offline_access to every request itself.
const scopes = ['email']

try {
  const pca = new PublicClientApplication({
    auth: {
      clientId,
      authority: issuer,
      knownAuthorities: [new URL(issuer).host],
    },
    system: {
      // Not Azure AD: discovery at the issuer's own
      // /.well-known/openid-configuration (OpenID Connect Discovery §4).
      protocolMode: 'OIDC',
      // MSAL's own account of what it did, shown when the test fails.
      loggerOptions: {
        logLevel: LogLevel.Verbose,
        loggerCallback: (_level, message) => console.error(message),
      },
    },
  })

  const device = await pca.acquireTokenByDeviceCode({
    scopes,
    timeout: 30,
    deviceCodeCallback: (response) => line({ user_code: response.userCode }),
  })
  line({ device: device.accessToken, claims: device.idTokenClaims })

  const crypto = new CryptoProvider()
  const { verifier, challenge } = await crypto.generatePkceCodes()
  const state = crypto.createNewGuid()
  const authorizationUrl = await pca.getAuthCodeUrl({
    scopes,
    redirectUri,
    codeChallenge: challenge,
    codeChallengeMethod: 'S256',
    state,
  })
  line({ authorization_url: authorizationUrl })

  const { value: back } = await input.next()
  const params = new URL(back).searchParams
  // MSAL compares the returned state with the one it sent.
  const tokens = await pca.acquireTokenByCode(
    { code: params.get('code'), scopes, redirectUri, codeVerifier: verifier, state },
    { code: params.get('code'), state: params.get('state') },
  )
  line({
    claims: tokens.idTokenClaims,
    username: tokens.account?.username ?? null,
    local_account_id: tokens.account?.localAccountId ?? null,
    scopes: tokens.scopes,
    access_token: tokens.accessToken,
  })

  const refreshed = await pca.acquireTokenSilent({
    account: tokens.account,
    scopes,
    forceRefresh: true,
  })
  line({
    refreshed: refreshed.accessToken !== tokens.accessToken,
    access_token: refreshed.accessToken,
  })
  process.exit(0)
} catch (error) {
  console.error(describe(error))
  process.exit(1)
}
