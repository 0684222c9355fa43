-- How a device was linked, which tells people what kind of device it is
-- on their devices page: 'device_code' (a TV, console or other device
-- that showed a code, RFC 8628) or 'authorization_code' (an app that
-- signed in through the browser, RFC 6749 §4.1). Devices linked before
-- this column existed were all linked with a code.
ALTER TABLE linked_devices ADD COLUMN kind TEXT NOT NULL DEFAULT 'device_code';
