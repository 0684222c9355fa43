// A real OpenID provider (oidc-provider, npm) for linkd's upstream sign-in
// tests, crates/linkd/tests/api/upstream.rs and the browser suite's
// crates/linkd/tests/browser/upstream.rs. Not part of linkd.
//
// Usage: node server.mjs '<clients JSON>' ['<options JSON>']
//
// Listens on 127.0.0.1 at a free port and prints {"issuer": "..."} on
// stdout once it does. Anyone may sign in with any login and password
// (the plain forms below): the login is the person's subject and email;
// a login that ends in "#unverified" gets `email_verified: false` (the
// part before it is the email).
//
// The sign-in and consent pages are this file's own, through
// oidc-provider's interaction API: its development pages load web fonts
// from another site, which the browser suite refuses.
//
// Options: {"authorization_host": "localhost"} makes discovery name the
// authorization endpoint on that host (same port), as providers whose
// login pages live apart from their issuer do.
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
const options = JSON.parse(process.argv[3] ?? '{}')

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
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Quiet: a notice on stdout at the first sign-in otherwise.
    ttl: { Interaction: 3600, Session: 86400, Grant: 86400 },
  })
  provider.use(async (ctx, next) => {
    await next()
    if (ctx.path === '/.well-known/openid-configuration' && options.authorization_host && ctx.body) {
      const moved = new URL(ctx.body.authorization_endpoint)
      moved.hostname = options.authorization_host
      ctx.body = { ...ctx.body, authorization_endpoint: moved.href }
    }
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
    const interaction = req.url.match(/^\/interaction\/([A-Za-z0-9_-]+)$/)
    if (forge) {
      forgeNext = forge[1]
      res.writeHead(204).end()
    } else if (interaction) {
      interact(provider, req, res).catch((e) => {
        res.writeHead(400, { 'content-type': 'text/plain' }).end(String(e))
      })
    } else {
      callback(req, res)
    }
  })
  process.stdout.write(`${JSON.stringify({ issuer })}\n`)
})

// One page of the provider's own: plain HTML, nothing from elsewhere (no
// favicon request either).
function page(res, title, body) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' })
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,"><title>${title}</title></head>
<body><main><h1>${title}</h1>${body}</main></body></html>`)
}

async function formBody(req) {
  let text = ''
  for await (const chunk of req) text += chunk
  return new URLSearchParams(text)
}

const escape = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

// GET shows the step oidc-provider asks for (login, then consent); POST
// answers it with interactionFinished, which redirects back into the
// authorization flow.
async function interact(provider, req, res) {
  const details = await provider.interactionDetails(req, res)
  const { uid, prompt, params, session, grantId } = details
  const action = `/interaction/${uid}`
  if (req.method === 'GET') {
    if (prompt.name === 'login') {
      page(res, 'Sign in to the test provider', `<form method="post" action="${action}">
<input type="hidden" name="prompt" value="login">
<p><label for="login">Email</label> <input id="login" name="login" type="text" autocomplete="username" required></p>
<p><label for="password">Password</label> <input id="password" name="password" type="password" autocomplete="current-password" required></p>
<p><button type="submit">Sign in</button></p></form>`)
    } else {
      page(res, `Share your email with ${escape(params.client_id)}?`, `<form method="post" action="${action}">
<input type="hidden" name="prompt" value="consent">
<p><button type="submit">Allow</button></p></form>`)
    }
    return
  }
  const form = await formBody(req)
  if (form.get('prompt') === 'login' && prompt.name === 'login') {
    await provider.interactionFinished(req, res, { login: { accountId: form.get('login') } },
      { mergeWithLastSubmission: false })
  } else if (form.get('prompt') === 'consent' && prompt.name === 'consent') {
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ accountId: session.accountId, clientId: params.client_id })
    if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '))
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims)
    await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } },
      { mergeWithLastSubmission: true })
  } else {
    throw new Error(`unexpected answer to ${prompt.name}`)
  }
}
