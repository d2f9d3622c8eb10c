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
        try (Connection c = ds.getConnection(); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT COUNT(*) FROM relay_packet WHERE sender = 'x@child'")) {
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
