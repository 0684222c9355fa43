-- Refresh tokens as one row of state per device (docs/scaling.md, "Where
-- it breaks first" 1). Until now every refresh inserted a `refresh_tokens`
-- row and kept the old one, marked rotated, for as long as its family
-- could live (up to ~395 days), so that a rotated token presented again
-- was recognised (RFC 9700 §4.14.2): hundreds of rows per device.
--
-- The state lives on the device's own row instead: the refresh already
-- wrote that row (`last_refresh_at`), unlinking writes it, and the token
-- family is the device, so a refresh is one conditional update of one row
-- (`WHERE id = ? AND refresh_generation = ?`) and the state is found, and
-- partitioned, by the device's key. A token names its device and
-- generation (`lr1.` + base64url; `tokens/refresh.rs`); only hashes are
-- kept, as before.
--
-- `refresh_generation`: the current token's generation, counted from 1;
--     NULL while the device has no token in this form (its app gave it
--     none, or it still holds one from `refresh_tokens`).
-- `refresh_hash`: SHA-256 of the current token.
-- `refresh_previous_hash`: SHA-256 of the token of the generation before
--     it; presented again, that token is reuse and unlinks the device.
-- `refresh_expires_at`: when the current token expires unless used (the
--     idle lifetime). Its scope is the device's `scope`: a refresh token
--     keeps the grant's scope (RFC 6749 §6).
ALTER TABLE linked_devices ADD COLUMN refresh_generation INTEGER;
ALTER TABLE linked_devices ADD COLUMN refresh_hash TEXT;
ALTER TABLE linked_devices ADD COLUMN refresh_previous_hash TEXT;
ALTER TABLE linked_devices ADD COLUMN refresh_expires_at INTEGER;

-- `refresh_tokens` now holds only tokens issued before this migration.
-- linkd reads it, marks a token rotated when it trades it for the
-- device's first token of the new form, and purges it; it writes nothing
-- else there. The table can be dropped once `--refresh-absolute-lifetime`
-- (365 days by default) has passed since this migration ran: every device
-- linked before it has then reached its absolute limit, and the purge has
-- emptied the table an idle lifetime later (`SELECT COUNT(*) FROM
-- refresh_tokens` says 0).
