-- DPoP (RFC 9449): tokens bound to a key the device holds; see the SQLite
-- migration for the columns' meaning.
ALTER TABLE clients ADD COLUMN require_dpop BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE linked_devices ADD COLUMN dpop_jkt TEXT;

CREATE TABLE dpop_proofs (
    id         TEXT PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);
