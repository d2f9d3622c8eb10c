package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicInteger;

import javax.sql.DataSource;

import org.hospitalhub.relay.client.Packet;
import org.junit.jupiter.api.Test;

/**
 * A hop's delivered packets are settled by its acknowledged cursor (relay_hop_ack), not by a status update per row:
 * what is waiting, what expires, what is purged and what the status page counts all follow the cursor, on PostgreSQL
 * and on the embedded H2. A peer cannot move its cursor past what was committed for it.
 */
class RelayHopCursorTest {

    @Test
    void onPostgres() throws Exception {
        onPostgres("cursor", RelayHopCursorTest::check);
    }

    @Test
    void onH2() throws Exception {
        onH2("cursor", RelayHopCursorTest::check);
    }

    @Test
    void knownCursorOnPostgres() throws Exception {
        onPostgres("knowncursor", RelayHopCursorTest::checkKnownCursor);
    }

    @Test
    void knownCursorOnH2() throws Exception {
        onH2("knowncursor", RelayHopCursorTest::checkKnownCursor);
    }

    @Test
    void deadLettersOnPostgres() throws Exception {
        onPostgres("deadletters", RelayHopCursorTest::checkDeadLetters);
    }

    @Test
    void deadLettersOnH2() throws Exception {
        onH2("deadletters", RelayHopCursorTest::checkDeadLetters);
    }

