-- The background purge deletes by expiry; without these indexes each batch
-- would scan the whole table.
CREATE INDEX sessions_expiry ON sessions(expires_at);
CREATE INDEX refresh_tokens_expiry ON refresh_tokens(expires_at);
