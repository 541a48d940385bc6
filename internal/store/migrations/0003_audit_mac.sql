-- Each event is authenticated with an HMAC under the audit key (keys purpose
-- audit-mac, wrapped by the key provider), so that a database login, even one with
-- the service's role, cannot append an event that verification accepts. mac_version
-- names the key version. Events written before this migration have none, and
-- `audit verify` reports them (verify from the first authenticated seq with --from).
ALTER TABLE audit_events ADD COLUMN mac bytea, ADD COLUMN mac_version int;
