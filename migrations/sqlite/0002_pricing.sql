-- How each row was priced: which registry snapshot, and what matched (or why nothing did).
ALTER TABLE request_logs ADD COLUMN registry_version TEXT;
ALTER TABLE request_logs ADD COLUMN price_note TEXT;
