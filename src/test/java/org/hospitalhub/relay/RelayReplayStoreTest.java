package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import javax.sql.DataSource;

import org.hospitalhub.relay.client.Packet;
import org.junit.jupiter.api.Test;

/**
 * An operator's replay of a dead letter in the store (PacketStore.replay), on PostgreSQL and on the embedded H2: the
 * packet goes back to the hop it died waiting for, after the packets queued before it, with a new expiry in its row
 * and its body; it leaves the dead-letter list, the replay is recorded, and once its hop acknowledges it, it is
 * settled (not dead again). What is not a dead letter, what cannot be routed, a ttl past max-ttl are refused and
 * change nothing; of several simultaneous replays of one packet, one re-queues it.
 */
class RelayReplayStoreTest {

    static final Duration MAX_TTL = Duration.ofDays(1);
    static final PacketStore.Rerouting TO_B = (p, receivedFrom, fromParent) -> Routing.Decision.to("b@n");

    @Test
    void onPostgres() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("replay")) {
            check(db.dataSource);
        }
    }

    @Test
    void onH2() throws Exception {
        check(RelayOnH2Test.h2(Files.createTempDirectory("relay-replay"), "replay"));
    }

    @Test
    void concurrentReplaysRequeueOnceOnPostgres() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("replay_race")) {
            // each replay holds its transaction 0.3 s longer (before its commit), so that the replays overlap:
            // without the row lock, several would read the packet as dead and queue it
            try (Connection c = db.dataSource.getConnection(); java.sql.Statement s = c.createStatement()) {
                s.execute("CREATE FUNCTION slow_replay() RETURNS trigger LANGUAGE plpgsql AS "
                        + "$$ BEGIN PERFORM pg_sleep(0.3); RETURN NEW; END $$");
                s.execute("CREATE TRIGGER slow_replay BEFORE INSERT ON relay_replay FOR EACH ROW EXECUTE FUNCTION slow_replay()");
            }
            race(db.dataSource);
        }
    }

    @Test
    void concurrentReplaysRequeueOnceOnH2() throws Exception {
        race(RelayOnH2Test.h2(Files.createTempDirectory("relay-replay-race"), "race"));
    }

    private static void check(DataSource ds) throws Exception {
        PacketStore store = new PacketStore(ds, "n", false);
        Packet a0 = RelayTreeTest.packet("a@n", "b@n", "replay.note", "replay", 0);
        Packet doomed = new Packet("doomed", "a@n", "b@n", "replay.note", RelayTreeTest.obj("run", "replay"), Instant.now(), 1,
                null);
        Packet a1 = RelayTreeTest.packet("a@n", "b@n", "replay.note", "replay", 1);
        Packet nowhere = RelayTreeTest.packet("a@n", "ghost@n", "replay.note", "replay", 2);
        Instant now = Instant.now();
        store(store, now, incoming(a0, "b@n"), incoming(doomed, "b@n"), incoming(a1, "b@n"),
                new PacketStore.Incoming(nowhere, nowhere.toJson().toString(), Routing.Decision.dead("no client 'ghost' at n")));
        List<PacketStore.Stored> sent = store.pending("b@n", 0, 10);
        store.markAttempt(sent, "b@n unreachable");
        assertEquals(1, store.expire(now.plusSeconds(5)), "the short-lived packet died waiting for b@n");
        store.markAttempt(sent, "b@n unreachable again"); // a request on its way when it died fails: its reason stays
        List<PacketStore.Dead> dead = store.deadLetters(null, null, 0, 10);
        assertEquals(List.of("doomed", nowhere.packetId()), dead.stream().map(PacketStore.Dead::packetId).toList());
        long doomedId = dead.get(0).id();
        long nowhereId = dead.get(1).id();
        assertTrue(dead.get(0).reason().startsWith("ttl expired at node n while waiting for b@n"), dead.get(0).reason());
        assertTrue(dead.get(0).reason().contains("(1 attempts, last error: b@n unreachable)"), dead.get(0).reason());

        // replayed with 600 s from now: back to b@n at the end of its queue (seq 4, after a0 = 1 and a1 = 3)
        Instant at = now.plusSeconds(10);
        PacketStore.Replay r = store.replay(doomedId, 600L, MAX_TTL, "ops", TO_B, at);
        assertEquals("b@n", r.hop());
        assertEquals(4, r.hopSeq());
        assertEquals("b@n", r.deadHop());
        assertEquals(List.of(a0.packetId(), a1.packetId(), "doomed"), ids(store.pending("b@n", 0, 10)));
        assertEquals(List.of(nowhere.packetId()), store.deadLetters(null, null, 0, 10).stream().map(PacketStore.Dead::packetId)
                .toList(), "no longer a dead letter");
        assertEquals(1, RelayHopCursorTest.count(ds, "SELECT COUNT(*) FROM relay_dead_letter"));
        Row row = row(ds, doomedId);
        assertEquals("PENDING", row.status);
        assertEquals(0, row.attempts, "attempts reset");
        assertNull(row.lastError);
        Packet body = Packet.fromJson(HttpEndpoint.JSON.readTree(row.body));
        assertEquals(doomed.createdAt(), body.createdAt(), "createdAt kept");
        assertTrue(!body.expiresAt().isBefore(at.plusSeconds(600)) && !body.expiresAt().isAfter(at.plusSeconds(601)),
                "the body's ttl (which the next hops check) gives 600 s from the replay: " + body.expiresAt());
        assertTrue(Duration.between(body.expiresAt(), row.expiresAt).abs().toNanos() < 1000,
                "the row expires with the body (to the database's microsecond): " + row.expiresAt);
        assertEquals(PacketStore.utf8Length(row.body), row.size);
        assertEquals(body.ttl(), r.ttl());
        assertEquals(1, RelayHopCursorTest.count(ds, "SELECT COUNT(*) FROM relay_replay WHERE packet_row = " + doomedId
                + " AND replayed_by = 'ops' AND dead_hop = 'b@n' AND hop = 'b@n' AND hop_seq = 4 AND ttl_seconds = 600 "
                + "AND dead_reason LIKE 'ttl expired at node n%' AND replayed_at IS NOT NULL AND dead_at IS NOT NULL"));

        // a second replay, and ids that are not dead letters, change nothing
        Refusal again = assertThrows(Refusal.class, () -> store.replay(doomedId, 600L, MAX_TTL, "ops2", TO_B, at));
        assertEquals(409, again.status());
        assertTrue(again.getMessage().contains("is not a dead letter: it was replayed at") && again.getMessage().contains("by ops"),
                again.getMessage());
        Refusal unknown = assertThrows(Refusal.class, () -> store.replay(999_999, null, MAX_TTL, "ops", TO_B, at));
        assertEquals(404, unknown.status());
        assertEquals("id", unknown.field());
        long a0Id = RelayHopCursorTest.count(ds, "SELECT id FROM relay_packet WHERE packet_id = '" + a0.packetId() + "'");
        assertEquals(409, assertThrows(Refusal.class, () -> store.replay(a0Id, null, MAX_TTL, "ops", TO_B, at)).status(),
                "never dead");
        assertEquals(List.of(a0.packetId(), a1.packetId(), "doomed"), ids(store.pending("b@n", 0, 10)));
        assertEquals(1, RelayHopCursorTest.count(ds, "SELECT COUNT(*) FROM relay_replay"));

        // delivered: the hop's cursor passes it, and it is settled, not dead again when its new ttl passes
        store.acknowledge("b@n", 3, at);
        assertEquals(List.of("doomed"), ids(store.pending("b@n", 0, 10)));
        store.acknowledge("b@n", 4, at);
        assertEquals(List.of(), store.pending("b@n", 0, 10));
        assertEquals(0, store.expire(at.plusSeconds(3600)));
        assertEquals(1, store.deadLetters(null, null, 0, 10).size());

        // dead on arrival: replayed only once its route resolves, then to that route's hop
        assertEquals(422, assertThrows(Refusal.class, () -> store.replay(nowhereId, null, MAX_TTL, "ops",
                (p, from, down) -> Routing.Decision.dead("no client or service 'ghost' at node n"), at)).status());
        assertEquals(1, store.deadLetters(null, null, 0, 10).size(), "still a dead letter");
        assertEquals("DEAD", row(ds, nowhereId).status);
        PacketStore.Replay rerouted = store.replay(nowhereId, null, MAX_TTL, "ops", (p, from, down) -> {
            assertEquals("a@n", from);
            assertTrue(!down, "it came from below");
            return Routing.Decision.to("ghost@n");
        }, at);
        assertEquals(PacketStore.DEAD_HOP, rerouted.deadHop());
        assertEquals("ghost@n", rerouted.hop());
        assertEquals(1, rerouted.hopSeq());
        assertEquals(List.of(nowhere.packetId()), ids(store.pending("ghost@n", 0, 10)));
        assertTrue(!Packet.fromJson(HttpEndpoint.JSON.readTree(row(ds, nowhereId).body)).expiresAt()
                .isBefore(at.plusSeconds(600)), "no ttl given: the sender's 600 s, from the replay");
        assertEquals(0, store.deadLetters(null, null, 0, 10).size());

        // the ttl counts from createdAt and may not pass max-ttl; without one, the last replay's, cut to what is left
        Packet late = new Packet("late", "a@n", "b@n", "replay.note", RelayTreeTest.obj("run", "replay"), now, 1, null);
        store(store, now, incoming(late, "b@n"));
        assertEquals(1, store.expire(now.plusSeconds(5)));
        long lateId = store.deadLetters(null, null, 0, 10).get(0).id();
        Refusal tooLong = assertThrows(Refusal.class, () -> store.replay(lateId, 91L, Duration.ofSeconds(100), "ops", TO_B, at));
        assertEquals(400, tooLong.status());
        assertEquals("ttl", tooLong.field());
        assertTrue(tooLong.getMessage().contains("at most 90 s"), tooLong.getMessage());
        Refusal tooOld = assertThrows(Refusal.class,
                () -> store.replay(lateId, null, Duration.ofSeconds(100), "ops", TO_B, now.plusSeconds(100)));
        assertEquals(422, tooOld.status());
        assertEquals("max-ttl", tooOld.rule());
        assertEquals(1, store.deadLetters(null, null, 0, 10).size(), "refusals change nothing");
        assertEquals(30, store.replay(lateId, 20L, MAX_TTL, "ops", TO_B, at).ttl(), "10 s old + 20 s");
        assertEquals(1, store.expire(at.plusSeconds(21)), "dead again");
        PacketStore.Replay capped = store.replay(lateId, null, Duration.ofSeconds(40), "ops", TO_B, at.plusSeconds(25));
        assertEquals(40, capped.ttl(), "the last replay's 20 s from 35 s of age, cut to max-ttl's 40");
        assertEquals(1, store.expire(at.plusSeconds(45)));
        PacketStore.Replay last = store.replay(lateId, null, MAX_TTL, "ops", TO_B, at.plusSeconds(50));
        assertEquals(60 + 5, last.ttl(), "the 5 s the last replay gave it, from 60 s of age");
        assertEquals(List.of(6L, 7L, 8L), seqsOfReplays(ds, lateId), "each replay at the end of the hop");

        // the topology changed since it died: the hop it waited for is no longer its route
        store.expire(at.plusSeconds(200));
        Refusal moved = assertThrows(Refusal.class, () -> store.replay(lateId, null, MAX_TTL, "ops",
                (p, from, down) -> Routing.Decision.to("elsewhere"), at.plusSeconds(200)));
        assertEquals(409, moved.status());
        assertEquals("same-hop", moved.rule());
        assertEquals("DEAD", row(ds, lateId).status);
    }

    /** Eight operators replay the same dead letter at once: one re-queues it, seven are told it is not dead. */
    private static void race(DataSource ds) throws Exception {
        PacketStore store = new PacketStore(ds, "n", false);
        Instant now = Instant.now();
        Packet doomed = new Packet("race", "a@n", "b@n", "race.note", RelayTreeTest.obj("run", "race"), now, 1, null);
        store(store, now, incoming(RelayTreeTest.packet("a@n", "b@n", "race.note", "race", 0), "b@n"), incoming(doomed, "b@n"));
        assertEquals(1, store.expire(now.plusSeconds(5)));
        long id = store.deadLetters(null, null, 0, 10).get(0).id();
        int n = 8;
        CyclicBarrier start = new CyclicBarrier(n);
        ExecutorService pool = Executors.newFixedThreadPool(n);
        List<Future<Integer>> outcomes = new ArrayList<>();
        try {
            for (int i = 0; i < n; i++) {
                String by = "ops-" + i;
                outcomes.add(pool.submit(() -> {
                    start.await(10, TimeUnit.SECONDS);
                    try {
                        store.replay(id, 60L, MAX_TTL, by, TO_B, now.plusSeconds(10));
                        return 200;
                    } catch (Refusal r) {
                        return r.status();
                    }
                }));
            }
            List<Integer> statuses = new ArrayList<>();
            for (Future<Integer> f : outcomes) {
                statuses.add(f.get(30, TimeUnit.SECONDS));
            }
            assertEquals(1, statuses.stream().filter(s -> s == 200).count(), "one replay re-queued it: " + statuses);
            assertEquals(n - 1, statuses.stream().filter(s -> s == 409).count(), statuses.toString());
        } finally {
            pool.shutdownNow();
        }
        assertEquals(List.of(3L), seqsOfReplays(ds, id));
        assertEquals(List.of(1L, 3L), store.pending("b@n", 0, 10).stream().map(PacketStore.Stored::seq).toList(),
                "queued once, at the end");
        assertEquals(4, RelayHopCursorTest.count(ds, "SELECT next_seq FROM relay_hop WHERE hop = 'b@n'"),
                "one sequence number taken");
        assertEquals(0, store.deadLetters(null, null, 0, 10).size());
    }

    private static PacketStore.Incoming incoming(Packet p, String hop) {
        return new PacketStore.Incoming(p, p.toJson().toString(), Routing.Decision.to(hop));
    }

    private static void store(PacketStore store, Instant now, PacketStore.Incoming... batch) throws SQLException {
        store.storeAll(List.of(new PacketStore.Request(List.of(batch), "a@n", false)), now);
    }

    private static List<String> ids(List<PacketStore.Stored> rows) {
        return rows.stream().map(PacketStore.Stored::packetId).toList();
    }

    private record Row(String status, int attempts, String lastError, String body, int size, Instant expiresAt) {
    }

    private static Row row(DataSource ds, long id) throws SQLException {
        try (Connection c = ds.getConnection(); PreparedStatement q = c.prepareStatement("SELECT status, attempts, last_error, "
                + "body, size_bytes, expires_at FROM relay_packet WHERE id = ?")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return new Row(rs.getString(1), rs.getInt(2), rs.getString(3), rs.getString(4), rs.getInt(5),
                        rs.getObject(6, java.time.OffsetDateTime.class).toInstant());
            }
        }
    }

    private static List<Long> seqsOfReplays(DataSource ds, long id) throws SQLException {
        List<Long> out = new ArrayList<>();
        try (Connection c = ds.getConnection();
                PreparedStatement q = c.prepareStatement("SELECT hop_seq FROM relay_replay WHERE packet_row = ? ORDER BY id")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(rs.getLong(1));
                }
            }
        }
        return out;
    }
}
