-- 001: the job queue, its attempt ledger, the NOTIFY trigger and row level security.
-- Runs on Supabase and on plain PostgreSQL: what Supabase provides (service_role, is_admin_user()) is created
-- only where it is missing, never replaced.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'service_role') THEN
        CREATE ROLE service_role NOLOGIN NOINHERIT;
    END IF;
END
$$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'job_queue_admin') THEN
        CREATE ROLE job_queue_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (
        SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'public' AND p.proname = 'is_admin_user' AND p.pronargs = 0
    ) THEN
        -- Plain PostgreSQL stand-in: a session is admin when its role is a member of job_queue_admin.
        -- Supabase projects keep their own is_admin_user().
        EXECUTE $fn$
            CREATE FUNCTION public.is_admin_user() RETURNS boolean
            LANGUAGE sql STABLE
            AS $body$ SELECT pg_has_role(current_user, 'job_queue_admin', 'MEMBER') $body$
        $fn$;
    END IF;
END
$$;

CREATE TABLE job_queue (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    task_type     text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}'::jsonb,
    status        text NOT NULL DEFAULT 'pending',
    priority      integer NOT NULL DEFAULT 0,
    run_at        timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0,
    max_attempts  integer NOT NULL DEFAULT 5,
    last_error    text,
    result        jsonb,
    dedupe_key    text,
    locked_by     text,
    locked_until  timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    started_at    timestamptz,
    finished_at   timestamptz,
    CONSTRAINT job_queue_status_check
        CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'cancelled')),
    CONSTRAINT job_queue_priority_check CHECK (priority BETWEEN -1000 AND 1000),
    CONSTRAINT job_queue_attempts_check CHECK (attempts >= 0),
    CONSTRAINT job_queue_max_attempts_check CHECK (max_attempts BETWEEN 1 AND 1000),
    CONSTRAINT job_queue_dedupe_key_check CHECK (dedupe_key IS NULL OR length(dedupe_key) BETWEEN 1 AND 255),
    -- A job holds a lease exactly while it runs; queue.sql relies on this (locked_by identifies a running job).
    CONSTRAINT job_queue_lease_check
        CHECK ((status = 'running') = (locked_by IS NOT NULL AND locked_until IS NOT NULL))
);

COMMENT ON TABLE job_queue IS 'Background jobs run by the worker daemon; one row per job.';
COMMENT ON COLUMN job_queue.priority IS 'Higher runs first; ties by run_at.';
COMMENT ON COLUMN job_queue.result IS 'The handler''s summary of a successful run.';
COMMENT ON COLUMN job_queue.dedupe_key IS 'At most one pending or running job per key.';

-- The input rules no SQL insert may bypass: the task type's form, a JSON object payload of at most 64 KiB.
-- They fail exactly as the CHECK constraints they stand for (SQLSTATE 23514, the same constraint names), but
-- run only when a row is inserted or those columns are written: a CHECK would run the regular expression and
-- print the payload again on every claim and every completion of every job.
CREATE FUNCTION job_queue_check_input() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.task_type !~ '^[a-z][a-z0-9_.:-]{0,62}[a-z0-9]$|^[a-z]$' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_task_type_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_task_type_check', TABLE = 'job_queue',
                  COLUMN = 'task_type',
                  DETAIL = 'task_type: 1-64 of a-z 0-9 _ . : -, starting with a letter, ending with a letter or digit';
    END IF;
    IF jsonb_typeof(NEW.payload) IS DISTINCT FROM 'object' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_object_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_object_check',
                  TABLE = 'job_queue', COLUMN = 'payload', DETAIL = 'payload must be a JSON object';
    END IF;
    IF octet_length(NEW.payload::text) > 65536 THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_size_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_size_check',
                  TABLE = 'job_queue', COLUMN = 'payload', DETAIL = 'payload is limited to 65536 bytes';
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER job_queue_check_input
    BEFORE INSERT OR UPDATE OF task_type, payload ON job_queue
    FOR EACH ROW EXECUTE FUNCTION job_queue_check_input();

