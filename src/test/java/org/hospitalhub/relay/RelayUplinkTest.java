package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.h2.jdbcx.JdbcDataSource;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * A child node's link to its parent reads its next request while the one before is on its way. When the parent
 * cannot store a request, what was read behind it must not go ahead of it: the parent gets everything, once and in
 * order, after the failure has passed.
 */
class RelayUplinkTest {

    @Test
    void aRequestTheParentCannotStoreHoldsBackTheRequestsBehindIt() throws Exception {
        Path dir = Files.createTempDirectory("relay-uplink");
        JdbcDataSource topDs = RelayOnH2Test.h2(dir, "top");
        JdbcDataSource childDs = RelayOnH2Test.h2(dir, "child");
        // the parent's database refuses one packet of the first request (a transient fault: it is lifted below)
        execute(topDs, "ALTER TABLE relay_packet ADD CONSTRAINT ck_test_stuck CHECK (command <> 'stuck')");
        int topTcp = RelayTreeTest.freePort();
        int childTcp = RelayTreeTest.freePort();
        int total = 1_200; // more than two of the uplink's 500-packet requests
        try (RelayNode top = RelayNode.builder().topology(Topology.parse("""
                node: top
                children: [{id: child, transport: tcp}]
                clients: [{id: r, transport: http}]
                """, "top")).tokens(RelayTokens.parse("child:t-child;r:t-r")).dataSource(topDs).tcpPort(topTcp)
                .host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                RelayNode child = RelayNode.builder().topology(Topology.parse("""
                        node: child
                        parent: {id: top, transport: tcp, host: 127.0.0.1, port: %d}
                        clients: [{id: x, transport: tcp}]
                        """.formatted(topTcp), "child")).tokens(RelayTokens.parse("x:t-x")).parentToken("t-child")
                        .dataSource(childDs).tcpPort(childTcp).host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                Mailbox x = Mailbox.tcp("x@child", childTcp, "t-x")) {
            List<CompletableFuture<SendResult>> sent = new ArrayList<>();
            for (int i = 0; i < total; i++) {
                sent.add(x.client.send(RelayTreeTest.packet("x@child", "r@top", i == 100 ? "stuck" : "uplink.note", "uplink", i)));
            }
            for (CompletableFuture<SendResult> f : sent) {
                assertEquals(SendResult.Status.STORED, f.get(30, TimeUnit.SECONDS).status(), "stored at the child");
            }
            // longer than the client's send timeout (2 × the 2 s request timeout) and the uplink's wait (3 ×): the
            // first request has failed at least once, and the requests behind it had every chance to jump the queue
            Thread.sleep(9_000);
            List<Integer> before = stored(topDs);
            assertEquals(IntStream.range(0, before.size()).boxed().toList(), before,
                    "while the request with packet 100 fails, the parent holds only what came before it, in order");
            assertTrue(before.size() <= 100, "nothing from behind packet 100 went ahead: " + before.size());
            execute(topDs, "ALTER TABLE relay_packet DROP CONSTRAINT ck_test_stuck");
            await().atMost(Duration.ofSeconds(30)).until(() -> count(topDs) >= total);
            assertEquals(IntStream.range(0, total).boxed().toList(), stored(topDs), "each packet once, in the order sent");
            Packet probe = RelayTreeTest.packet("x@child", "r@top", "uplink.after", "uplink-after", 0);
            assertEquals(SendResult.Status.STORED, x.client.send(probe).get(10, TimeUnit.SECONDS).status());
            await().atMost(Duration.ofSeconds(10)).until(() -> count(topDs) == total + 1);
        }
    }

