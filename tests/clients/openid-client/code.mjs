// Runs the authorization code flow with PKCE (RFC 6749 §4.1, RFC 7636,
// OpenID Connect Core §3.1) against a linkd server with openid-client, as
// an app with a browser would. Driven by crates/linkd/tests/api/clients.rs;
// run `npm ci` here first.
//
// Usage: node code.mjs <issuer> <client_id> <redirect_uri>
//
// stdout gets {"authorization_url"} first; the test then plays the person
// in the browser and writes the address linkd sent the browser back to as
// one line on stdin. stdout then gets {"claims", "token_type", "scope",
// "refresh_token", "access_token"} and, after the same code was presented
// a second time, {"reuse_error"}. On any failure the error goes to stderr and the exit
// status is 1.

import * as readline from 'node:readline'
import * as client from 'openid-client'

const [issuer, clientId, redirectUri] = process.argv.slice(2)
if (!issuer || !clientId || !redirectUri) {
  console.error('usage: node code.mjs <issuer> <client_id> <redirect_uri>')
  process.exit(2)
}

function line(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

function describe(error) {
  if (!(error instanceof Error)) return JSON.stringify(error)
  const parts = [`${error.name}: ${error.message}`]
  for (const key of ['code', 'error', 'error_description', 'status']) {
    if (error[key] !== undefined) parts.push(`${key}=${JSON.stringify(error[key])}`)
  }
  if (error.cause !== undefined) parts.push(`cause: ${describe(error.cause)}`)
  return parts.join('\n  ')
}

const input = readline.createInterface({ input: process.stdin })
const lines = input[Symbol.asyncIterator]()

try {
  // A public native app: client_id in the body, no secret; plain HTTP on
  // 127.0.0.1 is the test server's.
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  })

  const pkceCodeVerifier = client.randomPKCECodeVerifier()
  const state = client.randomState()
  const nonce = client.randomNonce()
  const url = client.buildAuthorizationUrl(config, {
    redirect_uri: redirectUri,
    scope: 'openid email offline_access',
    code_challenge: await client.calculatePKCECodeChallenge(pkceCodeVerifier),
    code_challenge_method: 'S256',
    state,
    nonce,
  })
  line({ authorization_url: url.href })

  const back = await lines.next()
  if (back.done) throw new Error('stdin ended before the redirect came back')
  const currentUrl = new URL(back.value.trim())

  // Checks state, the iss parameter (RFC 9207, which linkd's discovery
  // announces), then redeems the code with the verifier and validates the
  // ID token: signature against the JWKS, iss, aud, exp, iat and nonce.
  const tokens = await client.authorizationCodeGrant(config, currentUrl, {
    pkceCodeVerifier,
    expectedState: state,
    expectedNonce: nonce,
    idTokenExpected: true,
  })
  line({
    claims: tokens.claims() ?? null,
    token_type: tokens.token_type,
    scope: tokens.scope ?? null,
    refresh_token: typeof tokens.refresh_token === 'string' && tokens.refresh_token.length > 0,
    access_token: tokens.access_token,
  })

  // The same code again: linkd must refuse it (RFC 6749 §4.1.2).
  try {
    await client.authorizationCodeGrant(config, currentUrl, {
      pkceCodeVerifier,
      expectedState: state,
      expectedNonce: nonce,
    })
    line({ reuse_error: null })
  } catch (error) {
    line({ reuse_error: error.error ?? describe(error) })
  }
} catch (error) {
  console.error(describe(error))
  process.exitCode = 1
} finally {
  input.close()
}