-- The claim: due pending jobs by priority then run_at. Partial, so finished rows cost it nothing.
CREATE INDEX job_queue_claim_idx ON job_queue (priority DESC, run_at, id) WHERE status = 'pending';
-- Live jobs by status and time: the oldest due pending job (metrics, doctor) and lease recovery over running
-- jobs. Partial, so that finishing a job (the most frequent update after the claim) does not touch it: every
-- index a job's updates must maintain costs the database CPU on each of them.
CREATE INDEX job_queue_status_run_at_idx ON job_queue (status, run_at) WHERE status IN ('pending', 'running');
CREATE INDEX job_queue_task_type_idx ON job_queue (task_type);
CREATE UNIQUE INDEX job_queue_dedupe_idx ON job_queue (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('pending', 'running');

CREATE TABLE job_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Not a foreign key on purpose: the check would lock the job row for every ledger row written, on the
    -- hottest statement of all. The queue operations that delete jobs (cleanup, archive) delete their ledger
    -- rows in the same statement.
    job_id       uuid NOT NULL,
    attempt      integer NOT NULL,
    worker_id    text NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL,
    outcome      text NOT NULL,
    error        text,
    duration_ms  integer NOT NULL,
    CONSTRAINT job_runs_outcome_check
        CHECK (outcome IN ('succeeded', 'retry', 'failed', 'abandoned', 'interrupted', 'cancelled')),
    CONSTRAINT job_runs_attempt_check CHECK (attempt >= 1),
    CONSTRAINT job_runs_duration_check CHECK (duration_ms >= 0)
);

COMMENT ON TABLE job_runs IS 'The attempt ledger: one row per finished attempt of a job.';
COMMENT ON COLUMN job_runs.outcome IS
    'succeeded | retry (failed, will run again) | failed (for good) | abandoned (lease expired: the worker died) '
    '| interrupted (handed back at shutdown, not counted) | cancelled';

CREATE INDEX job_runs_job_idx ON job_runs (job_id, attempt);
CREATE INDEX job_runs_finished_idx ON job_runs (finished_at);

-- Wake-ups. Tiny payloads: the task type only. The statement-level trigger sends one NOTIFY per task type per
-- INSERT statement (batch enqueues cost one notification); the row trigger covers a job that becomes due
-- pending again (retry now, lease recovery, hand-back at shutdown).
CREATE FUNCTION job_queue_notify_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_queue', t.task_type)
    FROM (SELECT DISTINCT task_type FROM new_jobs WHERE status = 'pending' AND run_at <= now()) AS t;
    RETURN NULL;
END
$$;

CREATE FUNCTION job_queue_notify_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('job_queue', NEW.task_type);
    RETURN NULL;
END
$$;

CREATE TRIGGER job_queue_notify_insert
    AFTER INSERT ON job_queue
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_notify_insert();

CREATE TRIGGER job_queue_notify_update
    AFTER UPDATE OF status, run_at ON job_queue
    FOR EACH ROW
    WHEN (NEW.status = 'pending' AND NEW.run_at <= now()
          AND (OLD.status <> 'pending' OR OLD.run_at > now()))
    EXECUTE FUNCTION job_queue_notify_update();

-- Row level security: only service_role or an admin session may read or write. The table owner (the role
-- that runs migrations and, usually, the daemon) is not subject to RLS.
ALTER TABLE job_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_runs ENABLE ROW LEVEL SECURITY;

CREATE POLICY job_queue_service_role ON job_queue FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY job_queue_admin ON job_queue FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_runs_service_role ON job_runs FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY job_runs_admin ON job_runs FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());

GRANT SELECT, INSERT, UPDATE, DELETE ON job_queue, job_runs TO service_role;

-- A queue table churns: every job is inserted, updated two or three times, and later deleted. Vacuum and
-- analyze it far more often than the defaults (20% / 10% of the table) so dead index entries and stale
-- statistics never pile up under the claim.
ALTER TABLE job_queue SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_analyze_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.05
);
