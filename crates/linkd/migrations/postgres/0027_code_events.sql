-- Every way a device code stops being pending is announced on
-- linkd_events by the database, on commit, whatever wrote it (a decision,
-- an app deleted with its codes, a cascade, an operator's SQL): instances
-- answer polls for pending codes from memory (store/poll_cache.rs) and
-- must hear of each one. A notification is sent only if the transaction
-- commits, so a rolled-back decision announces nothing.

CREATE FUNCTION linkd_code_left_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('linkd_events', 'decided:' || OLD.id);
    RETURN NULL;
END
$$;

CREATE TRIGGER device_authorizations_decided
    AFTER UPDATE ON device_authorizations
    FOR EACH ROW WHEN (OLD.state = 'pending' AND NEW.state IS DISTINCT FROM 'pending')
    EXECUTE FUNCTION linkd_code_left_pending();

-- The purge deletes codes past their deadline, which the cache drops by
-- itself; announcing those would send one notification per purged row to
-- every instance. Any other delete of a pending code is announced.
CREATE TRIGGER device_authorizations_deleted
    AFTER DELETE ON device_authorizations
    FOR EACH ROW WHEN (OLD.state = 'pending'
                       AND OLD.expires_at >= extract(epoch FROM statement_timestamp())::bigint)
    EXECUTE FUNCTION linkd_code_left_pending();

-- Cached polls hold their app (credentials, switches): any change to an
-- app, or its removal, clears them.
CREATE FUNCTION linkd_client_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('linkd_events', 'client:' || OLD.client_id);
    RETURN NULL;
END
$$;

CREATE TRIGGER clients_changed
    AFTER UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION linkd_client_changed();
