-- 010: limits that hold across every daemon: a task type's global concurrency limit (optionally per payload key),
-- enforced inside the claim under a lock on the type's job_queue_limits row, and token buckets shared by every
-- process (job_queue_rate_buckets: one statement draws a batch of tokens; nothing stays locked after it).

-- One row per limited task type, written by the daemons at start-up from their tasks' policies (worker/limits.py).
-- No row: the type is unlimited and the claim is 008's walk, unchanged.
CREATE TABLE job_queue_limits (
    task_type    text PRIMARY KEY,
    max_running  integer NOT NULL,
    key_field    text,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    updated_by   text,
    CONSTRAINT job_queue_limits_task_type_check
        CHECK (task_type ~ '^[a-z][a-z0-9_.:-]{0,62}[a-z0-9]$|^[a-z]$'),
    CONSTRAINT job_queue_limits_max_running_check CHECK (max_running BETWEEN 1 AND 100000),
    CONSTRAINT job_queue_limits_key_field_check
        CHECK (key_field IS NULL OR key_field ~ '^[A-Za-z_][A-Za-z0-9_]{0,63}$'),
    CONSTRAINT job_queue_limits_updated_by_check CHECK (updated_by IS NULL OR length(updated_by) <= 200)
);

COMMENT ON TABLE job_queue_limits IS
    'Global concurrency limits: at most max_running jobs of the type running (per value of payload key_field).';

-- A token bucket per name (the game platform's: one per API key, named by a hash of it). Refilled lazily by the
-- statement that draws from it (queries/limits.sql draw_tokens).
CREATE TABLE job_queue_rate_buckets (
    bucket       text PRIMARY KEY,
    tokens       double precision NOT NULL,
    refilled_at  timestamptz NOT NULL,
    granted      double precision NOT NULL DEFAULT 0,  -- what the last draw took (its statement returns it)
    CONSTRAINT job_queue_rate_buckets_bucket_check CHECK (length(bucket) BETWEEN 1 AND 200)
);

COMMENT ON TABLE job_queue_rate_buckets IS 'Shared token buckets (rate limits across every worker process).';

-- The claim's pick for the limited types among those claimable. The walk is 008's (job_queue_claim_idx in
-- order, sorts disabled), returning each row's slot for limited types: "type\nkey", the key being the payload
-- field's value or 'none'. At the first limited row the limits rows are locked (in task_type order, so two
-- claims never wait on each other in a cycle) and the running jobs counted by a statement of its own: its
-- fresh snapshot sees every claim that held the lock before, so concurrent claims never exceed a limit
-- (tests/test_limits.py). A row past its slot's limit is skipped; the walk goes on over the other types
-- (at most 8 walks), so a full limited type never starves the others.
CREATE FUNCTION job_queue_pick_limited(task_types text[], n integer, limited text[]) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
AS $$
DECLARE
    claimable text[];
    caps jsonb;
    fields jsonb;
    used jsonb;
    full_slots jsonb;
    excluded text[] := '{}';
    seen uuid[] := '{}';
    taken integer := 0;
    want integer := n;
    got integer;
    dropped integer;
    keyed_dropped integer;
    r record;
