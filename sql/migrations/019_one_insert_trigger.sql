-- 019: one statement trigger after INSERT, not two, and the input rules' per-row work cut to what a row can break.
-- 013's input check and 001's wake-up each read the statement's transition table, and the check ran the task type's
-- regular expression and converted the payload to text twice for every row: a fifth of an enqueue's server CPU
-- (docs/performance.md, "Issue 25, eighth round"). Now one trigger:
--   * groups the new rows by task type once: each distinct task type is matched against the rule once, and the
--     due pending ones are the types to notify (001's rule: one NOTIFY per such type per statement);
--   * walks the rows once in insertion order for the first row breaking a rule, as 013's check did: a row whose type
--     broke its rule fails the type check; otherwise a payload that is not an object fails the object check; only a
--     payload whose text is longer than 256 bytes can break the size or 009's bounds (size needs more than 65536
--     bytes, the bounds more than 256 characters, and a text has no more characters than bytes), and only such a
--     row runs job_queue_input_violation's rules whole. Same rules, same precedence, same errors
--     (tests/test_input_check.py);
--   * then notifies. A failing statement notifies nothing.
-- The row trigger on UPDATE of task_type or payload (005, 013) is unchanged.
CREATE FUNCTION job_queue_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad_types text[];
    due_types text[];
    violation text;
BEGIN
    -- The task type rule is job_queue_input_violation's own, asked with a payload that breaks none, so that it
    -- stays written once. FILTER, not a WHERE over the grouped rows: a WHERE on the grouping column would be pushed
    -- below the grouping and match every row's task type again.
    SELECT array_agg(g.task_type) FILTER (WHERE job_queue_input_violation(g.task_type, '{}') IS NOT NULL),
           array_agg(g.task_type) FILTER (WHERE g.due)
    INTO bad_types, due_types
    FROM (
        SELECT n.task_type, bool_or(n.status = 'pending' AND n.run_at <= now()) AS due
        FROM new_jobs AS n GROUP BY n.task_type
    ) AS g;

    SELECT v.rule INTO violation
    FROM (
        SELECT CASE
            WHEN n.task_type = ANY (bad_types) THEN 'job_queue_task_type_check'
            WHEN jsonb_typeof(n.payload) IS DISTINCT FROM 'object' THEN 'job_queue_payload_object_check'
            WHEN octet_length(n.payload::text) > 256 THEN job_queue_input_violation(n.task_type, n.payload)
        END AS rule
        FROM new_jobs AS n
    ) AS v
    WHERE v.rule IS NOT NULL
    LIMIT 1;
    PERFORM job_queue_raise_input_violation(violation);

    PERFORM pg_notify('job_queue', t.task_type) FROM unnest(due_types) AS t (task_type);
    RETURN NULL;
END
$$;

DROP TRIGGER job_queue_check_input ON job_queue;
DROP TRIGGER job_queue_notify_insert ON job_queue;
DROP FUNCTION job_queue_check_inserted();
DROP FUNCTION job_queue_notify_insert();

CREATE TRIGGER job_queue_inserted
    AFTER INSERT ON job_queue
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_inserted();

COMMENT ON FUNCTION job_queue_inserted() IS
    'After an INSERT into job_queue: the input rules over the new rows, then one NOTIFY per due pending task type.';

-- Grants as 007's and 013's for the trigger functions (tests/test_security_grants.py).
REVOKE ALL ON FUNCTION job_queue_inserted() FROM PUBLIC;
DO $$
DECLARE
    role_name text;
BEGIN
    FOR role_name IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION job_queue_inserted() FROM %I', role_name);
    END LOOP;
END
$$;
