package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.List;

import javax.sql.DataSource;

import jakarta.inject.Inject;

import org.apache.camel.CamelContext;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Leases;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * SQL polling sources (routes-test/sql-flows.camel.yaml): rows a source system writes into its own table become
 * events, stored once and delivered by the t-sql-stock flow into materials_staging.
 * t-sql-receipts: watermark mode on a timestamp (ties broken by id), table in the hub's PostgreSQL, batches of 3.
 * t-sql-legacy: status mode, table in another database (datasource legacy, H2), local timestamps in Asia/Shanghai.
 * t-sql-lease: watermark mode on a bigint, for the run-once check.
 * The tests share the source tables, so they run in a fixed order.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class SqlPollingTest {

    @Inject
    CamelContext camel;

    @Inject
    Leases leases;

    @Inject
    Database db;

    @Inject
    @io.quarkus.agroal.DataSource("legacy")
    DataSource legacy;

    @BeforeEach
    void sourceTables() throws SQLException {
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE IF NOT EXISTS hrp_receipt_feed (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                    + "event_id VARCHAR(200), event_type VARCHAR(200), material_id VARCHAR(64), occurred_at TIMESTAMPTZ, "
                    + "changed_at TIMESTAMPTZ NOT NULL, payload TEXT)");
            s.execute("CREATE TABLE IF NOT EXISTS hrp_lease_feed (seq BIGINT PRIMARY KEY, event_id VARCHAR(200), "
                    + "occurred_at TIMESTAMPTZ, payload TEXT)");
        }
        try (Connection c = legacy.getConnection(); Statement s = c.createStatement()) {
            s.execute("CREATE TABLE IF NOT EXISTS stock_receipt_out (receipt_no INT PRIMARY KEY, hosp_code VARCHAR(20), "
                    + "created_at TIMESTAMP, doc VARCHAR(4000), sync_state INT NOT NULL)");
        }
    }

    static String receipt(String id, Object quantity) {
        return "{\"receiptId\":\"" + id + "\",\"materialId\":\"M1\",\"warehouse\":\"W1\",\"supplier\":\"S1\",\"quantity\":"
                + quantity + ",\"unit\":\"box\"}";
    }

    /** One row of hrp_receipt_feed; rows inserted in one call share changed_at (ties the poller must not lose). */
    static void feed(String... rows) {
        // rows: eventId|type|payload
        try (Connection c = PostgresResource.connect(); PreparedStatement ps = c.prepareStatement(
                "INSERT INTO hrp_receipt_feed (event_id, event_type, material_id, occurred_at, changed_at, payload) "
                        + "VALUES (?, ?, 'M1', TIMESTAMPTZ '2026-11-22 08:00:00+08', TIMESTAMPTZ '2026-11-22 09:00:00+08', ?)")) {
            for (String r : rows) {
                String[] f = r.split("\\|", 3);
                ps.setString(1, f[0]);
                ps.setString(2, f[1]);
                ps.setString(3, f[2]);
                ps.addBatch();
            }
            ps.executeBatch();
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    static String mark(String poller) {
        List<String> m = Events.strings("SELECT mark FROM hub_poll_mark WHERE poller = ?", poller);
        return m.isEmpty() ? null : m.get(0);
    }

    static long maxReceiptId() {
        return Events.count("SELECT COALESCE(MAX(id), 0) FROM hrp_receipt_feed");
    }

    /** A counter or gauge from /q/metrics, 0 when it does not exist yet. */
    static double metric(String name, String... labels) {
        String body = given().get("/q/metrics").then().statusCode(200).extract().asString();
        for (String line : body.lines().toList()) {
            if (!line.startsWith(name + "{")) {
                continue;
            }
            boolean all = true;
            for (int i = 0; i < labels.length; i += 2) {
                all &= line.contains(labels[i] + "=\"" + labels[i + 1] + "\"");
            }
            if (all) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return 0;
    }

    @Test
    @Order(1)
    void watermarkRowsBecomeEventsStoredOnceAndDelivered() {
        String t = "hrp.stock.received";
        // Five rows with the same changed_at, read in batches of 3: the id breaks the tie, none is skipped.
        feed("sqlw-1|" + t + "|" + receipt("R1", 1), "sqlw-2|" + t + "|" + receipt("R2", 2),
                "sqlw-3|" + t + "|" + receipt("R3", 3), "sqlw-4|" + t + "|" + receipt("R4", 4),
                "sqlw-5|" + t + "|" + receipt("R5", 5));
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'sqlw-%'") == 5);
        assertEquals(5, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'sqlw-%' AND received_via = 'sql' "
                + "AND source = 'hrp' AND hospital = 'test' AND event_key = 'M1'"));
        assertEquals(5, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'sqlw-%' AND flow = 't-sql-stock'"));
        assertEquals(5, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'sqlw-%' "
                + "AND occurred_at = TIMESTAMPTZ '2026-11-22 08:00:00+08' AND payload LIKE '%\"supplier\":\"S1\"%'"));
        long last = maxReceiptId();
        await().atMost(Duration.ofSeconds(5)).until(() -> String.valueOf(mark("t-sql-receipts")).endsWith(",\"" + last + "\"]"));
        assertTrue(metric("hub_delivery_received_total", "flow", "t-sql-stock", "via", "sql") >= 5);

        // A crash between store and mark means reading the rows again: forget the mark, the poller reads the table from
        // its start, and every row is recognised by its eventId and not stored or delivered again.
        double duplicatesBefore = metric("hub_sync_sql_rows_total", "source", "t-sql-receipts", "outcome", "duplicate");
        execute("DELETE FROM hub_poll_mark WHERE poller = 't-sql-receipts'");
        await().atMost(Duration.ofSeconds(10)).until(() -> metric("hub_sync_sql_rows_total", "source", "t-sql-receipts",
                "outcome", "duplicate") >= duplicatesBefore + 5);
        await().atMost(Duration.ofSeconds(5)).until(() -> String.valueOf(mark("t-sql-receipts")).endsWith(",\"" + last + "\"]"));
        assertEquals(5, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'sqlw-%'"));
        assertEquals(5, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'sqlw-%' AND flow = 't-sql-stock'"));
        assertEquals(5, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'sqlw-%'"));
    }

    @Test
    @Order(2)
    void badRowsAreDeadLetteredWithTheirReasonAndThePollerGoesOn() {
        String t = "hrp.stock.received";
        feed("sqlbad-1|" + t + "|" + receipt("B1", 1),
                "sqlbad-2|hrp.unknown.thing|" + receipt("B2", 1),
                "sqlbad-3|" + t + "|" + receipt("B3", "\"five\""),
                "sqlbad-4|" + t + "|{not json",
                "sqlbad-5|" + t + "|" + receipt("B5", 5));
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id IN ('sqlbad-1', 'sqlbad-5')") == 2);
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'sqlbad-%' AND flow = 't-sql-receipts'") == 3);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'sqlbad-2' AND status = 'OPEN' "
                + "AND error_message LIKE '%unknown event type ''hrp.unknown.thing''%' "
                + "AND payload LIKE '%\"event_type\":\"hrp.unknown.thing\"%' AND route_id = 't-sql-receipts-poller'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'sqlbad-3' "
                + "AND error_message LIKE 'payload.quantity:%' AND payload LIKE '%\"event_id\":\"sqlbad-3\"%'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'sqlbad-4' "
                + "AND error_message LIKE '%column payload does not hold JSON%'"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('sqlbad-2', 'sqlbad-3', 'sqlbad-4')"));
        long last = maxReceiptId();
        await().atMost(Duration.ofSeconds(5)).until(() -> String.valueOf(mark("t-sql-receipts")).endsWith(",\"" + last + "\"]"));

        // and later rows keep coming
        feed("sqlbad-6|" + t + "|" + receipt("B6", 6));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id = 'sqlbad-6'") == 1);
        assertEquals(3, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'sqlbad-%'"));
    }

    @Test
    @Order(3)
    void whenTheDeadLetterStoreFailsTheMarkStays() {
        long before = maxReceiptId();
        await().atMost(Duration.ofSeconds(10)).until(() -> before == 0 && mark("t-sql-receipts") == null
                || String.valueOf(mark("t-sql-receipts")).endsWith(",\"" + before + "\"]"));
        String markBefore = mark("t-sql-receipts");
        double failedBefore = metric("hub_sync_sql_polls_total", "source", "t-sql-receipts", "outcome", "failed");
        execute("ALTER TABLE dead_letter RENAME TO dead_letter_parked");
        try {
            feed("sqldlf-1|hrp.unknown.thing|" + receipt("D1", 1), "sqldlf-2|hrp.stock.received|" + receipt("D2", 2));
            await().atMost(Duration.ofSeconds(10)).until(() -> metric("hub_sync_sql_polls_total", "source",
                    "t-sql-receipts", "outcome", "failed") >= failedBefore + 2);
            assertEquals(markBefore, mark("t-sql-receipts"), "the mark does not move past a row that is not parked");
        } finally {
            execute("ALTER TABLE dead_letter_parked RENAME TO dead_letter");
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id = 'sqldlf-1' AND flow = 't-sql-receipts'") == 1);
        long last = maxReceiptId();
        await().atMost(Duration.ofSeconds(5)).until(() -> String.valueOf(mark("t-sql-receipts")).endsWith(",\"" + last + "\"]"));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id = 'sqldlf-2'") == 1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'sqldlf-2'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'sqldlf-1'"));
    }

    @Test
    @Order(4)
    void statusModeMarksRowsDoneInTheSourceDatabase() throws SQLException {
        try (Connection c = legacy.getConnection(); PreparedStatement ps = c.prepareStatement(
                "INSERT INTO stock_receipt_out (receipt_no, hosp_code, created_at, doc, sync_state) VALUES (?, ?, ?, ?, 0)")) {
            Object[][] rows = {
                    { 101, "county", "2026-11-22 08:00:00", receipt("L101", 1) },
                    { 102, "county", "2026-11-22 08:05:00", receipt("L102", 2) },
                    { 103, "county", "2026-11-22 08:10:00", receipt("L103", "\"five\"") } };
            for (Object[] r : rows) {
                ps.setInt(1, (Integer) r[0]);
                ps.setString(2, (String) r[1]);
                ps.setObject(3, java.time.LocalDateTime.parse(((String) r[2]).replace(' ', 'T')));
                ps.setString(4, (String) r[3]);
                ps.addBatch();
            }
            ps.executeBatch();
        }
        await().atMost(Duration.ofSeconds(15)).until(() -> legacyStates().equals(List.of("101=1", "102=1", "103=9")));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id IN ('t-sql-legacy:101', 't-sql-legacy:102')") == 2);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id = 't-sql-legacy:101' "
                + "AND hospital = 'county' AND source = 'hrp-legacy' AND occurred_at = TIMESTAMPTZ '2026-11-22 00:00:00+00'"));
        assertEquals(List.of("2026-11-22T08:00:00+08:00"), Events.strings(
                "SELECT envelope::json->>'occurredAt' FROM hub_event WHERE event_id = 't-sql-legacy:101'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 't-sql-legacy:103' "
                + "AND flow = 't-sql-legacy' AND error_message LIKE 'payload.quantity:%' AND payload LIKE '{\"RECEIPT_NO\":103,%five%'"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 't-sql-legacy:103'"));
        assertTrue(metric("hub_delivery_received_total", "flow", "t-sql-stock", "via", "sql") >= 2);
    }

    @Test
    @Order(5)
    void onlyTheLeaseHolderPolls() throws Exception {
        String lease = "sql-poll:t-sql-lease";
        // Stand in for a second replica: stop this one's poller, give up its lease, let "replica B" take it.
        camel.getRouteController().stopRoute("t-sql-lease-poller");
        leases.release(lease);
        Leases replicaB = new Leases(db, Duration.ofSeconds(4));
        assertEquals(Leases.Hold.ACQUIRED, replicaB.hold(lease));
        double declinedBefore = metric("hub_sync_sql_polls_total", "source", "t-sql-lease", "outcome", "not_leader");
        camel.getRouteController().startRoute("t-sql-lease-poller");
        try (Connection c = PostgresResource.connect(); PreparedStatement ps = c.prepareStatement(
                "INSERT INTO hrp_lease_feed (seq, event_id, occurred_at, payload) VALUES (?, ?, now(), ?)")) {
            for (int i = 1; i <= 2; i++) {
                ps.setLong(1, i);
                ps.setString(2, "sqllease-" + i);
                ps.setString(3, receipt("LS" + i, i));
                ps.addBatch();
            }
            ps.executeBatch();
        }
        // This replica keeps polling and declines each time while B holds the lease...
        await().atMost(Duration.ofSeconds(10)).until(() -> metric("hub_sync_sql_polls_total", "source", "t-sql-lease",
                "outcome", "not_leader") >= declinedBefore + 3);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'sqllease-%'"));
        assertEquals(null, mark("t-sql-lease"));
        assertEquals(List.of(replicaB.owner()), Events.strings("SELECT owner FROM hub_lease WHERE name = ?", lease),
                "B still held the lease while nothing was read");
        // ...and takes over once B's lease lapses (B is "dead": it never renews).
        await().atMost(Duration.ofSeconds(20)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'sqllease-%'") == 2);
        assertEquals(List.of(leases.owner()), Events.strings("SELECT owner FROM hub_lease WHERE name = ?", lease));
        assertEquals(Leases.Hold.NOT_HELD, replicaB.hold(lease));
        assertEquals("2", mark("t-sql-lease"));
        assertEquals(2, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'sqllease-%'"));
    }

    private List<String> legacyStates() throws SQLException {
        try (Connection c = legacy.getConnection(); PreparedStatement ps = c.prepareStatement(
                "SELECT receipt_no, sync_state FROM stock_receipt_out WHERE receipt_no BETWEEN 101 AND 103 ORDER BY receipt_no");
                var rs = ps.executeQuery()) {
            List<String> out = new java.util.ArrayList<>();
            while (rs.next()) {
                out.add(rs.getInt(1) + "=" + rs.getInt(2));
            }
            return out;
        }
    }

    private static void execute(String sql) {
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement()) {
            s.execute(sql);
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }
}
