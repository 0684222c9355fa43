"""Runs the OAuth 2.0 device flow (RFC 8628) against a linkd server with
authlib, a library linkd's authors did not write. Driven by
crates/linkd/tests/api/clients.rs; scripts/test installs authlib into
.venv here from requirements.txt.

Usage: .venv/bin/python device.py <issuer> <client_id>

stdout gets two JSON lines: first {"user_code", "verification_uri",
"interval"} once the code is issued, then {"claims", "token_type", "scope",
"polls", "refreshed", "access_token"} once a person approved it and the
tokens were refreshed. On any failure the error goes to stderr and the exit
status is 1.
"""

import json
import sys
import time

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey, jwt

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPE = "openid email offline_access"


def line(value):
    print(json.dumps(value), flush=True)


def main(issuer, client_id):
    # A public client: client_id in the body, no secret (RFC 6749 §2.3).
    session = OAuth2Session(client_id, scope=SCOPE, token_endpoint_auth_method="none")
    # Requests that carry no access token: the session would otherwise
    # insist on one.
    metadata = session.get(
        f"{issuer}/.well-known/openid-configuration", withhold_token=True
    ).json()

    issued = session.post(
        metadata["device_authorization_endpoint"],
        data={"client_id": client_id, "scope": SCOPE},
        withhold_token=True,
    )
    issued.raise_for_status()
    issued = issued.json()
    interval = issued.get("interval", 5)
    line(
        {
            "user_code": issued["user_code"],
            "verification_uri": issued["verification_uri"],
            "interval": interval,
        }
    )

    # The first two polls go out back to back, as an impatient device's
    # would: the second one hears slow_down, and from then on this waits
    # five more seconds between polls (RFC 8628 §3.5).
    polls = {"authorization_pending": 0, "slow_down": 0}
    wait = 0
    while True:
        time.sleep(wait)
        try:
            token = session.fetch_token(
                metadata["token_endpoint"],
                grant_type=DEVICE_CODE_GRANT,
                device_code=issued["device_code"],
            )
            break
        except OAuthError as error:
            if error.error not in polls:
                raise
            polls[error.error] += 1
            if error.error == "slow_down":
                interval += 5
            wait = interval if sum(polls.values()) > 1 else 0

    # The ID token (OpenID Connect Core §3.1.3.7): signature against the
    # JWKS, iss, aud, exp and iat.
    keys = JsonWebKey.import_key_set(session.get(metadata["jwks_uri"], withhold_token=True).json())
    claims = jwt.decode(
        token["id_token"],
        keys,
        claims_options={
            "iss": {"essential": True, "value": issuer},
            "aud": {"essential": True, "value": client_id},
            "exp": {"essential": True},
            "iat": {"essential": True},
        },
    )
    claims.validate()

    refreshed = session.refresh_token(
        metadata["token_endpoint"], refresh_token=token["refresh_token"]
    )
    line(
        {
            "claims": dict(claims),
            "token_type": token["token_type"],
            "scope": token.get("scope"),
            "polls": polls,
            "refreshed": refreshed["access_token"] != token["access_token"]
            and refreshed["refresh_token"] != token["refresh_token"],
            "access_token": refreshed["access_token"],
        }
    )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: device.py <issuer> <client_id>", file=sys.stderr)
        sys.exit(2)
    try:
        main(*sys.argv[1:])
    except Exception as error:  # noqa: BLE001 - everything goes to the test
        print(f"{type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
