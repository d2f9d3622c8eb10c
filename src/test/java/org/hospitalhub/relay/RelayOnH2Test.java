package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.flywaydb.core.Flyway;
import org.h2.jdbcx.JdbcDataSource;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * The relay on the embedded default database (H2 files in PostgreSQL mode, migrated by the hub's own migrations): a
 * top node and a child, a TCP client and an HTTP client exchanging packets both ways, in order, a duplicate dropped.
 */
class RelayOnH2Test {

    @Test
    void aSmallTreeWorksOnTheEmbeddedDatabase() throws Exception {
        Path dir = Files.createTempDirectory("relay-h2");
        JdbcDataSource topDs = h2(dir, "top");
        JdbcDataSource childDs = h2(dir, "child");
        int topHttp = RelayTreeTest.freePort();
        int topTcp = RelayTreeTest.freePort();
        int childHttp = RelayTreeTest.freePort();
        try (RelayNode top = RelayNode.builder().topology(Topology.parse("""
                node: top
                children: [{id: child, transport: http}]
                clients: [{id: x, transport: tcp}]
                """, "top")).tokens(RelayTokens.parse("child:t-child;x:t-x")).dataSource(topDs).httpPort(topHttp)
                .tcpPort(topTcp).host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                RelayNode child = RelayNode.builder().topology(Topology.parse("""
                        node: child
                        parent: {id: top, transport: http, url: "http://127.0.0.1:%d"}
                        clients: [{id: y, transport: http}]
                        """.formatted(topHttp), "child")).tokens(RelayTokens.parse("y:t-y")).parentToken("t-child")
                        .dataSource(childDs).httpPort(childHttp).host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                Mailbox x = Mailbox.tcp("x@top", topTcp, "t-x");
                Mailbox y = Mailbox.http("y@child", childHttp, "t-y")) {
            List<CompletableFuture<SendResult>> sent = new ArrayList<>();
            for (int i = 0; i < 20; i++) {
                sent.add(x.client.send(RelayTreeTest.packet("x@top", "y@child", "h2.note", "h2", i)));
                sent.add(y.client.send(RelayTreeTest.packet("y@child", "x@top", "h2.note", "h2", i)));
            }
            for (CompletableFuture<SendResult> f : sent) {
                assertEquals(SendResult.Status.STORED, f.get(20, TimeUnit.SECONDS).status());
            }
            Packet again = RelayTreeTest.packet("x@top", "y@child", "h2.dup", "h2-dup", 0);
            assertEquals(SendResult.Status.STORED, x.client.send(again).get(10, TimeUnit.SECONDS).status());
            assertEquals(SendResult.Status.DUPLICATE, x.client.send(again).get(10, TimeUnit.SECONDS).status());
            await().atMost(Duration.ofSeconds(20)).until(() -> x.run("h2").size() >= 20 && y.run("h2").size() >= 20
                    && y.run("h2-dup").size() >= 1);
            List<Integer> expected = IntStream.range(0, 20).boxed().toList();
            assertEquals(expected, x.run("h2"));
            assertEquals(expected, y.run("h2"));
            assertEquals(1, y.run("h2-dup").size());
            assertEquals(41, top.audit(null, null, null, null, null, 0, 1000).size(), "the top audited every packet once");
        }
    }

    /** A fresh H2 file database in PostgreSQL mode with the hub's migrations (the embedded default's settings). */
    static JdbcDataSource h2(Path dir, String name) {
        JdbcDataSource ds = new JdbcDataSource();
        // open until the JVM ends: H2 opens a database again when a connection comes after the last one closed, and a
        // connection joining it while it opens can miss MODE=PostgreSQL (ON CONFLICT then a syntax error; the
        // embedded profile's URL says the same)
        ds.setURL("jdbc:h2:file:" + dir.resolve(name)
                + ";MODE=PostgreSQL;DATABASE_TO_LOWER=TRUE;DEFAULT_NULL_ORDERING=HIGH;DB_CLOSE_DELAY=-1");
        ds.setUser("hub");
        Flyway.configure().dataSource(ds).locations("classpath:db/migration").load().migrate();
        return ds;
    }

    /** A top node with clients st (TCP, token t-st) and sh (HTTP, t-sh) that send, and r (TCP, t-r) that receives. */
    static RelayNode sendersOverTcpAndHttp(JdbcDataSource ds, int http, int tcp) {
        return RelayNode.builder().topology(Topology.parse("""
                node: top
                clients: [{id: st, transport: tcp}, {id: sh, transport: http}, {id: r, transport: tcp}]
                """, "top")).tokens(RelayTokens.parse("st:t-st;sh:t-sh;r:t-r")).dataSource(ds).httpPort(http).tcpPort(tcp)
                .host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
    }
}
