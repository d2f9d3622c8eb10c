package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * A group of packets for many hops (a packet to each of thousands of clients) reserves their sequence numbers on
 * PostgreSQL in a few statements, not one to four per hop; the numbers are what hop-by-hop reservation gives, and
 * writers storing groups for overlapping hops at once (new hops among them, groups large and small) never deadlock
 * and leave every hop's numbers contiguous.
 */
class RelayManyHopsTest {

    @Test
    void aGroupForManyHopsReservesInAFewStatements() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("manyhops")) {
            AtomicInteger statements = new AtomicInteger();
            PacketStore store = new PacketStore(Counting.dataSource(db.dataSource, () -> { }, sql -> statements.incrementAndGet()), "n", false);
            Instant now = Instant.now();
            store.storeAll(List.of(request(List.of("c005@n"), 0)), now); // one hop already has a packet

            List<String> hops = new ArrayList<>();
            for (int i = 0; i < 200; i++) {
                hops.add(String.format("c%03d@n", i));
            }
            Collections.reverse(hops); // not in name order
            List<PacketStore.Incoming> batch = new ArrayList<>(request(hops, 1).batch());
            Packet lost = RelayTreeTest.packet("a@n", "x@nowhere", "many.hops", "many", 0);
            batch.add(new PacketStore.Incoming(lost, lost.toJson().toString(), Routing.Decision.dead("no route to x@nowhere")));
            statements.set(0);
            List<SendResult> results = store.storeAll(List.of(new PacketStore.Request(batch, "a@n", false)), now).get(0);
            assertTrue(statements.get() <= 12, "statements for a group of 200 hops: " + statements.get());
            assertEquals(201, results.size());
            assertEquals(200, results.stream().filter(r -> r.status() == SendResult.Status.STORED).count());
            assertEquals(SendResult.Status.DEAD, results.get(200).status());

            assertEquals(List.of(1L, 2L), seqs(store.pending("c005@n", 0, 10)), "after the packet it had");
            for (String hop : hops) {
                if (!hop.equals("c005@n")) {
                    assertEquals(List.of(1L), seqs(store.pending(hop, 0, 10)), hop);
                }
            }
            assertEquals(1, store.deadLetters(null, null, 0, 10).size());
            assertEquals(200, db.count("SELECT COUNT(*) FROM relay_hop_ack WHERE hop LIKE 'c%'"), "a cursor per hop");

            // a group whose ttl passed on its way: stored dead, on the dead hop the many-hop path created
            List<PacketStore.Incoming> expired = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                Packet p = Packet.create("a@n", String.format("d%02d@n", i), "many.hops", RelayTreeTest.obj("run", "many"), 1);
                expired.add(new PacketStore.Incoming(p, p.toJson().toString(), Routing.Decision.to(p.to())));
            }
            List<SendResult> dead = store.storeAll(List.of(new PacketStore.Request(expired, "a@n", false)),
                    now.plusSeconds(60)).get(0);
            assertTrue(dead.stream().allMatch(r -> r.status() == SendResult.Status.DEAD), dead.toString());
            assertEquals(11, store.deadLetters(null, null, 0, 100).size());
        }
    }

    @Test
    void writersOfOverlappingGroupsNeverDeadlockAndNumbersStayContiguous() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("manyhops_race")) {
            PacketStore store = new PacketStore(db.dataSource, "n", false);
            ExecutorService pool = Executors.newFixedThreadPool(4);
            try {
                List<Future<?>> writers = new ArrayList<>();
                for (int w = 0; w < 4; w++) {
                    Random random = new Random(w);
                    writers.add(pool.submit(() -> {
                        for (int i = 0; i < 40; i++) {
                            List<String> hops = new ArrayList<>();
                            for (int h = 0; h < 30; h++) {
                                hops.add(String.format("r%02d@n", h));
                            }
                            Collections.shuffle(hops, random);
                            // large groups (the many-hop path) and small ones (hop by hop), new hops among them
                            int size = random.nextBoolean() ? 12 + random.nextInt(18) : 1 + random.nextInt(PacketStore.MANY_HOPS);
                            store.storeAll(List.of(request(hops.subList(0, size), i)), Instant.now());
                        }
                        return null;
                    }));
                }
                for (Future<?> f : writers) {
                    f.get(120, TimeUnit.SECONDS);
                }
            } finally {
                pool.shutdownNow();
            }
            try (Connection c = db.dataSource.getConnection(); Statement s = c.createStatement();
                    ResultSet rs = s.executeQuery("SELECT p.hop, COUNT(*), COUNT(DISTINCT p.hop_seq), MIN(p.hop_seq), "
                            + "MAX(p.hop_seq), MAX(h.next_seq) FROM relay_packet p JOIN relay_hop h ON h.hop = p.hop GROUP BY p.hop")) {
                int hops = 0;
                while (rs.next()) {
                    hops++;
                    long n = rs.getLong(2);
                    assertEquals(n, rs.getLong(3), rs.getString(1) + ": no number twice");
                    assertEquals(1, rs.getLong(4), rs.getString(1));
                    assertEquals(n, rs.getLong(5), rs.getString(1) + ": no gap");
                    assertEquals(n + 1, rs.getLong(6), rs.getString(1) + ": the counter follows");
                }
                assertEquals(30, hops);
            }
        }
    }

    private static PacketStore.Request request(List<String> hops, int n) {
        List<PacketStore.Incoming> batch = new ArrayList<>();
        for (String hop : hops) {
            Packet p = RelayTreeTest.packet("a@n", hop, "many.hops", "many", n);
            batch.add(new PacketStore.Incoming(p, p.toJson().toString(), Routing.Decision.to(hop)));
        }
        return new PacketStore.Request(batch, "a@n", false);
    }

    private static List<Long> seqs(List<PacketStore.Stored> rows) {
        return rows.stream().map(PacketStore.Stored::seq).toList();
    }
}
