package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.nio.file.Files;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import javax.sql.DataSource;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * What a node stores for the packets it accepts, column by column, on both databases a node runs on: PostgreSQL takes
 * a group's rows as one insert from arrays, the embedded H2 as a JDBC batch, and both must store the same thing —
 * text with quotes, backslashes, braces, commas, the word NULL and Chinese as it came, a missing correlationId as
 * NULL, instants to the microsecond (year 0 included), a packet dead on arrival with its reason, the audit row of
 * every packet stored at the top, and a duplicate not at all.
 */
class RelayStoreRowsTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Instant NOW = Instant.parse("2026-12-05T10:00:01.000002Z");

    @Test
    void postgresqlStoresWhatWasSent() throws Exception {
        try (NodeDatabase db = NodeDatabase.fresh("store_rows")) {
            checkRows(db.dataSource);
        }
    }

    @Test
    void theEmbeddedDatabaseStoresWhatWasSent() throws Exception {
        checkRows(RelayOnH2Test.h2(Files.createTempDirectory("relay-rows"), "rows"));
    }

    private static void checkRows(DataSource ds) throws Exception {
        PacketStore store = new PacketStore(ds, "top", true);
        String tricky = "say \"{a,b}\" \\ NULL, 会诊 😀";
        Packet plain = packet("p-1", "a@top", "r@top", tricky, "2026-12-05T10:00:00.123456789Z", 600, null);
        Packet reply = packet("p-2", "a@top", "r@top", "consult.reply", "2026-12-05T10:00:00.000000499Z", 600, "NULL");
        Packet ancient = packet("p-3", "a@top", "r@top", "old", "0000-01-01T00:00:00.0000015Z", 60, null);
        Packet lost = packet("p-4", "a@top", "nowhere@x", "lost", "2026-12-05T10:00:00Z", 600, "{\"}");
        PacketStore.Request fromBelow = new PacketStore.Request(List.of(
                in(plain, Routing.Decision.to("r@top")),
                in(reply, Routing.Decision.to("r@top")),
                in(ancient, Routing.Decision.to("r@top")),
                in(lost, Routing.Decision.dead("no route to nowhere@x")),
                in(plain, Routing.Decision.to("r@top"))), "a@top", false);
        // the same packetId from the parent is another leg: stored
        PacketStore.Request fromParent = new PacketStore.Request(List.of(in(plain, Routing.Decision.to("r@top"))), "up", true);

        List<List<SendResult>> results = store.storeAll(List.of(fromBelow, fromParent), NOW);

        assertEquals(List.of(SendResult.Status.STORED, SendResult.Status.STORED, SendResult.Status.DEAD,
                SendResult.Status.DEAD, SendResult.Status.DUPLICATE), results.get(0).stream().map(SendResult::status).toList());
        assertEquals(List.of(SendResult.Status.STORED), results.get(1).stream().map(SendResult::status).toList());
        String expired = "ttl of 60 s had passed (created 0000-01-01T00:00:00.000001500Z) when the packet reached node top";
        assertEquals(expired, results.get(0).get(2).reason());

        List<List<Object>> expected = List.of(
                row(plain, "U", "a@top", "r@top", 1, null),
                row(reply, "U", "a@top", "r@top", 2, null),
                row(ancient, "U", "a@top", PacketStore.DEAD_HOP, 1, expired),
                row(lost, "U", "a@top", PacketStore.DEAD_HOP, 2, "no route to nowhere@x"),
                row(plain, "D", "up", "r@top", 3, null));
        assertEquals(expected, rows(ds, "SELECT packet_id, leg, sender, target, command, correlation_id, body, size_bytes, "
                + "created_at, expires_at, received_at, received_from, hop, hop_seq, status, attempts, last_error, done_at "
                + "FROM relay_packet ORDER BY id"));
        assertEquals(List.of(audit(plain, "a@top"), audit(reply, "a@top"), audit(ancient, "a@top"), audit(lost, "a@top"),
                audit(plain, "up")), rows(ds, "SELECT packet_id, sender, target, command, size_bytes, created_at, passed_at, "
                        + "received_from FROM relay_audit ORDER BY id"));
        assertEquals(List.of(List.of("p-3"), List.of("p-4")), rows(ds, "SELECT p.packet_id FROM relay_dead_letter d "
                + "JOIN relay_packet p ON p.id = d.id ORDER BY d.id"));

        // the same packets again: duplicates, nothing stored
        List<List<SendResult>> again = store.storeAll(List.of(fromBelow, fromParent), NOW.plusSeconds(1));
        assertEquals(6, again.stream().flatMap(List::stream).filter(r -> r.status() == SendResult.Status.DUPLICATE).count());
        assertEquals(5, rows(ds, "SELECT id FROM relay_packet").size());
    }

    private static Packet packet(String id, String from, String to, String command, String createdAt, long ttl,
            String correlationId) throws Exception {
        return new Packet(id, from, to, command, JSON.readTree("{\"note\":\"" + "quote \\\" backslash \\\\ 中文 {1,2}\"}"),
                Instant.parse(createdAt), ttl, correlationId);
    }

    private static PacketStore.Incoming in(Packet p, Routing.Decision d) {
        return new PacketStore.Incoming(p, p.toJson().toString(), d);
    }

    private static List<Object> row(Packet p, String leg, String from, String hop, long seq, String reason) {
        String body = p.toJson().toString();
        return Arrays.asList(p.packetId(), leg, p.from(), p.to(), p.command(), p.correlationId(), body,
                PacketStore.utf8Length(body), micros(p.createdAt()), micros(p.expiresAt()), NOW, from, hop, seq,
                reason == null ? "PENDING" : "DEAD", 0, reason, reason == null ? null : NOW);
    }

    private static List<Object> audit(Packet p, String from) {
        return Arrays.asList(p.packetId(), p.from(), p.to(), p.command(), PacketStore.utf8Length(p.toJson().toString()),
                micros(p.createdAt()), NOW, from);
    }

    /** The instant as a database keeps it: to the microsecond, rounded half up. */
    private static Instant micros(Instant i) {
        long m = PacketStore.epochMicros(i);
        return Instant.ofEpochSecond(Math.floorDiv(m, 1_000_000L), Math.floorMod(m, 1_000_000L) * 1000L);
    }

    /** Rows as lists of values: timestamps as instants, numbers as longs or ints as stored, text as it is. */
    private static List<List<Object>> rows(DataSource ds, String sql) throws SQLException {
        List<List<Object>> out = new ArrayList<>();
        try (Connection c = ds.getConnection(); PreparedStatement q = c.prepareStatement(sql); ResultSet rs = q.executeQuery()) {
            int n = rs.getMetaData().getColumnCount();
            while (rs.next()) {
                List<Object> row = new ArrayList<>();
                for (int i = 1; i <= n; i++) {
                    Object v = rs.getObject(i);
                    if (v instanceof java.sql.Timestamp || v instanceof OffsetDateTime) {
                        v = rs.getObject(i, OffsetDateTime.class).toInstant();
                    } else if (v instanceof String s && rs.getMetaData().getColumnName(i).equalsIgnoreCase("leg")) {
                        v = s.trim();
                    }
                    row.add(v);
                }
                out.add(row);
            }
        }
        return out;
    }
}
