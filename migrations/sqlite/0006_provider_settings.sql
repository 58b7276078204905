-- Providers switched on or off from the dashboard; overrides `providers.<name>.enabled`.
CREATE TABLE provider_settings (
    provider    TEXT PRIMARY KEY,
    enabled     INTEGER NOT NULL,
    updated_at  TEXT NOT NULL
);