    /**
     * Packets near the size limit (60 KB each), 80 of them waiting together: neither the client's request (its waiting
     * sends merged) nor the uplink's may exceed what the next hop takes at once (a 4 MiB frame), or the hop would close
     * the connection on every attempt and they would never get through. The client is started before its node, so that
     * all 80 sends wait to be merged; the parent some seconds after the child has stored them, so that the uplink reads
     * all 80 at once. All arrive, once and in order, in requests the parent takes whole.
     */
    @Test
    void largePacketsWaitingTogetherNeverMakeARequestTooLargeForTheNextHop() throws Exception {
        Path dir = Files.createTempDirectory("relay-uplink-large");
        JdbcDataSource topDs = RelayOnH2Test.h2(dir, "top");
        JdbcDataSource childDs = RelayOnH2Test.h2(dir, "child");
        int topTcp = RelayTreeTest.freePort();
        int childTcp = RelayTreeTest.freePort();
        int total = 80;
        String filler = "x".repeat(60_000);
        RelayNode top = null;
        RelayNode child = null;
        try (Mailbox x = Mailbox.tcp("x@child", childTcp, "t-x")) {
            List<CompletableFuture<SendResult>> sent = new ArrayList<>();
            for (int i = 0; i < total; i++) {
                sent.add(x.client.send(Packet.create("x@child", "r@top", "uplink.large",
                        RelayTreeTest.obj("run", "large").put("n", i).put("filler", filler), 600)));
            }
            child = RelayNode.builder().topology(Topology.parse("""
                    node: child
                    parent: {id: top, transport: tcp, host: 127.0.0.1, port: %d}
                    clients: [{id: x, transport: tcp}]
                    """.formatted(topTcp), "child")).tokens(RelayTokens.parse("x:t-x")).parentToken("t-child")
                    .dataSource(childDs).tcpPort(childTcp).host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
            for (CompletableFuture<SendResult> f : sent) {
                assertEquals(SendResult.Status.STORED, f.get(30, TimeUnit.SECONDS).status(), "stored at the child");
            }
            // longer than the uplink waits for an answer (3 × the 2 s request timeout): it gives up what it queued
            // while the parent was down and reads again from its cursor, all 80 at once
            Thread.sleep(7_000);
            top = RelayNode.builder().topology(Topology.parse("""
                    node: top
                    children: [{id: child, transport: tcp}]
                    clients: [{id: r, transport: http}]
                    """, "top")).tokens(RelayTokens.parse("child:t-child;r:t-r")).dataSource(topDs).tcpPort(topTcp)
                    .host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
            await().atMost(Duration.ofSeconds(30)).until(() -> count(topDs) >= total);
            assertEquals(IntStream.range(0, total).boxed().toList(), stored(topDs), "each packet once, in the order sent");
            // one receive time per transaction at the parent: the uplink sent requests of about 1 MiB (5 here), not a
            // request too large followed by every packet on its own (80)
            long requests = count(topDs, "SELECT COUNT(DISTINCT received_at) FROM relay_packet WHERE sender = 'x@child'");
            assertTrue(requests <= 10, "transactions at the parent: " + requests);
        } finally {
            if (child != null) {
                child.close();
            }
            if (top != null) {
                top.close();
            }
        }
    }

    /** The numbers of x's packets the parent stored, in its hop order. */
    private static List<Integer> stored(JdbcDataSource ds) throws Exception {
        List<Integer> order = new ArrayList<>();
        try (Connection c = ds.getConnection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT body FROM relay_packet WHERE sender = 'x@child' ORDER BY hop_seq")) {
            while (rs.next()) {
                order.add(RelayTreeTest.JSON.readTree(rs.getString(1)).path("parameters").path("n").asInt());
            }
        }
        return order;
    }

    private static long count(JdbcDataSource ds) throws SQLException {
        return count(ds, "SELECT COUNT(*) FROM relay_packet WHERE sender = 'x@child'");
    }

    private static long count(JdbcDataSource ds, String sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static void execute(JdbcDataSource ds, String sql) throws SQLException {
        try (Connection c = ds.getConnection(); Statement s = c.createStatement()) {
            s.execute(sql);
        }
    }
}
