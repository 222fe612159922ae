-- 002: the app's competitors and the game statistics synced into them from the game platform.
-- Row level security like job_queue's: only service_role or an admin session (is_admin_user()) may read or
-- write; the table owner (the role that migrates and runs the worker) is not subject to RLS.

CREATE TABLE competitors (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    coach_id            uuid NOT NULL,
    name                text NOT NULL,
    platform_player_id  text NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT competitors_name_check CHECK (length(name) BETWEEN 1 AND 200),
    CONSTRAINT competitors_platform_player_id_check CHECK (length(platform_player_id) BETWEEN 1 AND 64),
    CONSTRAINT competitors_platform_player_id_key UNIQUE (platform_player_id)
);

COMMENT ON TABLE competitors IS 'The app''s competitors; each is one player on the game platform.';
COMMENT ON COLUMN competitors.platform_player_id IS 'The game platform''s id of this competitor''s player.';

CREATE INDEX competitors_coach_idx ON competitors (coach_id);

-- One current row per competitor: the platform's figures, the platform's own updated-at, and when we fetched.
CREATE TABLE competitor_game_stats (
    competitor_id        uuid PRIMARY KEY REFERENCES competitors (id) ON DELETE CASCADE,
    games_played         integer NOT NULL,
    wins                 integer NOT NULL,
    losses               integer NOT NULL,
    draws                integer NOT NULL,
    rating               integer NOT NULL,
    platform_updated_at  timestamptz NOT NULL,
    fetched_at           timestamptz NOT NULL,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT competitor_game_stats_counts_check
        CHECK (games_played >= 0 AND wins >= 0 AND losses >= 0 AND draws >= 0
               AND wins + losses + draws <= games_played)
) WITH (fillfactor = 80);

COMMENT ON TABLE competitor_game_stats IS 'The latest game statistics of each competitor, from the game platform.';
COMMENT ON COLUMN competitor_game_stats.platform_updated_at IS 'When the platform says these figures last changed.';
COMMENT ON COLUMN competitor_game_stats.fetched_at IS
    'When the sync last fetched this competitor (advances on every successful fetch; drives staleAfterMinutes).';
COMMENT ON COLUMN competitor_game_stats.updated_at IS 'When the figures in this row last changed.';

-- No index on fetched_at: the staleness filter reads it through the primary key join, and an unindexed
-- fetched_at (with fillfactor room) keeps the per-sync "checked" update a cheap heap-only (HOT) update.

ALTER TABLE competitors ENABLE ROW LEVEL SECURITY;
ALTER TABLE competitor_game_stats ENABLE ROW LEVEL SECURITY;

CREATE POLICY competitors_service_role ON competitors FOR ALL TO service_role USING (true) WITH CHECK (true);
CREATE POLICY competitors_admin ON competitors FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());
CREATE POLICY competitor_game_stats_service_role ON competitor_game_stats FOR ALL TO service_role
    USING (true) WITH CHECK (true);
CREATE POLICY competitor_game_stats_admin ON competitor_game_stats FOR ALL TO PUBLIC
    USING (public.is_admin_user()) WITH CHECK (public.is_admin_user());

GRANT SELECT, INSERT, UPDATE, DELETE ON competitors, competitor_game_stats TO service_role;
