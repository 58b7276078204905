-- Tokens-per-minute limits per key, and every upstream attempt (retries, fallbacks) per request.
ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
ALTER TABLE request_logs ADD COLUMN attempts TEXT;
