package org.hospitalhub.sync;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

/** The sql-poll-source parameters: what start-up accepts, what it refuses and how it says so. No database needed. */
class SqlSourceTest {

    static Map<String, String> watermark() {
        Map<String, String> p = new HashMap<>();
        p.put("sourceId", "his-charges");
        p.put("table", "his.charge_out");
        p.put("watermarkColumn", "changed_at");
        p.put("idColumn", "id");
        p.put("eventIdColumn", "event_id");
        p.put("type", "his.charge.created");
        p.put("occurredAtColumn", "charged_at");
        p.put("payloadColumn", "body");
        p.put("hospital", "county");
        p.put("source", "his");
        return p;
    }

    static String refusal(Map<String, String> p) {
        return assertThrows(IllegalArgumentException.class, () -> SqlSource.from(p)).getMessage();
    }

    @Test
    void validWatermarkSourceBuildsParameterisedSql() {
        SqlSource s = SqlSource.from(watermark());
        assertEquals(SqlSource.Mode.WATERMARK, s.mode());
        assertEquals("hub", s.datasource());
        assertEquals(500, s.batchSize());
        assertEquals("sql-poll:his-charges", s.leaseName());
        assertEquals("id", s.tieBreaker());
        assertEquals("SELECT * FROM his.charge_out WHERE (changed_at > ? OR (changed_at = ? AND id > ?)) "
                + "ORDER BY changed_at, id LIMIT ?", s.nextBatchSql());
        assertEquals("SELECT * FROM his.charge_out WHERE changed_at IS NOT NULL ORDER BY changed_at, id LIMIT ?",
                s.firstBatchSql());
    }

    @Test
    void idColumnAloneIsTheWatermark() {
        Map<String, String> p = watermark();
        p.remove("watermarkColumn");
        SqlSource s = SqlSource.from(p);
        assertEquals("id", s.watermarkColumn());
        assertNull(s.tieBreaker());
        assertEquals("SELECT * FROM his.charge_out WHERE id > ? ORDER BY id LIMIT ?", s.nextBatchSql());
    }

    @Test
    void identifiersThatAreNotPlainAreRefusedNamingTheParameter() {
        Map<String, String> p = watermark();
        p.put("table", "charge_out; DROP TABLE hub_event");
        p.put("payloadColumn", "body\"--");
        p.put("keyColumn", "a.b");
        String why = refusal(p);
        assertTrue(why.startsWith("sql-poll-source his-charges: "), why);
        assertTrue(why.contains("table 'charge_out; DROP TABLE hub_event' is not a plain SQL identifier"), why);
        assertTrue(why.contains("payloadColumn 'body\"--' is not a plain SQL identifier"), why);
        assertTrue(why.contains("keyColumn 'a.b' is not a plain SQL identifier"), why);
        p = watermark();
        p.put("table", "1table");
        assertTrue(refusal(p).contains("table '1table'"));
        p.put("table", "a..b");
        assertTrue(refusal(p).contains("table 'a..b'"));
    }

    @Test
    void statusModeNeedsItsColumnsAndDistinctValues() {
        Map<String, String> p = watermark();
        p.put("mode", "status");
        p.remove("idColumn");
        p.remove("watermarkColumn");
        String why = refusal(p);
        assertTrue(why.contains("mode status needs idColumn"), why);
        assertTrue(why.contains("mode status needs statusColumn"), why);
        assertTrue(why.contains("newValue"), why);

        p.put("idColumn", "id");
        p.put("statusColumn", "sync_flag");
        p.put("newValue", "N");
        p.put("doneValue", "N");
        assertTrue(refusal(p).contains("newValue must differ from doneValue and failedValue"));

        p.put("doneValue", "Y");
        SqlSource s = SqlSource.from(p);
        assertEquals("Y", s.failedValue(), "failedValue defaults to doneValue");
        assertEquals("SELECT * FROM his.charge_out WHERE sync_flag = ? ORDER BY id LIMIT ?", s.pendingSql());
        assertEquals("UPDATE his.charge_out SET sync_flag = ? WHERE id = ? AND sync_flag = ?", s.markRowSql());
    }

    @Test
    void envelopeMappingAndLimitsAreChecked() {
        Map<String, String> p = watermark();
        p.put("typeColumn", "kind");
        p.remove("hospital");
        p.put("mode", "sometimes");
        p.put("batchSize", "0");
        p.put("timeZone", "Mars/Olympus");
        p.put("sourceId", "bad id");
        String why = refusal(p);
        assertTrue(why.contains("give exactly one of type"), why);
        assertTrue(why.contains("give exactly one of hospital"), why);
        assertTrue(why.contains("mode 'sometimes' must be watermark or status"), why);
        assertTrue(why.contains("batchSize must be between 1 and 10000"), why);
        assertTrue(why.contains("timeZone 'Mars/Olympus'"), why);
        assertTrue(why.contains("sourceId 'bad id'"), why);
    }
}
