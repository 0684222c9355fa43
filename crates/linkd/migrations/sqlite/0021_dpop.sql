-- DPoP (RFC 9449): tokens bound to a key the device holds.
--
-- `require_dpop`: the app's token requests must carry a DPoP proof (§5),
-- so its tokens are always bound. `dpop_jkt`: the SHA-256 thumbprint
-- (RFC 7638) of the key a device proved at linking; its refresh tokens are
-- bound to it (§5), and its access tokens carry it as `cnf.jkt` (§6.1).
ALTER TABLE clients ADD COLUMN require_dpop INTEGER NOT NULL DEFAULT 0;
ALTER TABLE linked_devices ADD COLUMN dpop_jkt TEXT;

-- Proofs seen, by a hash of (key thumbprint, jti), for as long as their
-- `iat` is acceptable (§11.1): a second use of one is a replay, on any
-- instance. Purged after `expires_at`.
CREATE TABLE dpop_proofs (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);
