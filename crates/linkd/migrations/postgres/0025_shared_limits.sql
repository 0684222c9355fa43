-- Security limits counted once for every instance sharing this database
-- (SECURITY.md, "Several instances"): one row per counter, taken and given
-- back by `linkd_tally` below in one round trip per request.
--
-- UNLOGGED: the counts are worth less than the write-ahead log they would
-- cost on every code entry and sign-in. A crash of PostgreSQL (or a fail-
-- over to a standby) empties the table, which forgets at most one window
-- of counts (ten minutes for code entry, an hour for sign-in).
CREATE UNLOGGED TABLE limit_counts (
    -- Which limit (`code_session`, `sign_in_network`, ...).
    name       TEXT NOT NULL,
    -- Whose count: a session, a network, an account, an app.
    key        TEXT NOT NULL,
    -- A second part of the key where a limit groups rows by `key` (the
    -- failing and known networks of an account); '' otherwise.
    sub        TEXT NOT NULL DEFAULT '',
    count      INTEGER NOT NULL,
    -- When the window started, or when the last failure was counted.
    since      BIGINT NOT NULL,
    -- When the row stops counting; the purge job deletes it after that.
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (name, key, sub)
);
CREATE INDEX limit_counts_expiry ON limit_counts(expires_at);

-- The wait before the next sign-in after `failures` failures with `free`
-- of them free: 1 s, 2 s, 4 s ... capped at 15 minutes. The same rule as
-- `limits::sign_in_delay` (which SQLite's one instance uses in memory).
CREATE FUNCTION linkd_backoff_delay(failures BIGINT, free BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN failures < free THEN 0
                ELSE LEAST(1::BIGINT << LEAST(failures - free, 10)::INTEGER, 900) END
$$;

-- Applies limit operations in order, as one transaction, and returns per
-- operation 0 (done) or the seconds to wait (refused). The rules (which
-- limits a request takes, in what order) live in linkd's `limits.rs`;
-- this function only makes each step atomic across instances: every row
-- it decides on is locked by the statement that changes it, so a burst
-- spread over any number of instances gets no more through than the
-- limit. A refused `take`, `reserve` or `admit` gives back what the
-- operations before it took and stops; a refused `try` only reports.
--
--   take / try  (a = max, b = window)   a slot in a fixed window; a = 0 is off
--   give        (b = when it was taken) gives a slot back to that window
--   reserve     (a = free, b = reset)   one failure in advance, with backoff
--   unreserve                           gives a reserved failure back
--   reset / forget                      deletes the row
--   admit       (a = cap, b = reset)    `sub` joins `key`'s failing set if it
--                                       is in it, is known (`name:known`)
--                                       or the set has room
--   know        (b = for how long)      remembers `sub` for `key`
CREATE FUNCTION linkd_tally(
    p_ops TEXT[], p_names TEXT[], p_keys TEXT[], p_subs TEXT[],
    p_a BIGINT[], p_b BIGINT[], p_now BIGINT
) RETURNS BIGINT[] LANGUAGE plpgsql AS $$
DECLARE
    n INTEGER := coalesce(cardinality(p_ops), 0);
    waits BIGINT[] := array_fill(0::BIGINT, ARRAY[n]);
    wait BIGINT;
    held INTEGER;
    i INTEGER;
    j INTEGER;
BEGIN
    FOR i IN 1 .. n LOOP
        wait := 0;
        CASE p_ops[i]
        WHEN 'take', 'try' THEN
            IF p_a[i] > 0 THEN
                INSERT INTO limit_counts AS c (name, key, sub, count, since, expires_at)
                VALUES (p_names[i], p_keys[i], p_subs[i], 1, p_now, p_now + p_b[i])
                ON CONFLICT (name, key, sub) DO UPDATE SET
                    count = CASE WHEN c.expires_at <= p_now THEN 1 ELSE c.count + 1 END,
                    since = CASE WHEN c.expires_at <= p_now THEN p_now ELSE c.since END,
                    expires_at = CASE WHEN c.expires_at <= p_now
                                      THEN p_now + p_b[i] ELSE c.expires_at END
                WHERE c.expires_at <= p_now OR c.count < p_a[i];
                IF NOT FOUND THEN
                    -- ON CONFLICT locked the full row: it is still full.
                    SELECT greatest(c.expires_at - p_now, 1) INTO wait FROM limit_counts c
                    WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i];
                END IF;
            END IF;
        WHEN 'give' THEN
            UPDATE limit_counts c SET count = c.count - 1
            WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i]
              AND c.since <= p_b[i] AND p_b[i] < c.expires_at AND c.count > 0;
        WHEN 'reserve' THEN
            INSERT INTO limit_counts AS c (name, key, sub, count, since, expires_at)
            VALUES (p_names[i], p_keys[i], p_subs[i], 1, p_now, p_now + p_b[i])
            ON CONFLICT (name, key, sub) DO UPDATE SET
                count = CASE WHEN c.expires_at <= p_now THEN 1 ELSE c.count + 1 END,
                since = p_now,
                expires_at = p_now + p_b[i]
            WHERE c.expires_at <= p_now OR c.count = 0
               OR p_now >= c.since + linkd_backoff_delay(c.count, p_a[i]);
            IF NOT FOUND THEN
                SELECT greatest(c.since + linkd_backoff_delay(c.count, p_a[i]) - p_now, 1)
                INTO wait FROM limit_counts c
                WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i];
            END IF;
        WHEN 'unreserve' THEN
            UPDATE limit_counts c SET count = c.count - 1
            WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i]
              AND c.count > 0;
        WHEN 'reset', 'forget' THEN
            DELETE FROM limit_counts c
            WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i];
        WHEN 'admit' THEN
            IF p_a[i] > 0 AND NOT EXISTS (
                SELECT 1 FROM limit_counts c
                WHERE c.name = p_names[i] || ':known' AND c.key = p_keys[i]
                  AND c.sub = p_subs[i] AND c.expires_at > p_now
            ) THEN
                -- Two instances admitting two new networks for one account
                -- must not both see room: one waits for the other here.
                PERFORM pg_advisory_xact_lock(hashtextextended(p_names[i] || ' ' || p_keys[i], 0));
                UPDATE limit_counts c SET since = p_now, expires_at = p_now + p_b[i]
                WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.sub = p_subs[i]
                  AND c.expires_at > p_now;
                IF NOT FOUND THEN
                    SELECT count(*), greatest(min(c.expires_at) - p_now, 1)
                    INTO held, wait FROM limit_counts c
                    WHERE c.name = p_names[i] AND c.key = p_keys[i] AND c.expires_at > p_now;
                    IF held < p_a[i] THEN
                        wait := 0;
                        INSERT INTO limit_counts AS c (name, key, sub, count, since, expires_at)
                        VALUES (p_names[i], p_keys[i], p_subs[i], 1, p_now, p_now + p_b[i])
                        ON CONFLICT (name, key, sub) DO UPDATE SET
                            count = 1, since = p_now, expires_at = p_now + p_b[i];
                    END IF;
                END IF;
            END IF;
        WHEN 'know' THEN
            INSERT INTO limit_counts AS c (name, key, sub, count, since, expires_at)
            VALUES (p_names[i], p_keys[i], p_subs[i], 1, p_now, p_now + p_b[i])
            ON CONFLICT (name, key, sub) DO UPDATE SET
                since = p_now, expires_at = p_now + p_b[i];
        ELSE
            RAISE EXCEPTION 'linkd_tally: unknown operation %', p_ops[i];
        END CASE;
        waits[i] := coalesce(wait, 0);
        IF waits[i] > 0 AND p_ops[i] <> 'try' THEN
            -- Refused: what the earlier operations took goes back.
            FOR j IN 1 .. i - 1 LOOP
                IF p_ops[j] IN ('take', 'try') AND waits[j] = 0 AND p_a[j] > 0 THEN
                    UPDATE limit_counts c SET count = c.count - 1
                    WHERE c.name = p_names[j] AND c.key = p_keys[j] AND c.sub = p_subs[j]
                      AND c.count > 0;
                ELSIF p_ops[j] = 'reserve' THEN
                    UPDATE limit_counts c SET count = c.count - 1
                    WHERE c.name = p_names[j] AND c.key = p_keys[j] AND c.sub = p_subs[j]
                      AND c.count > 0;
                END IF;
            END LOOP;
            RETURN waits;
        END IF;
    END LOOP;
    RETURN waits;
END
$$;
