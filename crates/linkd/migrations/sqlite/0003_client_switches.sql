-- Operators can turn the device flow off for one app (device-code phishing
-- campaigns target apps with broad scopes).
ALTER TABLE clients ADD COLUMN device_flow_enabled INTEGER NOT NULL DEFAULT 1;
