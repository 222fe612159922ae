-- Named queries of worker/http/app.py's probes.

-- name: ping
SELECT 1;
