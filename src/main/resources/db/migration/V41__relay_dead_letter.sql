-- Relay (issue #5): dead letters get a table of their own instead of an index on relay_packet's status. That index
-- took an entry for every packet a node stored (about a fifth of an insert's cost here) so that the few packets that
-- die could be listed. relay_dead_letter holds the ids of relay_packet rows with status 'DEAD', written in the same
-- transaction that makes them dead; the dead-letter API reads through it. Dead letters are never purged.
CREATE TABLE relay_dead_letter (
    id BIGINT NOT NULL PRIMARY KEY
);
INSERT INTO relay_dead_letter (id) SELECT id FROM relay_packet WHERE status = 'DEAD';
DROP INDEX ix_relay_packet_status;
