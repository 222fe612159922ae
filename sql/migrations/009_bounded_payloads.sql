-- 009: payloads every reader can decode. The input check also refuses nesting deeper than 128 levels and numbers
-- of more than 1000 digits (worker/jsonvalues.py states the same bounds): such a row made the claim that fetched
-- it fail for every job it claimed (tests/test_poison_rows.py).
CREATE OR REPLACE FUNCTION job_queue_check_input() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    text_form text;
    bare text;
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
    text_form := NEW.payload::text;
    IF octet_length(text_form) > 65536 THEN
        RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_size_check"'
            USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_size_check',
                  TABLE = 'job_queue', COLUMN = 'payload', DETAIL = 'payload is limited to 65536 bytes';
    END IF;
    -- Shorter text can break neither bound. Strings are set aside: their digits and brackets are text.
    IF length(text_form) > 256 THEN
        bare := regexp_replace(text_form, '"(?:[^"\\]|\\.)*"', '""', 'g');
        IF bare ~ '[0-9]{250}[0-9]{250}[0-9]{250}[0-9]{251}' THEN  -- 1001 digits (a bound is at most 255)
            RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_number_check"'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_number_check',
                      TABLE = 'job_queue', COLUMN = 'payload',
                      DETAIL = 'payload numbers are limited to 1000 digits';
        END IF;
        -- Each pass removes the innermost bracket pairs, one level of nesting.
        bare := regexp_replace(bare, '[^][{}]', '', 'g');
        FOR level IN 1..128 LOOP
            EXIT WHEN bare = '';
            bare := regexp_replace(bare, '\[\]|\{\}', '', 'g');
        END LOOP;
        IF bare <> '' THEN
            RAISE EXCEPTION 'new row for relation "job_queue" violates check constraint "job_queue_payload_depth_check"'
                USING ERRCODE = 'check_violation', CONSTRAINT = 'job_queue_payload_depth_check',
                      TABLE = 'job_queue', COLUMN = 'payload',
                      DETAIL = 'payload nesting is limited to 128 levels';
        END IF;
    END IF;
    RETURN NEW;
END
$$;
