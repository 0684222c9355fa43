-- A compromised signing key is revoked, not deleted: its id stays known
-- so it is never published or trusted again, and the other keys' roles
-- are still computed from when each started signing (tokens.rs).
ALTER TABLE signing_keys ADD COLUMN revoked_at INTEGER;
