-- As migrations/sqlite/0007: tokens-per-minute limits per key, and every upstream attempt
-- (retries, fallbacks) per request as a JSON array.
ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
ALTER TABLE request_logs ADD COLUMN attempts TEXT;

-- A changed token limit is a key change other instances must see.
DROP TRIGGER api_keys_changed_update ON api_keys;
CREATE TRIGGER api_keys_changed_update
AFTER UPDATE OF name, key_hash, models, rpm, tpm, budget_usd, expires_at, revoked_at ON api_keys
FOR EACH ROW EXECUTE FUNCTION gophergate_bump_keys_version();
