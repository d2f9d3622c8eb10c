package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * A node serves thousands of idle long-pollers: each wait should cost it one read of the poller's mailbox. A poll
 * repeating an acknowledged cursor does not write it again, and a wait that ends with nothing answers empty without
 * reading the mailbox once more (the poller's next poll reads it). A packet for the poller still arrives at once.
 */
class RelayIdlePollTest {

    static final String MAILBOX_READ = "SELECT id, packet_id, hop, hop_seq, body";
    static final String CURSOR_WRITE = "WITH up AS (UPDATE relay_hop_ack";

    @Test
    void anIdlePollerCostsOneMailboxReadPerWait() throws Exception {
        AtomicInteger reads = new AtomicInteger();
        AtomicInteger writes = new AtomicInteger();
        int http = RelayTreeTest.freePort();
        int tcp = RelayTreeTest.freePort();
        try (NodeDatabase db = NodeDatabase.fresh("idlepoll");
                RelayNode top = RelayNode.builder().topology(Topology.parse("""
                        node: top
                        clients: [{id: st, transport: tcp}, {id: sh, transport: http}]
                        """, "top")).tokens(RelayTokens.parse("st:t-st;sh:t-sh")).dataSource(Counting.dataSource(db.dataSource, () -> { }, sql -> {
                            if (sql.startsWith(MAILBOX_READ)) {
                                reads.incrementAndGet();
                            } else if (sql.startsWith(CURSOR_WRITE) || sql.startsWith("UPDATE relay_hop_ack")) {
                                writes.incrementAndGet();
                            }
                        }))
                        .httpPort(http).tcpPort(tcp).host("127.0.0.1").options(RelayTreeTest.FAST).build().start();
                Mailbox sender = Mailbox.tcp("st@top", tcp, "t-st");
                Mailbox poller = Mailbox.http("sh@top", http, "t-sh")) { // waits of 2 s
            await().atMost(Duration.ofSeconds(20)).until(() -> sender.client.connected() && poller.client.connected());
            send(sender, 1);
            await().atMost(Duration.ofSeconds(20)).until(() -> poller.run("idle").equals(List.of(1)));
            // the poll after the packet acknowledged cursor 1
            await().atMost(Duration.ofSeconds(20))
                    .until(() -> db.count("SELECT acked_seq FROM relay_hop_ack WHERE hop = 'sh@top'") == 1);

            Thread.sleep(1_000);
            reads.set(0);
            writes.set(0);
            Thread.sleep(8_000); // four waits of 2 s
            int idleReads = reads.get();
            assertEquals(0, writes.get(), "the same cursor is not written again");
            assertTrue(idleReads >= 2 && idleReads <= 5,
                    "one mailbox read per wait of 2 s over 8 s (two per wait would be 8-10): " + idleReads);

            send(sender, 2);
            await().atMost(Duration.ofSeconds(5)).until(() -> poller.run("idle").equals(List.of(1, 2)));
        }
    }

    private static void send(Mailbox sender, int n) throws Exception {
        SendResult r = sender.client.send(RelayTreeTest.packet("st@top", "sh@top", "idle.note", "idle", n)).get(20, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.STORED, r.status(), r.toString());
    }
}
