-- "I didn't start this" (issue 22): reports of codes a person did not ask
-- for, and the requesting networks they blocked. Stored, not kept in
-- memory, so that a block holds across a restart and, on PostgreSQL,
-- across every instance.
CREATE TABLE link_reports (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- The requesting network: the device's address prefix (/24, /56).
    network      TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    -- The reporting browser's address.
    reporting_ip TEXT NOT NULL,
    -- True when it counts towards a block (within the account's allowance,
    -- and from another network than the device's).
    counted      BOOLEAN NOT NULL,
    at           BIGINT NOT NULL,
    -- When it stops counting; the purge job deletes it after that.
    expires_at   BIGINT NOT NULL
);
CREATE INDEX link_reports_network ON link_reports(network, at);
CREATE INDEX link_reports_account ON link_reports(account_id, at);
CREATE INDEX link_reports_expiry ON link_reports(expires_at);

-- One row per network that reports have named: the row every report on
-- that network updates first (so that reports on one network are counted
-- one after another), and the block, while `expires_at` is in the future.
CREATE TABLE network_blocks (
    network    TEXT PRIMARY KEY,
    -- The distinct accounts' reports that led to the last block.
    reports    BIGINT NOT NULL,
    blocked_at BIGINT NOT NULL,
    -- The end of the block; 0 for a network never blocked.
    expires_at BIGINT NOT NULL
);
CREATE INDEX network_blocks_expiry ON network_blocks(expires_at);