    /**
     * The sweep's ttl check reads the packets still waiting, never the delivered ones the table keeps for days: with
     * 20,000 delivered packets and fresh statistics, PostgreSQL plans both of its queries through the indexes (the join
     * it replaced was planned as a scan of the whole table), and only the waiting packets past their ttl die.
     */
    @Test
    void expiryReadsOnlyWaitingPacketsOnPostgres() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("expiry")) {
            try (Connection c = db.dataSource.getConnection(); Statement s = c.createStatement()) {
                s.execute("INSERT INTO relay_hop (hop, next_seq) VALUES ('b@n', 20001), ('c@n', 4)");
                s.execute("INSERT INTO relay_hop_ack (hop, acked_seq) VALUES ('b@n', 20000), ('c@n', 0)");
                s.execute("INSERT INTO relay_packet (packet_id, leg, sender, target, command, body, size_bytes, created_at, "
                        + "expires_at, received_at, received_from, hop, hop_seq, status) SELECT 'old-' || g, 'U', 'a@n', 'b@n', "
                        + "'x.note', '{}', 2, now() - interval '2 days', now() - interval '1 day', now() - interval '2 days', "
                        + "'a@n', 'b@n', g, 'PENDING' FROM generate_series(1, 20000) g");
                s.execute("INSERT INTO relay_packet (packet_id, leg, sender, target, command, body, size_bytes, created_at, "
                        + "expires_at, received_at, received_from, hop, hop_seq, status) SELECT 'new-' || g, 'U', 'a@n', 'c@n', "
                        + "'x.note', '{}', 2, now(), now() + (2 * g - 3) * interval '1 hour', now(), 'a@n', 'c@n', g, 'PENDING' "
                        + "FROM generate_series(1, 3) g");
                s.execute("ANALYZE relay_packet");
                s.execute("ANALYZE relay_hop_ack");
            }
            String waiting = plan(db.dataSource, PacketStore.WAITING_HOPS);
            String expired = plan(db.dataSource, PacketStore.EXPIRED_OF_HOP.replaceFirst("\\?", "'c@n'")
                    .replaceFirst("\\?", "0").replaceFirst("\\?", "now()").replaceFirst("\\?", "1000"));
            assertFalse(waiting.contains("Seq Scan on relay_packet"), waiting);
            assertFalse(expired.contains("Seq Scan on relay_packet"), expired);
            assertTrue(expired.contains("uq_relay_packet_hop_seq"), expired);

            PacketStore store = new PacketStore(db.dataSource, "n", false);
            assertEquals(1, store.expire(Instant.now()), "the waiting packet whose ttl passed an hour ago; none of the delivered");
            assertEquals(List.of("new-1"), ids(store.deadLetters(null, null, 0, 10)));
            assertEquals(List.of(2L, 3L), seqs(store.pending("c@n", 0, 10)));
        }
    }

    private static String plan(DataSource ds, String sql) throws SQLException {
        StringBuilder plan = new StringBuilder();
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery("EXPLAIN " + sql)) {
            while (rs.next()) {
                plan.append(rs.getString(1)).append('\n');
            }
        }
        return plan.toString();
    }

    private interface Check {
        void run(DataSource ds) throws Exception;
    }

    /** A fresh PostgreSQL database with the hub's migrations, dropped afterwards. */
    private static void onPostgres(String name, Check check) throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh(name)) {
            check.run(db.dataSource);
        }
    }

    /** A fresh embedded H2 database (the default's settings) with the hub's migrations. */
    private static void onH2(String name, Check check) throws Exception {
        check.run(RelayOnH2Test.h2(Files.createTempDirectory("relay-" + name), name));
    }

    private static void check(DataSource ds) throws Exception {
        PacketStore store = new PacketStore(ds, "n", false);
        Instant now = Instant.now();
        Peer from = new Peer("a@n", Peer.Kind.CLIENT);
        List<Packet> sent = new ArrayList<>();
        List<PacketStore.Incoming> batch = new ArrayList<>();
        for (int i = 0; i < 5; i++) {
            Packet p = i < 4 ? RelayTreeTest.packet("a@n", "b@n", "cursor.note", "cursor", i)
                    : Packet.create("a@n", "b@n", "cursor.short", RelayTreeTest.obj("run", "cursor"), 1); // ttl 1 s
            sent.add(p);
            batch.add(new PacketStore.Incoming(p, p.toJson().toString(), Routing.Decision.to("b@n")));
        }
        store.storeAll(List.of(new PacketStore.Request(batch, from.id(), false)), now);

        assertEquals(List.of(1L, 2L, 3L, 4L, 5L), seqs(store.pending("b@n", 0, 10)));
        assertEquals(List.of("b@n"), store.hopsWithPending());

        // the peer took the first two: one row moves, the packets' rows are not updated
        assertTrue(store.acknowledge("b@n", 2, now));
        assertEquals(List.of(3L, 4L, 5L), seqs(store.pending("b@n", 0, 10)), "after the cursor");
        assertEquals(List.of(4L, 5L), seqs(store.pending("b@n", 3, 10)), "after the caller's own cursor when further");
        assertFalse(store.acknowledge("b@n", 1, now), "the cursor never moves back");
        assertEquals(List.of(3L, 4L, 5L), seqs(store.pending("b@n", 0, 10)));
        assertEquals(5, count(ds, "SELECT COUNT(*) FROM relay_packet WHERE status = 'PENDING'"), "no row updated");
        assertEquals(3, count(ds, "SELECT COUNT(*) FROM relay_waiting WHERE hop = 'b@n'"));
        assertEquals(Map.of("b@n", Map.of("SENT", 2L, "PENDING", 3L)), store.counts());

        // a peer claiming more than it was given stops at the last packet committed for it: later ones still come
        assertTrue(store.acknowledge("b@n", 1_000_000, now));
        assertEquals(5, count(ds, "SELECT acked_seq FROM relay_hop_ack WHERE hop = 'b@n'"));
        assertEquals(List.of(), store.pending("b@n", 0, 10));
        assertEquals(List.of(), store.hopsWithPending());
        Packet later = RelayTreeTest.packet("a@n", "b@n", "cursor.note", "cursor", 5);
        store.storeAll(List.of(new PacketStore.Request(List.of(new PacketStore.Incoming(later, later.toJson().toString(),
                Routing.Decision.to("b@n"))), from.id(), false)), now);
        assertEquals(List.of(6L), seqs(store.pending("b@n", 0, 10)));
        assertEquals(List.of("b@n"), store.hopsWithPending());

        // ttl: only a packet still waiting becomes a dead letter; the short-lived one was delivered before it expired
        Instant afterTtl = now.plusSeconds(5);
        assertEquals(0, store.expire(afterTtl));
        Packet shortLived = Packet.create("a@n", "b@n", "cursor.short", RelayTreeTest.obj("run", "cursor"), 1);
        store.storeAll(List.of(new PacketStore.Request(List.of(new PacketStore.Incoming(shortLived,
                shortLived.toJson().toString(), Routing.Decision.to("b@n"))), from.id(), false)), now);
        assertEquals(1, store.expire(afterTtl));
        List<PacketStore.Dead> dead = store.deadLetters(null, null, 0, 10);
        assertEquals(1, dead.size());
        assertEquals(shortLived.packetId(), dead.get(0).packetId());
        assertTrue(dead.get(0).reason().startsWith("ttl expired at node n while waiting for b@n to take it"),
                dead.get(0).reason());
        assertEquals(List.of(6L), seqs(store.pending("b@n", 0, 10)), "the dead letter is not offered");

        // purge: delivered packets received before the cut are forgotten; waiting ones and dead letters stay
        assertEquals(0, store.purge(now.minusSeconds(60)), "nothing received before the cut");
        assertEquals(5, store.purge(now.plusSeconds(60)), "the five delivered");
        assertEquals(2, count(ds, "SELECT COUNT(*) FROM relay_packet"), "packet 6, still waiting, and the dead letter");
        assertEquals(List.of(6L), seqs(store.pending("b@n", 0, 10)));
        assertEquals(1, store.deadLetters(null, null, 0, 10).size());

        // a packet sent again inside the retention is still a duplicate
        assertEquals(org.hospitalhub.relay.client.SendResult.Status.DUPLICATE, store.storeAll(List.of(new PacketStore.Request(
                List.of(new PacketStore.Incoming(later, later.toJson().toString(), Routing.Decision.to("b@n"))), from.id(),
                false)), now).get(0).get(0).status());
    }

    /**
     * A peer repeating its cursor (an idle long-poller does on every poll) is answered from the cursor the store last
     * read, without the database; a cursor further on still moves it, and what the store remembers is the database's
     * cursor, not a peer's claim beyond its last packet. A second store (another replica) whose peer's cursor is already
     * there updates nothing and learns it.
     */
    private static void checkKnownCursor(DataSource real) throws Exception {
        AtomicInteger connections = new AtomicInteger();
        PacketStore store = new PacketStore(Counting.dataSource(real, connections::incrementAndGet, sql -> { }), "n", false);
        Instant now = Instant.now();
        store(store, "a@n", "b@n", 3, now);

        assertTrue(store.acknowledge("b@n", 2, now));
        int before = connections.get();
        assertFalse(store.acknowledge("b@n", 2, now), "the same cursor again");
        assertFalse(store.acknowledge("b@n", 1, now), "a cursor behind it");
        assertEquals(before, connections.get(), "both answered without the database");
        assertTrue(store.acknowledge("b@n", 3, now));
        assertEquals(before + 1, connections.get());
        assertEquals(3, count(real, "SELECT acked_seq FROM relay_hop_ack WHERE hop = 'b@n'"));

        // a claim beyond the last packet stops at it, and the store remembers 3, not the claim: packet 4 still counts
        store.acknowledge("b@n", 1_000_000, now);
        assertEquals(3, count(real, "SELECT acked_seq FROM relay_hop_ack WHERE hop = 'b@n'"));
        store(store, "a@n", "b@n", 1, now);
        assertEquals(List.of(4L), seqs(store.pending("b@n", 3, 10)));
        assertTrue(store.acknowledge("b@n", 4, now));
        assertEquals(4, count(real, "SELECT acked_seq FROM relay_hop_ack WHERE hop = 'b@n'"));
        assertEquals(List.of(), store.hopsWithPending());

        // another replica's store: its first acknowledgement of the same cursor updates nothing, and it learns the cursor
        AtomicInteger other = new AtomicInteger();
        PacketStore replica = new PacketStore(Counting.dataSource(real, other::incrementAndGet, sql -> { }), "n", false);
        assertFalse(replica.acknowledge("b@n", 4, now), "already there");
        assertFalse(replica.acknowledge("b@n", 4, now));
        assertEquals(1, other.get(), "the second time without the database");
        assertEquals(4, count(real, "SELECT acked_seq FROM relay_hop_ack WHERE hop = 'b@n'"));
    }

    private static void store(PacketStore store, String from, String to, int n, Instant now) throws SQLException {
        List<PacketStore.Incoming> batch = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            Packet p = RelayTreeTest.packet(from, to, "cursor.note", "known", i);
            batch.add(new PacketStore.Incoming(p, p.toJson().toString(), Routing.Decision.to(to)));
        }
        store.storeAll(List.of(new PacketStore.Request(batch, from, false)), now);
    }

    /**
     * The three ways a packet dies (no route when stored, refused by the next hop, ttl passed while waiting) each list
     * it once among the dead letters (relay_dead_letter, written in the same transaction), in the order they died,
     * with their reason, filtered by target and sender; a packet that is not dead is never listed.
     */
    private static void checkDeadLetters(DataSource ds) throws Exception {
        PacketStore store = new PacketStore(ds, "n", false);
        Instant now = Instant.now();
        Peer from = new Peer("a@n", Peer.Kind.CLIENT);
        Packet noRoute = RelayTreeTest.packet("a@n", "ghost@n", "dead.note", "dead", 0);
        Packet refused = RelayTreeTest.packet("a@n", "b@n", "dead.note", "dead", 1);
        Packet fine = RelayTreeTest.packet("a@n", "b@n", "dead.note", "dead", 2);
        Packet shortLived = Packet.create("c@n", "b@n", "dead.short", RelayTreeTest.obj("run", "dead"), 1);
        store.storeAll(List.of(new PacketStore.Request(List.of(
                new PacketStore.Incoming(noRoute, noRoute.toJson().toString(), Routing.Decision.dead("no route to ghost@n")),
                new PacketStore.Incoming(refused, refused.toJson().toString(), Routing.Decision.to("b@n")),
                new PacketStore.Incoming(fine, fine.toJson().toString(), Routing.Decision.to("b@n")),
                new PacketStore.Incoming(shortLived, shortLived.toJson().toString(), Routing.Decision.to("b@n"))),
                from.id(), false)), now);
        assertEquals(List.of(noRoute.packetId()), ids(store.deadLetters(null, null, 0, 10)), "dead when stored");

        PacketStore.Stored refusedRow = store.pending("b@n", 0, 10).get(0);
        assertEquals(refused.packetId(), refusedRow.packetId());
        store.markDead(List.of(refusedRow), "refused by parent p: not for its subtree", now);
        store.markDead(List.of(refusedRow), "refused again", now); // already dead: not listed twice
        assertEquals(1, store.expire(now.plusSeconds(5)), "the short-lived one");
        List<PacketStore.Dead> dead = store.deadLetters(null, null, 0, 10);
        assertEquals(List.of(noRoute.packetId(), refused.packetId(), shortLived.packetId()), ids(dead));
        assertEquals("refused by parent p: not for its subtree", dead.get(1).reason());
        assertTrue(dead.get(2).reason().startsWith("ttl expired at node n"), dead.get(2).reason());
        assertEquals(List.of(fine.packetId()), store.pending("b@n", 0, 10).stream().map(PacketStore.Stored::packetId).toList());

        assertEquals(List.of(refused.packetId(), shortLived.packetId()), ids(store.deadLetters("b@n", null, 0, 10)), "by target");
        assertEquals(List.of(shortLived.packetId()), ids(store.deadLetters(null, "c@n", 0, 10)), "by sender");
        assertEquals(List.of(shortLived.packetId()), ids(store.deadLetters(null, null, dead.get(1).id(), 10)), "after an id");
        assertEquals(3, count(ds, "SELECT COUNT(*) FROM relay_dead_letter"));
        assertEquals(3, count(ds, "SELECT COUNT(*) FROM relay_packet WHERE status = 'DEAD'"));
    }

    private static List<String> ids(List<PacketStore.Dead> dead) {
        return dead.stream().map(PacketStore.Dead::packetId).toList();
    }

    private static List<Long> seqs(List<PacketStore.Stored> rows) {
        return rows.stream().map(PacketStore.Stored::seq).toList();
    }

    static long count(DataSource ds, String sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }
}