BEGIN
    IF n <= 0 OR EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type = '*') THEN
        RETURN;
    END IF;
    claimable := ARRAY(SELECT unnest(task_types) EXCEPT SELECT p.task_type FROM job_queue_pause AS p);
    SELECT jsonb_object_agg(l.task_type, l.max_running),
           coalesce(jsonb_object_agg(l.task_type, l.key_field) FILTER (WHERE l.key_field IS NOT NULL), '{}')
    INTO caps, fields
    FROM job_queue_limits AS l WHERE l.task_type = ANY (limited);
    -- The slots full as of now, read without the lock: their waiting rows are passed over unlocked by the walk.
    -- Only a hint (a slot may free before the lock is taken: its job is claimed at the next wake-up, which the
    -- finish's NOTIFY brings); the count under the lock below is what enforces the limit.
    SELECT coalesce(jsonb_object_agg(s.slot, true) FILTER (WHERE s.n >= (caps ->> s.task_type)::integer), '{}')
    INTO full_slots
    FROM (SELECT q.task_type, q.task_type || E'\n'
                 || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none') AS slot, count(*) AS n
          FROM job_queue AS q
          WHERE q.status = 'running' AND q.task_type = ANY (limited)
          GROUP BY 1, 2) AS s;
    FOR walk IN 1..8 LOOP
        got := 0;
        dropped := 0;
        keyed_dropped := 0;
        FOR r IN
            SELECT q.id, q.task_type,
                   CASE WHEN q.task_type = ANY (limited) THEN
                       q.task_type || E'\n' || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none')
                   END AS slot
            FROM job_queue AS q
            WHERE q.status = 'pending' AND q.run_at <= now()
              AND q.task_type = ANY (claimable) AND q.task_type <> ALL (excluded) AND q.id <> ALL (seen)
              AND NOT (q.task_type = ANY (limited) AND full_slots ? (q.task_type || E'\n'
                       || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none')))
            ORDER BY q.priority DESC, q.run_at, q.id
            LIMIT want
            FOR UPDATE OF q SKIP LOCKED
        LOOP
            EXIT WHEN taken >= n;
            got := got + 1;
            seen := seen || r.id;
            IF r.slot IS NOT NULL THEN
                IF used IS NULL THEN
                    PERFORM FROM job_queue_limits AS l WHERE l.task_type = ANY (limited)
                    ORDER BY l.task_type FOR UPDATE;
                    SELECT coalesce(jsonb_object_agg(s.slot, s.n), '{}') INTO used
                    FROM (SELECT q.task_type || E'\n'
                                 || coalesce('v:' || (q.payload ->> (fields ->> q.task_type)), 'none') AS slot,
                                 count(*) AS n
                          FROM job_queue AS q
                          WHERE q.status = 'running' AND q.task_type = ANY (limited)
                          GROUP BY 1) AS s;
                END IF;
                IF coalesce((used ->> r.slot)::integer, 0) >= (caps ->> r.task_type)::integer THEN
                    dropped := dropped + 1;
                    IF fields ? r.task_type THEN
                        keyed_dropped := keyed_dropped + 1;  -- its type is not excluded: walk as many more
                    ELSIF NOT r.task_type = ANY (excluded) THEN
                        excluded := excluded || r.task_type;
                    END IF;
                    CONTINUE;
                END IF;
                used := jsonb_set(used, ARRAY[r.slot], to_jsonb(coalesce((used ->> r.slot)::integer, 0) + 1));
            END IF;
            taken := taken + 1;
            RETURN NEXT r.id;
        END LOOP;
        EXIT WHEN dropped = 0 OR got < want OR taken >= n;
        want := n - taken + keyed_dropped;
    END LOOP;
END
$$;

COMMENT ON FUNCTION job_queue_pick_limited(text[], integer, text[]) IS
    'job_queue_pick when a claimable type has a concurrency limit: the same walk, each limit held under its lock.';

-- 008's pick, first asking whether any claimable type is limited: when none is (no row in job_queue_limits for
-- them) the walk is exactly 008's (tests/test_claim_plan.py); otherwise job_queue_pick_limited.
CREATE OR REPLACE FUNCTION job_queue_pick(task_types text[], n integer) RETURNS SETOF uuid
LANGUAGE plpgsql VOLATILE
SET enable_sort = off
SET enable_incremental_sort = off
AS $$
DECLARE
    limited text[];
BEGIN
    SELECT array_agg(l.task_type) INTO limited FROM job_queue_limits AS l WHERE l.task_type = ANY (task_types);
    IF limited IS NOT NULL THEN
        RETURN QUERY SELECT p.id FROM job_queue_pick_limited(task_types, n, limited) AS p (id);
        RETURN;
    END IF;
    RETURN QUERY
    SELECT q.id
    FROM job_queue AS q
    WHERE q.status = 'pending' AND q.run_at <= now()
      -- The claimable types once (an InitPlan): the handled types minus the paused ones; '*' pauses all.
      AND q.task_type = ANY (ARRAY(
            SELECT unnest(task_types)
            EXCEPT
            SELECT p.task_type FROM job_queue_pause AS p))
      AND NOT EXISTS (SELECT FROM job_queue_pause AS p WHERE p.task_type = '*')
    ORDER BY q.priority DESC, q.run_at, q.id
    LIMIT n
    FOR UPDATE OF q SKIP LOCKED;
END
$$;

-- Row level security and grants as for the other control tables (003, 007).
ALTER TABLE job_queue_limits ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_queue_rate_buckets ENABLE ROW LEVEL SECURITY;
CREATE POLICY job_queue_limits_service_role ON job_queue_limits FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY job_queue_limits_admin ON job_queue_limits FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_queue_rate_buckets_service_role ON job_queue_rate_buckets FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_queue_rate_buckets_admin ON job_queue_rate_buckets FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
REVOKE ALL ON job_queue_limits, job_queue_rate_buckets FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON job_queue_limits, job_queue_rate_buckets TO service_role;
DO $$
DECLARE
    role_name text;
BEGIN
    FOR role_name IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        IF role_name = 'anon' THEN
            EXECUTE format('REVOKE ALL ON job_queue_limits, job_queue_rate_buckets FROM %I', role_name);
        ELSE
            EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON job_queue_limits, job_queue_rate_buckets FROM %I',
                           role_name);
            IF current_setting('server_version_num')::int >= 170000 THEN
                EXECUTE format('REVOKE MAINTAIN ON job_queue_limits, job_queue_rate_buckets FROM %I', role_name);
            END IF;
        END IF;
    END LOOP;
END
$$;
