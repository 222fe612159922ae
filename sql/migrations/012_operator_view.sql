-- 012: the operator's view: live workers (worker_nodes, upserted by each daemon at its heartbeat interval),
-- a per-minute rollup of the ledger and per-minute queue samples (the admin page's charts at bounded cost),
-- and an index that finds a schedule's slot jobs by dedupe key (the schedules' track record).

-- One row per daemon, upserted every heartbeat interval by worker/nodes.py; a row not seen for GONE_LEASES
-- lease periods counts as gone (never shown) and is deleted by the next upsert of any daemon.
CREATE TABLE worker_nodes (
    worker_id    text PRIMARY KEY,
    host         text NOT NULL,
    pid          integer NOT NULL,
    version      text NOT NULL,
    task_types   text[] NOT NULL,
    concurrency  integer NOT NULL,
    lease_s      double precision NOT NULL,
    running      integer NOT NULL DEFAULT 0,
    started_at   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT worker_nodes_lease_check CHECK (lease_s > 0),
    CONSTRAINT worker_nodes_running_check CHECK (running >= 0)
);

COMMENT ON TABLE worker_nodes IS 'Live worker daemons, refreshed at each heartbeat interval (worker/nodes.py).';

-- Finished attempts per minute, task type and outcome: closed minutes only (up to rolled_until in
-- job_history_state); the charts read these and the ledger itself only after rolled_until.
CREATE TABLE job_runs_minutely (
    minute     timestamptz NOT NULL,
    task_type  text NOT NULL,
    outcome    text NOT NULL,
    n          integer NOT NULL,
    PRIMARY KEY (minute, task_type, outcome)
);

-- Due pending jobs and the oldest one's age, sampled once a minute by one daemon; task_type '*' = all types
-- (written every minute, also when nothing is due, so a missing minute means no daemon was sampling).
CREATE TABLE job_queue_samples (
    minute            timestamptz NOT NULL,
    task_type         text NOT NULL,
    due_pending       integer NOT NULL,
    oldest_due_age_s  double precision NOT NULL,
    PRIMARY KEY (minute, task_type)
);

CREATE TABLE job_history_state (
    id             boolean PRIMARY KEY DEFAULT true CHECK (id),
    rolled_until   timestamptz NOT NULL
);

COMMENT ON TABLE job_runs_minutely IS 'Ledger rollup: finished attempts per minute, task type and outcome.';
COMMENT ON TABLE job_queue_samples IS 'Due pending jobs and oldest due age, sampled once a minute.';
COMMENT ON TABLE job_history_state IS 'Where the ledger rollup stands (minutes before rolled_until are rolled up).';

-- A schedule's slot jobs by their dedupe key schedule:<name>:<slot>. Partial: other jobs cost it nothing.
CREATE INDEX job_queue_schedule_slot_idx ON job_queue (dedupe_key) WHERE dedupe_key LIKE 'schedule:%';

ALTER TABLE worker_nodes ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_runs_minutely ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_queue_samples ENABLE ROW LEVEL SECURITY;
ALTER TABLE job_history_state ENABLE ROW LEVEL SECURITY;

CREATE POLICY worker_nodes_service_role ON worker_nodes FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY worker_nodes_admin ON worker_nodes FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_runs_minutely_service_role ON job_runs_minutely FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_runs_minutely_admin ON job_runs_minutely FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_queue_samples_service_role ON job_queue_samples FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_queue_samples_admin ON job_queue_samples FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY job_history_state_service_role ON job_history_state FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY job_history_state_admin ON job_history_state FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());

GRANT SELECT, INSERT, UPDATE, DELETE ON worker_nodes, job_runs_minutely, job_queue_samples, job_history_state
    TO service_role;

-- As 007 for the tables above: whatever the schema's default privileges (Supabase grants anon and authenticated
-- ALL on new tables), PUBLIC and anon hold nothing and authenticated only what RLS governs.
REVOKE ALL ON worker_nodes, job_runs_minutely, job_queue_samples, job_history_state FROM PUBLIC;
DO $$
DECLARE
    role_name text;
    tables constant text := 'worker_nodes, job_runs_minutely, job_queue_samples, job_history_state';
BEGIN
    FOR role_name IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        IF role_name = 'anon' THEN
            EXECUTE format('REVOKE ALL ON %s FROM %I', tables, role_name);
        ELSE
            EXECUTE format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON %s FROM %I', tables, role_name);
            IF current_setting('server_version_num')::int >= 170000 THEN
                EXECUTE format('REVOKE MAINTAIN ON %s FROM %I', tables, role_name);
            END IF;
        END IF;
    END LOOP;
END
$$;
