// Runs the OAuth 2.0 device flow (RFC 8628) against a linkd server with
// openid-client, a library linkd's authors did not write. Driven by
// crates/linkd/tests/api/clients.rs; run `npm ci` here first.
//
// Usage: node device.mjs <issuer> <client_id>
//
// stdout gets two JSON lines: first {"user_code", "verification_uri", ...}
// once the code is issued, then {"claims", "token_type", "scope",
// "refresh_token"} once a person approved it. On any failure the error goes
// to stderr and the exit status is 1.

import * as client from 'openid-client'

const [issuer, clientId] = process.argv.slice(2)
if (!issuer || !clientId) {
  console.error('usage: node device.mjs <issuer> <client_id>')
  process.exit(2)
}

function line(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`)
}

// Everything the library knows about a failure: its code, the server's
// OAuth error and status when there was a response, and the cause chain.
function describe(error) {
  if (!(error instanceof Error)) return JSON.stringify(error)
  const parts = [`${error.name}: ${error.message}`]
  for (const key of ['code', 'error', 'error_description', 'status']) {
    if (error[key] !== undefined) parts.push(`${key}=${JSON.stringify(error[key])}`)
  }
  if (error.cause !== undefined) parts.push(`cause: ${describe(error.cause)}`)
  return parts.join('\n  ')
}

try {
  // A public client: client_id in the body, no secret. The test server
  // speaks plain HTTP on 127.0.0.1, which the library refuses by default.
  const config = await client.discovery(new URL(issuer), clientId, undefined, client.None(), {
    execute: [client.allowInsecureRequests],
  })

  const authorization = await client.initiateDeviceAuthorization(config, {
    scope: 'openid email offline_access',
  })
  line({
    user_code: authorization.user_code,
    verification_uri: authorization.verification_uri,
    verification_uri_complete: authorization.verification_uri_complete,
    expires_in: authorization.expires_in,
    interval: authorization.interval,
  })

  // Validates the ID token: RS256 signature against the JWKS, iss, aud,
  // exp and iat.
  const tokens = await client.pollDeviceAuthorizationGrant(config, authorization)
  line({
    claims: tokens.claims() ?? null,
    token_type: tokens.token_type,
    scope: tokens.scope ?? null,
    refresh_token: typeof tokens.refresh_token === 'string' && tokens.refresh_token.length > 0,
  })
} catch (error) {
  console.error(describe(error))
  process.exitCode = 1
}
