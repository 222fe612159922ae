-- Named queries of worker/game_platform/sync.py. Parameters are positional ($n); nothing here is built from strings.

-- name: count_competitors
-- How many competitors the run considers, and how many of them it skips: `fresh` (fetched less than $2
-- seconds ago) and `written` (fetched since $3, by an earlier attempt of the same job: the resume). A
-- competitor both fresh and written counts as written.
-- $1 coach id (null = every coach), $2 stale-after seconds (null = nothing is fresh), $3 resume since (null =
-- no resume).
SELECT count(*)::int AS competitors,
       count(*) FILTER (WHERE $3::timestamptz IS NOT NULL AND s.fetched_at >= $3::timestamptz)::int AS written,
       count(*) FILTER (WHERE NOT ($3::timestamptz IS NOT NULL AND s.fetched_at >= $3::timestamptz)
                          AND $2::float8 IS NOT NULL
                          AND s.fetched_at > now() - make_interval(secs => $2::float8))::int AS fresh
FROM competitors c
LEFT JOIN competitor_game_stats s ON s.competitor_id = c.id
WHERE ($1::uuid IS NULL OR c.coach_id = $1::uuid);

-- name: competitors_page
-- One page of the competitors to fetch, keyset by id (a page costs the rows it reads, whatever its depth):
-- those after $4, at most $5, without the fresh and the already written ones ($1..$3 as count_competitors).
SELECT c.id, c.platform_player_id
FROM competitors c
LEFT JOIN competitor_game_stats s ON s.competitor_id = c.id
WHERE ($1::uuid IS NULL OR c.coach_id = $1::uuid)
  AND ($4::uuid IS NULL OR c.id > $4::uuid)
  AND NOT coalesce($3::timestamptz IS NOT NULL AND s.fetched_at >= $3::timestamptz, false)
  AND NOT coalesce($2::float8 IS NOT NULL AND s.fetched_at > now() - make_interval(secs => $2::float8), false)
ORDER BY c.id
LIMIT $5;

-- name: resume_since
-- The start of this job's earliest attempt before the current one (null when there was none): what an earlier
-- attempt wrote since then is skipped by the resume. $1 job id, $2 the current attempt's start.
SELECT min(started_at) FROM job_runs WHERE job_id = $1 AND started_at < $2;

-- name: upsert_stats
-- One batch of fetched stats, as parallel arrays (one element per competitor), in one statement.
-- A row whose figures changed (or is new) is written; an unchanged row only gets its fetched_at advanced. A
-- response older than what we hold (platform_updated_at went backwards) counts as unchanged.
-- Returns how many rows were written (updated) and how many were unchanged.
WITH incoming AS (
    SELECT t.*
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::timestamptz[])
        AS t (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at)
    JOIN competitors c ON c.id = t.competitor_id
),
written AS (
    INSERT INTO competitor_game_stats AS s
        (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at, fetched_at)
    SELECT i.competitor_id, i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at, now()
    FROM incoming i
    ON CONFLICT (competitor_id) DO UPDATE SET
        games_played = EXCLUDED.games_played,
        wins = EXCLUDED.wins,
        losses = EXCLUDED.losses,
        draws = EXCLUDED.draws,
        rating = EXCLUDED.rating,
        platform_updated_at = EXCLUDED.platform_updated_at,
        fetched_at = EXCLUDED.fetched_at,
        updated_at = now()
    WHERE (s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
              IS DISTINCT FROM
          (EXCLUDED.games_played, EXCLUDED.wins, EXCLUDED.losses, EXCLUDED.draws, EXCLUDED.rating,
           EXCLUDED.platform_updated_at)
      AND EXCLUDED.platform_updated_at >= s.platform_updated_at
    RETURNING s.competitor_id
),
touched AS (
    UPDATE competitor_game_stats AS s
    SET fetched_at = now()
    FROM incoming i
    WHERE s.competitor_id = i.competitor_id
      AND NOT ((s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
                   IS DISTINCT FROM
               (i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at)
               AND i.platform_updated_at >= s.platform_updated_at)
    RETURNING s.competitor_id
)
SELECT (SELECT count(*) FROM written)::int AS updated, (SELECT count(*) FROM touched)::int AS unchanged;

-- name: preview_stats
-- The dry run's upsert_stats: the same parallel arrays, the same comparison, nothing written.
WITH incoming AS (
    SELECT t.*
    FROM unnest($1::uuid[], $2::int[], $3::int[], $4::int[], $5::int[], $6::int[], $7::timestamptz[])
        AS t (competitor_id, games_played, wins, losses, draws, rating, platform_updated_at)
    JOIN competitors c ON c.id = t.competitor_id
)
SELECT count(*) FILTER (WHERE changed)::int AS updated, count(*) FILTER (WHERE NOT changed)::int AS unchanged
FROM (
    SELECT s.competitor_id IS NULL
           OR ((s.games_played, s.wins, s.losses, s.draws, s.rating, s.platform_updated_at)
                   IS DISTINCT FROM
               (i.games_played, i.wins, i.losses, i.draws, i.rating, i.platform_updated_at)
               AND i.platform_updated_at >= s.platform_updated_at) AS changed
    FROM incoming i
    LEFT JOIN competitor_game_stats s ON s.competitor_id = i.competitor_id
) AS compared;

-- name: insert_competitors
-- Seeding (demo, tests, benchmarks): parallel arrays of coach id, name, platform player id.
INSERT INTO competitors (coach_id, name, platform_player_id)
SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[])
ON CONFLICT (platform_player_id) DO NOTHING
RETURNING id;
