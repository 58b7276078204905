-- Spend is added to api_keys by the log writer on every batch; that must not look like a key
-- change (it would empty every process's key cache). Only changes that affect authentication or
-- limits bump the version.
DROP TRIGGER api_keys_changed_update;
CREATE TRIGGER api_keys_changed_update
AFTER UPDATE OF name, key_hash, models, rpm, budget_usd, expires_at, revoked_at ON api_keys
BEGIN
    UPDATE meta SET value = value + 1 WHERE name = 'keys_version';
END;
