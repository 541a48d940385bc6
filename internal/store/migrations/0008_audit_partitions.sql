-- Monthly partitions of the audit log (docs/audit.md, "Partitions and archives").
--
-- audit_events becomes a table partitioned by RANGE (partition_month): the first day
-- (UTC) of the month a row is stored under. The writer sets it to the month of the
-- event's time, but never below the month of the row before it (the previous seq), so
-- that partition_month never decreases along the chain and every partition holds one
-- contiguous run of seqs: a month can be archived and detached without cutting the
-- chain. (Partitioning by seq ranges would need the upper bound of the current month's
-- partition before the month ends; event times alone are not monotonic in seq, since
-- replicas stamp them before they take the chain lock.) partition_month is a storage
-- column: it is not hashed, and verification does not rely on it.
--
-- A non-empty table from before this migration is not copied: it becomes the partition
-- audit_events_legacy, covering every month up to the month of its newest event, after
-- one scan to validate the new column and one index build (seq, partition_month).

ALTER TABLE audit_events RENAME TO audit_events_legacy;
ALTER INDEX audit_events_pkey RENAME TO audit_events_legacy_pkey;
ALTER INDEX audit_events_token_digests RENAME TO audit_events_legacy_token_digests;
ALTER TRIGGER audit_events_append_only ON audit_events_legacy RENAME TO audit_events_legacy_append_only;
ALTER TRIGGER audit_events_no_truncate ON audit_events_legacy RENAME TO audit_events_legacy_no_truncate;

CREATE TABLE audit_events (
    seq             bigint      NOT NULL CONSTRAINT audit_events_seq_check CHECK (seq > 0),
    prev_hash       bytea       NOT NULL,
    hash            bytea       NOT NULL,
    body            text        NOT NULL,
    time            timestamptz NOT NULL,
    operation       text        NOT NULL,
    caller          text        NOT NULL,
    token_digests   bytea[]     NOT NULL DEFAULT '{}',
    mac             bytea,
    mac_version     int,
    partition_month date        NOT NULL
        CONSTRAINT audit_events_partition_month_check CHECK (partition_month = date_trunc('month', partition_month)::date),
    -- seq alone cannot be unique across partitions in PostgreSQL; every partition keeps
    -- it unique, the chain lock orders appends, and verification finds any duplicate.
    PRIMARY KEY (seq, partition_month)
) PARTITION BY RANGE (partition_month);
CREATE INDEX audit_events_token_digests ON audit_events USING gin (token_digests);

-- The default serves replicas of the release before this migration during a rolling
-- upgrade, which do not set partition_month: the database's month, but never below the
-- head's (they append under the chain lock too), so that the column stays monotonic.
CREATE FUNCTION audit_events_default_month() RETURNS date LANGUAGE sql STABLE AS $$
    SELECT greatest(date_trunc('month', now() AT TIME ZONE 'UTC')::date,
                    (SELECT partition_month FROM audit_events ORDER BY seq DESC LIMIT 1))
$$;
ALTER TABLE audit_events ALTER COLUMN partition_month SET DEFAULT audit_events_default_month();

-- Row triggers on the parent are cloned onto every partition (and removed from one that
-- is detached); statement triggers are not, so each partition also gets its own
-- (audit_events_ensure_partition below).
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
GRANT SELECT, INSERT ON audit_events TO tokenizer_service;

-- audit_events_ensure_partition creates and attaches the partition of the month of m
-- unless one covers it already, and returns its name (NULL when another partition, the
-- legacy one, covers the month). It runs with its owner's rights (the owner of
-- audit_events, who runs migrations), so that the service role, which owns no table,
-- can create next month's partition; it can do nothing else. Creators serialize on an
-- advisory lock; the new table is attached with ATTACH PARTITION, which takes only a
-- SHARE UPDATE EXCLUSIVE lock on audit_events and so blocks neither appends nor reads.
CREATE FUNCTION audit_events_ensure_partition(m date) RETURNS text
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
    EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
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

-- The rows from before: attach them as one partition, or drop the empty table.
DO $$
DECLARE
    last_month date;
BEGIN
    SELECT date_trunc('month', max(time) AT TIME ZONE 'UTC')::date INTO last_month FROM audit_events_legacy;
    IF last_month IS NULL THEN
        DROP TABLE audit_events_legacy;
        RETURN;
    END IF;
    -- A constant default is stored once in the catalog, not written into every row.
    EXECUTE format('ALTER TABLE audit_events_legacy ADD COLUMN partition_month date NOT NULL DEFAULT %L', last_month);
    ALTER TABLE audit_events_legacy ALTER COLUMN partition_month DROP DEFAULT;
    -- The parent's key (seq, partition_month) replaces the key on seq; partition_month
    -- is constant here, so it is as strict.
    ALTER TABLE audit_events_legacy DROP CONSTRAINT audit_events_legacy_pkey;
    ALTER TABLE audit_events_legacy ADD CONSTRAINT audit_events_partition_month_check
        CHECK (partition_month = date_trunc('month', partition_month)::date);
    EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION audit_events_legacy FOR VALUES FROM (MINVALUE) TO (%L)',
        (last_month + interval '1 month')::date);
END $$;

-- This month's and next month's partitions; the service creates later ones ahead.
SELECT audit_events_ensure_partition(date_trunc('month', now())::date);
SELECT audit_events_ensure_partition((date_trunc('month', now()) + interval '1 month')::date);
