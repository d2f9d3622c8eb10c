package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.nio.file.Files;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.IntStream;
import java.util.stream.LongStream;

import org.h2.jdbcx.JdbcDataSource;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.RelayClient;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * A node commits the requests that wait together in one transaction (group commit), and a client may take what it
 * receives in batches: each request still gets its own results, one request that cannot be stored does not fail the
 * others, duplicates are stored once, order per sender is kept; a batch whose handler fails comes again whole.
 */
class RelayGroupCommitTest {

    @Test
    void requestsWaitingTogetherAreCommittedTogetherEachWithItsOwnResults() throws Exception {
        JdbcDataSource ds = h2("group");
        try (RelayNode top = RelayNode.builder().topology(Topology.parse("""
                node: top
                clients: [{id: a, transport: tcp}, {id: b, transport: tcp}, {id: r, transport: http}]
                """, "top")).tokens(RelayTokens.parse("a:t-a;b:t-b;r:t-r")).dataSource(ds).host("127.0.0.1")
                .options(RelayTreeTest.FAST).build().start()) {
            Peer a = new Peer("a@top", Peer.Kind.CLIENT);
            Peer b = new Peer("b@top", Peer.Kind.CLIENT);
            List<List<PacketStore.Incoming>> requests = new ArrayList<>();
            List<Packet> sentByA = new ArrayList<>();
            for (int i = 0; i < 200; i++) {
                Packet p = RelayTreeTest.packet("a@top", "r@top", "group.note", "group", i);
                sentByA.add(p);
                requests.add(top.validate(array(p), a));
                if (i % 50 == 10) { // a copy of an earlier packet, in the same burst: stored once
                    requests.add(top.validate(array(sentByA.get(i - 5)), a));
                }
            }
            List<CompletableFuture<List<SendResult>>> results = new ArrayList<>();
            for (List<PacketStore.Incoming> r : requests) { // queued in a burst, faster than one transaction commits
                results.add(top.storeAsync(r, a));
            }
            int stored = 0;
            int duplicates = 0;
            for (CompletableFuture<List<SendResult>> f : results) {
                List<SendResult> r = f.get(20, TimeUnit.SECONDS);
                assertEquals(1, r.size(), "each request gets the results of its own packets");
                if (r.get(0).status() == SendResult.Status.STORED) {
                    stored++;
                } else {
                    assertEquals(SendResult.Status.DUPLICATE, r.get(0).status());
                    duplicates++;
                }
            }
            assertEquals(200, stored);
            assertEquals(4, duplicates);

            // a request the database refuses (a hop longer than its column: routing was bypassed) fails alone, not the
            // requests committed with it
            Packet broken = RelayTreeTest.packet("b@top", "r@top", "group.note", "broken", 0);
            List<List<PacketStore.Incoming>> fineRequests = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                fineRequests.add(top.validate(array(RelayTreeTest.packet("b@top", "r@top", "group.note", "fine", i)), b));
            }
            List<CompletableFuture<List<SendResult>>> fine = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                fine.add(top.storeAsync(fineRequests.get(i), b));
            }
            CompletableFuture<List<SendResult>> refused = top.storeAsync(List.of(new PacketStore.Incoming(broken,
                    broken.toJson().toString(), Routing.Decision.to("r@top" + "x".repeat(300)))), b);
            for (int i = 10; i < 20; i++) {
                fine.add(top.storeAsync(fineRequests.get(i), b));
            }
            ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class,
                    () -> refused.get(20, TimeUnit.SECONDS));
            assertTrue(e.getCause() instanceof java.sql.SQLException, e.toString());
            for (CompletableFuture<List<SendResult>> f : fine) {
                assertEquals(SendResult.Status.STORED, f.get(20, TimeUnit.SECONDS).get(0).status(),
                        "the requests queued around the refused one are stored");
            }

            try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                assertEquals(220, count(s, "SELECT COUNT(*) FROM relay_packet WHERE hop = 'r@top'"), "stored once each");
                long transactions = count(s, "SELECT COUNT(DISTINCT received_at) FROM relay_packet WHERE hop = 'r@top' "
                        + "AND sender = 'a@top'");
                assertTrue(transactions < 100, "a burst of 205 requests took " + transactions + " transactions");
                List<Integer> order = new ArrayList<>();
                try (ResultSet rs = s.executeQuery("SELECT body FROM relay_packet WHERE hop = 'r@top' AND sender = 'a@top' "
                        + "ORDER BY hop_seq")) {
                    while (rs.next()) {
                        order.add(RelayTreeTest.JSON.readTree(rs.getString(1)).path("parameters").path("n").asInt());
                    }
                }
                assertEquals(IntStream.range(0, 200).boxed().toList(), order, "hop order is the order the requests came in");
                assertEquals(0, count(s, "SELECT COUNT(*) FROM relay_packet WHERE packet_id = '" + broken.packetId() + "'"),
                        "nothing of the refused request is stored");
            }
        }
    }

    @Test
    void aBatchWhoseHandlerFailsComesAgainWholeOverTcpAndHttp() throws Exception {
        JdbcDataSource ds = h2("batch");
        int http = RelayTreeTest.freePort();
        int tcp = RelayTreeTest.freePort();
        try (RelayNode top = RelayNode.builder().topology(Topology.parse("""
                node: top
                clients: [{id: s, transport: tcp}, {id: rt, transport: tcp}, {id: rh, transport: http}]
                """, "top")).tokens(RelayTokens.parse("s:t-s;rt:t-rt;rh:t-rh")).dataSource(ds).httpPort(http).tcpPort(tcp)
                .host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                Mailbox sender = Mailbox.tcp("s@top", tcp, "t-s")) {
            List<CompletableFuture<SendResult>> sent = new ArrayList<>();
            for (int i = 0; i < 300; i++) {
                sent.add(sender.client.send(RelayTreeTest.packet("s@top", "rt@top", "batch.note", "batch", i)));
                sent.add(sender.client.send(RelayTreeTest.packet("s@top", "rh@top", "batch.note", "batch", i)));
            }
            for (CompletableFuture<SendResult> f : sent) {
                assertEquals(SendResult.Status.STORED, f.get(20, TimeUnit.SECONDS).status());
            }
            for (RelayClient.Builder b : List.of(RelayClient.builder().tcp("127.0.0.1", tcp).token("t-rt"),
                    RelayClient.builder().http(URI.create("http://127.0.0.1:" + http)).token("t-rh"))) {
                List<Integer> got = new CopyOnWriteArrayList<>();
                List<Integer> batchSizes = new CopyOnWriteArrayList<>();
                AtomicInteger failuresLeft = new AtomicInteger(2);
                try (RelayClient c = b.onPackets(ps -> {
                    if (failuresLeft.getAndDecrement() > 0) {
                        throw new IllegalStateException("receiver's database briefly down");
                    }
                    batchSizes.add(ps.size());
                    ps.forEach(p -> got.add(p.parameters().path("n").asInt()));
                }).heartbeat(Duration.ofSeconds(1)).pollWait(Duration.ofSeconds(2)).requestTimeout(Duration.ofSeconds(2))
                        .reconnect(Duration.ofMillis(50), Duration.ofMillis(200)).build().start()) {
                    await().atMost(Duration.ofSeconds(30)).until(() -> got.size() >= 300);
                    Thread.sleep(300); // anything still coming would be a duplicate
                    assertEquals(IntStream.range(0, 300).boxed().toList(), got, "every packet once, in order, after two failed batches");
                    assertTrue(batchSizes.stream().anyMatch(n -> n > 1), "packets came in batches: " + batchSizes);
                }
            }
        }
    }

    /**
     * A peer that sends its SEND frames one packet each and without waiting for the ACKs (as a busy client does):
     * the frames that arrive while one request is being stored are stored together after it, as one request, and
     * each frame still gets its own ACK, in order, with its own result. Without that, one connection was held to
     * one frame per group commit.
     */
    @Test
    void sendFramesArrivingWhileOneIsStoredAreStoredTogetherEachWithItsOwnAck() throws Exception {
        JdbcDataSource ds = h2("coalesce");
        int tcp = RelayTreeTest.freePort();
        try (RelayNode top = senderAndReceiver(ds, tcp); RawTcpPeer peer = RawTcpPeer.hello(tcp, "t-s")) {
            var out = peer.out;
            var in = peer.in;
            int n = 300;
            List<Packet> sent = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                Packet p = RelayTreeTest.packet("s@top", "r@top", "coalesce.note", "coalesce", i);
                sent.add(p);
                frame(out, "{\"type\":\"SEND\",\"ref\":" + (i + 1) + ",\"packets\":[" + p.toJson() + "]}");
                if (i == 5) {
                    // the copy of an earlier packet, in its own frame: its ACK says DUPLICATE
                    frame(out, "{\"type\":\"SEND\",\"ref\":1000,\"packets\":[" + sent.get(2).toJson() + "]}");
                }
            }
            out.flush();
            List<Long> refs = new ArrayList<>();
            for (int i = 0; i < n + 1; i++) {
                var ack = read(in);
                assertEquals("ACK", ack.path("type").asText(), ack.toString());
                long ref = ack.path("ref").asLong();
                refs.add(ref);
                var results = ack.path("results");
                assertEquals(1, results.size(), ack.toString());
                if (ref == 1000) {
                    assertEquals(sent.get(2).packetId(), results.get(0).path("packetId").asText());
                    assertEquals("DUPLICATE", results.get(0).path("status").asText());
                } else {
                    assertEquals(sent.get((int) ref - 1).packetId(), results.get(0).path("packetId").asText());
                    assertEquals("STORED", results.get(0).path("status").asText());
                }
            }
            List<Long> expected = new ArrayList<>();
            for (long r = 1; r <= n; r++) {
                expected.add(r);
                if (r == 6) {
                    expected.add(1000L);
                }
            }
            assertEquals(expected, refs, "one ACK per frame, in the order the frames were sent");
            try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                assertEquals(n, count(s, "SELECT COUNT(*) FROM relay_packet WHERE sender = 's@top'"));
                long transactions = count(s, "SELECT COUNT(DISTINCT received_at) FROM relay_packet WHERE sender = 's@top'");
                assertTrue(transactions <= n / 5, n + " frames from one connection took " + transactions + " transactions");
                List<Integer> order = new ArrayList<>();
                try (ResultSet rs = s.executeQuery("SELECT body FROM relay_packet WHERE sender = 's@top' ORDER BY hop_seq")) {
                    while (rs.next()) {
                        order.add(RelayTreeTest.JSON.readTree(rs.getString(1)).path("parameters").path("n").asInt());
                    }
                }
                assertEquals(IntStream.range(0, n).boxed().toList(), order, "stored in the order sent");
            }
        }
    }

    /**
     * A store that fails (here a database constraint refuses one packet) is not acknowledged and the connection is
     * closed; nothing the peer sent after it on that connection is stored, so when the peer sends again, in order, on a
     * new connection, the order holds. (Before, the frames queued behind a failed one were still stored.)
     */
    @Test
    void nothingSentAfterAFailedStoreOnTheSameConnectionIsStored() throws Exception {
        JdbcDataSource ds = h2("poison");
        try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
            s.execute("ALTER TABLE relay_packet ADD CONSTRAINT ck_test_poison CHECK (command <> 'poison')");
        }
        int tcp = RelayTreeTest.freePort();
        try (RelayNode top = senderAndReceiver(ds, tcp); RawTcpPeer peer = RawTcpPeer.hello(tcp, "t-s")) {
            var out = peer.out;
            var in = peer.in;
            List<Long> acked = new ArrayList<>();
            for (int i = 0; i < 10; i++) {
                sendOne(out, i);
            }
            out.flush();
            for (int i = 0; i < 10; i++) {
                acked.add(read(in).path("ref").asLong());
            }
            // hold the hop's counter so that the failing frame is still being stored when the rest arrive
            try (Connection lock = ds.getConnection()) {
                lock.setAutoCommit(false);
                try (Statement s = lock.createStatement()) {
                    s.executeQuery("SELECT next_seq FROM relay_hop WHERE hop = 'r@top' FOR UPDATE").close();
                }
                sendOne(out, 10);
                out.flush();
                Thread.sleep(300);
                for (int i = 11; i < 50; i++) {
                    sendOne(out, i);
                }
                out.flush();
                Thread.sleep(300);
                lock.commit();
            }
            try {
                while (true) {
                    var f = read(in);
                    assertEquals("ACK", f.path("type").asText(), f.toString());
                    acked.add(f.path("ref").asLong());
                }
            } catch (java.io.EOFException | java.net.SocketException closed) {
                // the node closed the connection after the failed store
            }
            assertEquals(LongStream.range(0, 10).boxed().toList(), acked, "acknowledged up to the failed frame");
            // the database is fine again (the failure was transient): the peer sends again what was not acknowledged,
            // in order, on a new connection
            try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                s.execute("ALTER TABLE relay_packet DROP CONSTRAINT ck_test_poison");
            }
            try (RawTcpPeer again = RawTcpPeer.hello(tcp, "t-s")) {
                for (int i = 10; i < 50; i++) {
                    sendOne(again.out, i);
                }
                again.out.flush();
                for (int i = 10; i < 50; i++) {
                    read(again.in);
                }
            }
            try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
                List<Long> stored = new ArrayList<>();
                try (ResultSet rs = s.executeQuery("SELECT body FROM relay_packet WHERE sender = 's@top' ORDER BY hop_seq")) {
                    while (rs.next()) {
                        stored.add(RelayTreeTest.JSON.readTree(rs.getString(1)).path("parameters").path("n").asLong());
                    }
                }
                assertEquals(LongStream.range(0, 50).boxed().toList(), stored,
                        "each once and in the order sent: nothing behind the failed frame was stored before it");
            }
        }
    }

    /** A node with client s (TCP) sending to client r. */
    /**
     * The raw peer sends no heartbeats, and a node closes a TCP connection idle for three heartbeats: with FAST's 1 s
     * heartbeat, a CI run (a loaded machine) closed the peer's connection while the node was still storing its burst
     * of 300 frames. These tests are about storing and acknowledging, so the heartbeat here is 10 s.
     */
    private static final RelayOptions NO_HEARTBEATS_NEEDED = RelayOptions.defaults().withTimings(Duration.ofSeconds(10),
            Duration.ofSeconds(2), Duration.ofSeconds(2), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofMillis(300));

    private static RelayNode senderAndReceiver(JdbcDataSource ds, int tcp) {
        return RelayNode.builder().topology(Topology.parse("""
                node: top
                clients: [{id: s, transport: tcp}, {id: r, transport: http}]
                """, "top")).tokens(RelayTokens.parse("s:t-s;r:t-r")).dataSource(ds).tcpPort(tcp).host("127.0.0.1")
                .options(NO_HEARTBEATS_NEEDED).build().start();
    }

    /** A client speaking the TCP wire protocol by hand (the SDK batches its sends; this one sends what it is told). */
    private record RawTcpPeer(java.net.Socket socket, java.io.DataOutputStream out, java.io.DataInputStream in)
            implements AutoCloseable {

        static RawTcpPeer hello(int tcp, String token) throws java.io.IOException {
            java.net.Socket socket = new java.net.Socket("127.0.0.1", tcp);
            socket.setSoTimeout(20_000);
            RawTcpPeer p = new RawTcpPeer(socket, new java.io.DataOutputStream(new java.io.BufferedOutputStream(
                    socket.getOutputStream())), new java.io.DataInputStream(new java.io.BufferedInputStream(socket.getInputStream())));
            frame(p.out, "{\"type\":\"HELLO\",\"token\":\"" + token + "\",\"cursor\":0}");
            p.out.flush();
            assertEquals("WELCOME", read(p.in).path("type").asText());
            return p;
        }

        @Override
        public void close() throws java.io.IOException {
            socket.close();
        }
    }

    private static void sendOne(java.io.DataOutputStream out, int i) throws java.io.IOException {
        Packet p = RelayTreeTest.packet("s@top", "r@top", i == 10 ? "poison" : "poison.note", "poison", i);
        frame(out, "{\"type\":\"SEND\",\"ref\":" + i + ",\"packets\":[" + p.toJson() + "]}");
    }

    private static void frame(java.io.DataOutputStream out, String json) throws java.io.IOException {
        byte[] b = json.getBytes(java.nio.charset.StandardCharsets.UTF_8);
        out.writeInt(b.length);
        out.write(b);
    }

    private static com.fasterxml.jackson.databind.JsonNode read(java.io.DataInputStream in) throws java.io.IOException {
        byte[] b = new byte[in.readInt()];
        in.readFully(b);
        return RelayTreeTest.JSON.readTree(b);
    }

    private static com.fasterxml.jackson.databind.JsonNode array(Packet p) {
        return RelayTreeTest.JSON.createArrayNode().add(p.toJson());
    }

    private static long count(Statement s, String sql) throws Exception {
        try (ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static JdbcDataSource h2(String name) throws Exception {
        return RelayOnH2Test.h2(Files.createTempDirectory("relay-group"), name);
    }
}
