-- Relay (issue #5): a hop's delivered packets are settled by its acknowledged cursor, not by a status update per row.
-- The next hop acknowledges everything up to a hop_seq (the packets of a hop commit in hop_seq order, see relay_hop),
-- so one row per hop records it. A packet of a hop is waiting while status = 'PENDING' and hop_seq > the hop's
-- acked_seq; 'DEAD' rows are dead letters; 'SENT' rows were settled one by one before this migration.
-- Separate from relay_hop: the store writer holds a relay_hop row locked until its commit, and an acknowledgement
-- must not wait for that.
CREATE TABLE relay_hop_ack (
    hop        VARCHAR(200) NOT NULL PRIMARY KEY,
    acked_seq  BIGINT       NOT NULL,
    acked_at   TIMESTAMP WITH TIME ZONE
);
INSERT INTO relay_hop_ack (hop, acked_seq) SELECT hop, 0 FROM relay_hop;

-- Rows are no longer updated when delivered, so these indexes served only queries that now go through the cursor:
-- the waiting packets of a hop are a range of uq_relay_packet_hop_seq after the cursor, the expired ones are found
-- among them, and the purge runs seldom (see PacketStore.purge). Dead letters are listed through (status, id).
DROP INDEX ix_relay_packet_hop;
DROP INDEX ix_relay_packet_expiry;
DROP INDEX ix_relay_packet_done;
CREATE INDEX ix_relay_packet_status ON relay_packet (status, id);

-- What operators mean by "waiting": the packets each hop has still to take.
CREATE VIEW relay_waiting AS
SELECT p.* FROM relay_packet p JOIN relay_hop_ack a ON a.hop = p.hop
WHERE p.status = 'PENDING' AND p.hop_seq > a.acked_seq;
