-- Audit bodies and digest columns are stored without compression (docs/audit.md,
-- "Storage per event").
--
-- A reveal of many tokens makes an event of tens of kilobytes: its body lists the token
-- digests in hex and its digest column holds them raw. Both are random, so PostgreSQL's
-- TOAST compression (pglz) never shrinks them by the 25% it requires, and storing them
-- compressed was never the outcome; but it tried on every such event, which was half of
-- PostgreSQL's CPU time per 1,000-token detokenize. EXTERNAL keeps out-of-line storage
-- and skips the attempt. Bytes on disk do not change. ALTER TABLE on the partitioned
-- table applies to every existing partition without rewriting a row; the partitions the
-- writer creates from now on copy it (LIKE ... INCLUDING STORAGE; the function is
-- otherwise as migration 0008 made it).
--
-- SET STORAGE takes an ACCESS EXCLUSIVE lock on the table and each partition for a
-- moment (no row is read or written). Queued behind a long export or verification it
-- would hold up every audit append meanwhile, so it waits at most 10 s and the
-- migration fails instead; run it again (the migrate Job retries) when the audit log
-- is quieter.
SET LOCAL lock_timeout = '10s';
ALTER TABLE audit_events
    ALTER COLUMN body SET STORAGE EXTERNAL,
    ALTER COLUMN token_digests SET STORAGE EXTERNAL;

CREATE OR REPLACE FUNCTION audit_events_ensure_partition(m date) RETURNS text
    LANGUAGE plpgsql SECURITY DEFINER
    SET lock_timeout = '10s'
AS $$
DECLARE
    first date := date_trunc('month', m)::date;
    part  text := format('audit_events_y%sm%s', to_char(first, 'YYYY'), to_char(first, 'MM'));
BEGIN
    IF first > date_trunc('month', now()) + interval '12 months' THEN
        RAISE EXCEPTION 'audit partition: % is more than a year ahead of the database clock', first
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(7453219003);
    IF to_regclass(part) IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_inherits
                       WHERE inhrelid = to_regclass(part) AND inhparent = 'audit_events'::regclass) THEN
            RAISE EXCEPTION 'audit partition: table % exists but is not attached (archived?)', part
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN part;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)', part);
    -- Its own triggers, which stay with the table when it is detached.
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_append_only()',
        part || '_append_only', part);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only()',
        part || '_no_truncate', part);
    BEGIN
        EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
            part, first, (first + interval '1 month')::date);
    EXCEPTION WHEN invalid_object_definition THEN
        -- Another partition (audit_events_legacy) covers the month already.
        EXECUTE format('DROP TABLE %I', part);
        RETURN NULL;
    END;
    RETURN part;
END $$;
-- A SECURITY DEFINER function must not find a caller's temporary tables first: its
-- search path is this schema, then pg_temp.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION audit_events_ensure_partition(date) SET search_path = %I, pg_temp', current_schema());
END $$;
REVOKE ALL ON FUNCTION audit_events_ensure_partition(date) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_events_ensure_partition(date) TO tokenizer_service;
