-- 013: the input check on INSERT runs once per statement, over the inserted rows, instead of a plpgsql call per row.
-- A batch enqueue of 1,000 jobs called job_queue_check_input 1,000 times; now one query reads the statement's new
-- rows (the transition table the NOTIFY trigger already captures) and fails as before (tests/test_input_check.py).

-- 009's bounds on a payload's text form: 'job_queue_payload_number_check' for a number of more than 1000 digits,
-- 'job_queue_payload_depth_check' for nesting deeper than 128 levels, else NULL. Strings are set aside first (their
-- digits and brackets are text); each pass of the recursion removes the innermost bracket pairs, one level of
-- nesting, at most 128 passes: what is left after them is deeper than 128 levels (tests/test_poison_rows.py).
CREATE FUNCTION job_queue_payload_bounds_violation(text_form text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    WITH RECURSIVE bare AS (
        SELECT regexp_replace(text_form, '"(?:[^"\\]|\\.)*"', '""', 'g') AS s
    ),
    pass (level, s) AS (
        SELECT 0, regexp_replace(b.s, '[^][{}]', '', 'g') FROM bare AS b
        UNION ALL
        SELECT p.level + 1, regexp_replace(p.s, '\[\]|\{\}', '', 'g') FROM pass AS p WHERE p.s <> '' AND p.level < 128
    )
    SELECT CASE
        WHEN (SELECT b.s FROM bare AS b) ~ '[0-9]{250}[0-9]{250}[0-9]{250}[0-9]{251}'  -- 1001 digits (a bound is at most 255)
            THEN 'job_queue_payload_number_check'
        WHEN (SELECT p.s <> '' FROM pass AS p ORDER BY p.level DESC LIMIT 1)
            THEN 'job_queue_payload_depth_check'
    END
$$;

-- The rule set, once for both triggers: the name of the first input rule the row breaks, in the order the checks
-- always ran (task type, object, size, number, depth), or NULL. LANGUAGE sql and one expression, so the
-- statement's query inlines it: no function call per row. Only text longer than 256 characters can break 009's
-- bounds, so only such payloads pay for job_queue_payload_bounds_violation.
CREATE FUNCTION job_queue_input_violation(task_type text, payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN task_type !~ '^[a-z][a-z0-9_.:-]{0,62}[a-z0-9]$|^[a-z]$' THEN 'job_queue_task_type_check'
        WHEN jsonb_typeof(payload) IS DISTINCT FROM 'object' THEN 'job_queue_payload_object_check'
        WHEN octet_length(payload::text) > 65536 THEN 'job_queue_payload_size_check'
        WHEN length(payload::text) > 256 THEN job_queue_payload_bounds_violation(payload::text)
    END
$$;

-- Fails as the CHECK constraint named `violation` would (SQLSTATE 23514, its name, TABLE, COLUMN and DETAIL):
-- the errors 001 and 009 raised, word for word.
CREATE FUNCTION job_queue_raise_input_violation(violation text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF violation = 'job_queue_task_type_check' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_task_type_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_task_type_check', TABLE = 'job_queue',
                  COLUMN = 'task_type',
                  DETAIL = 'task_type: 1-64 of a-z 0-9 _ . : -, starting with a letter, ending with a letter or digit';
    ELSIF violation = 'job_queue_payload_object_check' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_object_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_object_check',
                  TABLE = 'job_queue', COLUMN = 'payload', DETAIL = 'payload must be a JSON object';
    ELSIF violation = 'job_queue_payload_size_check' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_size_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_size_check',
                  TABLE = 'job_queue', COLUMN = 'payload', DETAIL = 'payload is limited to 65536 bytes';
    ELSIF violation = 'job_queue_payload_number_check' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_number_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_number_check',
                  TABLE = 'job_queue', COLUMN = 'payload',
                  DETAIL = 'payload numbers are limited to 1000 digits';
    ELSIF violation = 'job_queue_payload_depth_check' THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_depth_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_depth_check',
                  TABLE = 'job_queue', COLUMN = 'payload',
                  DETAIL = 'payload nesting is limited to 128 levels';
    ELSIF violation IS NOT NULL THEN
        RAISE EXCEPTION 'unknown job_queue input rule: %', violation;
    END IF;
END
$$;

-- The row check (005's AFTER UPDATE OF task_type, payload trigger keeps calling it): the same rules.
CREATE OR REPLACE FUNCTION job_queue_check_input() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM job_queue_raise_input_violation(job_queue_input_violation(NEW.task_type, NEW.payload));
    RETURN NEW;
END
$$;

-- The statement check: the first inserted row, in insertion order, that breaks a rule fails the statement with
-- that rule's error, as the row trigger did. It runs after the rows are in the table (and past the other
-- constraints and ON CONFLICT), within the statement: a failing statement inserts nothing.
CREATE FUNCTION job_queue_check_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    violation text;
BEGIN
    SELECT v.rule INTO violation
    FROM (SELECT job_queue_input_violation(n.task_type, n.payload) AS rule FROM new_jobs AS n) AS v
    WHERE v.rule IS NOT NULL
    LIMIT 1;
    PERFORM job_queue_raise_input_violation(violation);
    RETURN NULL;
END
$$;

DROP TRIGGER job_queue_check_input ON job_queue;

CREATE TRIGGER job_queue_check_input
    AFTER INSERT ON job_queue
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION job_queue_check_inserted();

-- Grants as 007's for the trigger functions (tests/test_security_grants.py). The rule functions above stay
-- executable by every role: they read nothing, and each role allowed to write job_queue calls them through the
-- triggers.
REVOKE ALL ON FUNCTION job_queue_check_inserted() FROM PUBLIC;
DO $$
DECLARE
    role_name text;
BEGIN
    FOR role_name IN SELECT rolname FROM pg_roles WHERE rolname IN ('anon', 'authenticated') LOOP
        EXECUTE format('REVOKE ALL ON FUNCTION job_queue_check_inserted() FROM %I', role_name);
    END LOOP;
END
$$;
