-- The time zone the person's browser last reported (an IANA name such as
-- 'Europe/Berlin'), so that pages show times in it even where the
-- browser runs no script; NULL until one was reported (times then show
-- in UTC, labelled so).
ALTER TABLE accounts ADD COLUMN time_zone TEXT;
