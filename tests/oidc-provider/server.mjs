// A real OpenID provider (oidc-provider, npm) for linkd's upstream sign-in
// tests, crates/linkd/tests/api/upstream.rs. Not part of linkd.
//
// Usage: node server.mjs '<clients JSON>'
//
// Listens on 127.0.0.1 at a free port and prints {"issuer": "..."} on
// stdout once it does. Anyone may sign in with any login and password
// (oidc-provider's development forms): the login is the person's subject
// and email; a login that ends in "#unverified" gets `email_verified:
// false` (the part before it is the email).
//
// POST /forge/<kind> makes the next token response carry a forged ID
// token, so the test can check that linkd refuses it: `bad_signature`
// (signed with a key the JWKS does not have), `wrong_audience`,
// `wrong_nonce`, `expired`, `wrong_issuer`. Everything else is
// oidc-provider as its authors ship it.

import { createServer } from 'node:http'
import { createHash } from 'node:crypto'
import * as jose from 'jose'
import Provider from 'oidc-provider'

const clients = JSON.parse(process.argv[2] ?? '[]')

const { privateKey } = await jose.generateKeyPair('RS256', { extractable: true })
const signing = { ...(await jose.exportJWK(privateKey)), kid: 'test-key', alg: 'RS256', use: 'sig' }
// The key a forger has: not in the provider's JWKS.
const { privateKey: forgerKey } = await jose.generateKeyPair('RS256')

let forgeNext = null

function account(login) {
  const unverified = login.endsWith('#unverified')
  const email = unverified ? login.slice(0, -'#unverified'.length) : login
  return {
    accountId: login,
    async claims() {
      return { sub: login, email, email_verified: !unverified }
    },
  }
}

const server = createServer()
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signing] },
    cookies: { keys: [createHash('sha256').update(issuer).digest('hex')] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    // The email in the ID token itself, as Google, Entra ID and Keycloak
    // put it, not only at the userinfo endpoint.
    conformIdTokenClaims: false,
    findAccount: (ctx, id) => account(id),
    // Quiet: a notice on stdout at the first sign-in otherwise.
    ttl: { Interaction: 3600, Session: 86400, Grant: 86400 },
  })
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.path === '/token' && forgeNext && typeof ctx.body?.id_token === 'string') {
      const kind = forgeNext
      forgeNext = null
      const claims = jose.decodeJwt(ctx.body.id_token)
      const header = jose.decodeProtectedHeader(ctx.body.id_token)
      let key = privateKey
      const now = Math.floor(Date.now() / 1000)
      switch (kind) {
        case 'bad_signature': key = forgerKey; break
        case 'wrong_audience': claims.aud = 'another-app'; break
        case 'wrong_nonce': claims.nonce = 'not-the-nonce'; break
        case 'wrong_issuer': claims.iss = 'http://127.0.0.1:1'; break
        case 'expired': claims.iat = now - 7200; claims.exp = now - 3600; break
        default: throw new Error(`unknown forgery ${kind}`)
      }
      ctx.body = { ...ctx.body, id_token: await new jose.SignJWT(claims).setProtectedHeader(header).sign(key) }
    }
  })
  const callback = provider.callback()
  server.on('request', (req, res) => {
    const forge = req.method === 'POST' && req.url.match(/^\/forge\/([a-z_]+)$/)
    if (forge) {
      forgeNext = forge[1]
      res.writeHead(204).end()
    } else {
      callback(req, res)
    }
  })
  process.stdout.write(`${JSON.stringify({ issuer })}\n`)
})
