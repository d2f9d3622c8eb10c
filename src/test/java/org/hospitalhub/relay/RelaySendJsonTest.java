package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.RelayRejectedException;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

/**
 * {@code RelayClient.sendJson}: packets given as JSON text (how a node's link to its parent forwards what it stored,
 * without parsing and writing each packet again) reach the server unchanged, over TCP and over HTTP, and the server
 * checks them as it checks any packet: a text that is not a valid packet is refused with the field and rule it breaks,
 * and nothing of that request is stored.
 */
class RelaySendJsonTest {

    @Test
    void packetsSentAsTextArriveUnchangedAndBadOnesAreRefusedOverTcpAndHttp() throws Exception {
        var ds = RelayOnH2Test.h2(Files.createTempDirectory("relay-json"), "json");
        int http = RelayTreeTest.freePort();
        int tcp = RelayTreeTest.freePort();
        try (RelayNode top = RelayOnH2Test.sendersOverTcpAndHttp(ds, http, tcp);
                Mailbox overTcp = Mailbox.tcp("st@top", tcp, "t-st");
                Mailbox overHttp = Mailbox.http("sh@top", http, "t-sh");
                Mailbox receiver = Mailbox.tcp("r@top", tcp, "t-r")) {
            int sent = 0;
            for (Mailbox sender : List.of(overTcp, overHttp)) {
                String from = sender.address;
                Packet first = RelayTreeTest.packet(from, "r@top", "json.note", "json", sent);
                Packet second = RelayTreeTest.packet(from, "r@top", "json.note", "json", sent + 1);
                // as a node stores them, and as someone might write them by hand (other field order, spaces, Chinese text)
                String text = "{ \"ttl\": 600, \"createdAt\": \"" + second.createdAt() + "\", \"command\": \"json.note\", "
                        + "\"to\": \"r@top\", \"from\": \"" + from + "\", \"packetId\": \"" + second.packetId() + "\", "
                        + "\"parameters\": {\"run\": \"json\", \"n\": " + (sent + 1) + ", \"text\": \"会诊\"} }";
                List<SendResult> results = sender.client.sendJson(List.of(first.toJson().toString(), text))
                        .get(20, TimeUnit.SECONDS);
                assertEquals(List.of(SendResult.Status.STORED, SendResult.Status.STORED),
                        results.stream().map(SendResult::status).toList(), from);
                sent += 2;

                // not a packet: refused as a whole, naming the field and rule; the good packet before it is not stored
                Packet good = RelayTreeTest.packet(from, "r@top", "json.note", "refused", 0);
                String noCommand = "{\"packetId\": \"no-command-" + sent + "\", \"from\": \"" + from + "\", \"to\": \"r@top\", "
                        + "\"createdAt\": \"" + good.createdAt() + "\", \"ttl\": 60}";
                ExecutionException refused = assertThrows(ExecutionException.class,
                        () -> sender.client.sendJson(List.of(good.toJson().toString(), noCommand)).get(20, TimeUnit.SECONDS));
                RelayRejectedException why = assertInstanceOf(RelayRejectedException.class, refused.getCause(), from);
                assertEquals(400, why.status(), from);
                assertTrue(why.getMessage().contains("command is required"), why.getMessage());
                assertEquals(0, RelayHopCursorTest.count(ds, "SELECT COUNT(*) FROM relay_packet WHERE packet_id = '" + good.packetId() + "'"), from);

                // text that is not exactly one JSON object would break the request it is written into: refused at once,
                // on the client, naming which one; nothing of the request reaches the node, and the client goes on
                for (String broken : java.util.Arrays.asList("{\"packetId\": \"two-in-one\"}, {\"packetId\": \"x\"}", "{",
                        "[]", "\"text\"", "{} {}", null)) {
                    Packet before = RelayTreeTest.packet(from, "r@top", "json.note", "refused", 2);
                    ExecutionException notJson = assertThrows(ExecutionException.class, () -> sender.client.sendJson(
                            java.util.Arrays.asList(before.toJson().toString(), broken)).get(20, TimeUnit.SECONDS));
                    RelayRejectedException e = assertInstanceOf(RelayRejectedException.class, notJson.getCause(), broken);
                    assertEquals(400, e.status(), broken);
                    assertEquals("json", e.rule(), broken);
                    assertEquals("packets[1]", e.field(), broken);
                    assertEquals(0, RelayHopCursorTest.count(ds, "SELECT COUNT(*) FROM relay_packet WHERE packet_id = '" + before.packetId() + "'"));
                }

                // and a packet may not claim another sender, as text either
                String impostor = RelayTreeTest.packet("r@top", "r@top", "json.note", "refused", 1).toJson().toString();
                ExecutionException notItself = assertThrows(ExecutionException.class,
                        () -> sender.client.sendJson(List.of(impostor)).get(20, TimeUnit.SECONDS));
                assertEquals(403, assertInstanceOf(RelayRejectedException.class, notItself.getCause()).status(), from);
            }
            await().atMost(Duration.ofSeconds(20)).until(() -> receiver.run("json").size() >= 4);
            assertEquals(List.of(0, 1, 2, 3), receiver.run("json"));
            assertEquals("会诊", receiver.packets("json").get(1).parameters().path("text").asText());
            assertEquals(List.of(), receiver.run("refused"));
        }
    }
}
