package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

import org.h2.jdbcx.JdbcDataSource;
import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * A send whose request reached the node but whose acknowledgement was lost (the link cut on the way back) is sent
 * again by the SDK; the node stores it once and answers the second attempt DUPLICATE, and the caller, who sent once,
 * is told STORED. A packet the caller itself sends twice is still DUPLICATE the second time.
 */
class RelayLostAckTest {

    @Test
    void aSendWhoseAckWasLostIsReportedStoredOverTcpAndHttp() throws Exception {
        JdbcDataSource ds = RelayOnH2Test.h2(Files.createTempDirectory("relay-lost-ack"), "lostack");
        int http = RelayTreeTest.freePort();
        int tcp = RelayTreeTest.freePort();
        try (RelayNode top = RelayOnH2Test.sendersOverTcpAndHttp(ds, http, tcp);
                LinkProxy tcpLink = new LinkProxy(tcp);
                LinkProxy httpLink = new LinkProxy(http);
                Mailbox overTcp = Mailbox.tcp("st@top", tcpLink.port(), "t-st");
                Mailbox overHttp = Mailbox.http("sh@top", httpLink.port(), "t-sh")) {
            await().atMost(Duration.ofSeconds(20)).until(() -> overTcp.client.connected() && overHttp.client.connected());
            check(ds, overTcp, tcpLink);
            check(ds, overHttp, httpLink);
        }
    }

    private static void check(JdbcDataSource ds, Mailbox sender, LinkProxy link) throws Exception {
        long connectsBefore = sender.connects();
        Packet p = RelayTreeTest.packet(sender.address, "r@top", "lost.ack", "lost-ack", 1);
        link.holdReplies(); // the request goes through, the node's answer does not come back
        CompletableFuture<SendResult> sent = sender.client.send(p);
        await().atMost(Duration.ofSeconds(20)).until(() -> stored(ds, p.packetId()) == 1);
        Thread.sleep(200); // the node's answer is on its way and held
        assertTrue(!sent.isDone(), "the answer was held, the send cannot be complete yet");
        link.restore(); // the link is cut and comes back: the client reconnects and sends the packet again

        SendResult r = sent.get(30, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.STORED, r.status(), "sent once by the caller: " + r);
        assertTrue(r.reason() != null && r.reason().contains("earlier attempt"), "says why: " + r);
        assertEquals(p.packetId(), r.packetId());
        assertTrue(sender.connects() > connectsBefore, "the client reconnected and sent again");
        assertEquals(1, stored(ds, p.packetId()), "stored once");

        // the caller sends the same packet again itself: that is a duplicate, and said so
        SendResult again = sender.client.send(p).get(20, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.DUPLICATE, again.status());
        assertNull(again.reason());
        assertEquals(1, stored(ds, p.packetId()));
    }

    private static int stored(JdbcDataSource ds, String packetId) throws Exception {
        try (Connection c = ds.getConnection();
                PreparedStatement s = c.prepareStatement("SELECT COUNT(*) FROM relay_packet WHERE packet_id = ?")) {
            s.setString(1, packetId);
            try (ResultSet rs = s.executeQuery()) {
                rs.next();
                return rs.getInt(1);
            }
        }
    }
}
