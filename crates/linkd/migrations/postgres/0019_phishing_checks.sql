-- Device-code phishing checks per app (issue 22). prefilled_links off:
-- devices get no verification_uri_complete and /link?code= is ignored, so
-- a code must be read off the device and typed. same_network_v4/_v6: the
-- prefix length (e.g. 24, 56) within which the device's and the
-- approving browser's addresses must lie; NULL when not required.
ALTER TABLE clients ADD COLUMN prefilled_links BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE clients ADD COLUMN same_network_v4 BIGINT;
ALTER TABLE clients ADD COLUMN same_network_v6 BIGINT;
-- What the device reported itself as when it asked for the code (its
-- User-Agent), shown on the confirmation page.
ALTER TABLE device_authorizations ADD COLUMN user_agent TEXT;
