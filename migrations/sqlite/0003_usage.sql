-- Usage rollups: one row per (UTC day, key, model, provider), kept up to date by the request-log
-- writer in the same transaction as the rows it sums (`SqliteStore::insert_logs`), so the two
-- never disagree. `/api/usage` reads only the rollup tables (this one when filtered by key, model
-- or provider, `usage_dim_rollups` below otherwise); the retention worker deletes old raw
-- `request_logs` rows but never rollups.
--
-- NULL key/model/provider are stored as '' (primary-key columns of a WITHOUT ROWID table cannot be
-- NULL, and NULLs would never conflict in the upsert).
CREATE TABLE usage_rollups (
    day                TEXT    NOT NULL,  -- 'YYYY-MM-DD', UTC (the first 10 chars of created_at)
    key_name           TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    requests           INTEGER NOT NULL DEFAULT 0,
    -- status >= 400
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    -- Sum over the priced rows only.
    cost_usd           REAL    NOT NULL DEFAULT 0,
    -- Rows whose cost_usd is NULL (no price known); they are not in cost_usd.
    unpriced_requests  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, key_name, model, provider)
) WITHOUT ROWID;

-- Rows logged before this migration.
INSERT INTO usage_rollups (day, key_name, model, provider, requests, errors, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, cost_usd, unpriced_requests)
SELECT substr(created_at, 1, 10), COALESCE(key_name, ''), COALESCE(model, ''), COALESCE(provider, ''),
    COUNT(*), SUM(status >= 400), COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0),
    COALESCE(SUM(cached_tokens), 0), COALESCE(SUM(reasoning_tokens), 0), COALESCE(SUM(cost_usd), 0),
    SUM(cost_usd IS NULL)
FROM request_logs
GROUP BY 1, 2, 3, 4;

-- The same sums per single dimension: (dimension, day, value) with dimension 'key', 'model' or
-- 'provider', so `/api/usage?group_by=…` reads a few rows per day however many key × model
-- combinations there were. Every log row is counted once in each dimension.
CREATE TABLE usage_dim_rollups (
    dimension          TEXT    NOT NULL CHECK (dimension IN ('key', 'model', 'provider')),
    day                TEXT    NOT NULL,
    value              TEXT    NOT NULL,
    requests           INTEGER NOT NULL DEFAULT 0,
    errors             INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0,
    cached_tokens      INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens   INTEGER NOT NULL DEFAULT 0,
    cost_usd           REAL    NOT NULL DEFAULT 0,
    unpriced_requests  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (dimension, day, value)
) WITHOUT ROWID;

INSERT INTO usage_dim_rollups (dimension, day, value, requests, errors, prompt_tokens,
    completion_tokens, cached_tokens, reasoning_tokens, cost_usd, unpriced_requests)
SELECT d.dimension, r.day,
    CASE d.dimension WHEN 'key' THEN r.key_name WHEN 'model' THEN r.model ELSE r.provider END AS value,
    SUM(r.requests), SUM(r.errors), SUM(r.prompt_tokens), SUM(r.completion_tokens),
    SUM(r.cached_tokens), SUM(r.reasoning_tokens), SUM(r.cost_usd), SUM(r.unpriced_requests)
FROM usage_rollups AS r
CROSS JOIN (SELECT 'key' AS dimension UNION ALL SELECT 'model' UNION ALL SELECT 'provider') AS d
GROUP BY d.dimension, r.day, value;
