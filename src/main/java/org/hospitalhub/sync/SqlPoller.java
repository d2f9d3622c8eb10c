package org.hospitalhub.sync;

import java.math.BigDecimal;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Types;
import java.time.Clock;
import java.time.LocalDate;
import java.time.LocalDateTime;
import java.time.OffsetDateTime;
import java.time.format.DateTimeFormatter;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import javax.sql.DataSource;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.apache.camel.ProducerTemplate;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.EventStore;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.delivery.Leases;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.MeterRegistry;

/**
 * Polls a source system's own table (route template {@code sql-poll-source}): on the replica holding the source's
 * lease, reads the next rows with parameterised SQL, turns each into an event with the same validation as HTTP ingest,
 * stores them in the hub's event store (whose outbox hands them to the flows), and only then moves past them: the
 * high-water mark in {@code hub_poll_mark}, or the rows' status column. A row that is not a valid event goes to the
 * dead-letter store and the poller moves past it; if that store fails, nothing moves and the rows come again.
 *
 * <p>Why nothing is lost or applied twice: the events are committed before the mark moves, so a crash in between
 * makes the next poll (here or on the replica that takes the lease over) read those rows again, and the event store
 * ignores an eventId it already holds. In watermark mode even that window does not exist, because the mark lives in
 * the hub database and commits in the events' own transaction (unless rows had to be dead-lettered first); in status
 * mode the status column lives in the source's database, so it is updated right after the store (in the same
 * transaction when the source table is in the hub database).
 */
@ApplicationScoped
@Named("sqlPoller")
public class SqlPoller {

    private static final Logger LOG = Logger.getLogger(SqlPoller.class);
    /** A tick reads batch after batch while they come full, up to this many, then lets the timer breathe. */
    static final int MAX_BATCHES_PER_POLL = 10;
    static final String VIA = "sql";
    private static final int MAX_MARK = 200;

    private final SqlSources sources;
    private final Database db;
    private final Leases leases;
    private final EventParser parser;
    private final EventStore store;
    private final ProducerTemplate producer;
    private final MeterRegistry registry;
    private final Clock clock = Clock.systemUTC();
    private final ObjectMapper strict = JsonMapper.builder()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();
    private final Map<String, SourceState> state = new ConcurrentHashMap<>();

    public SqlPoller(SqlSources sources, Database db, Leases leases, EventParser parser, EventStore store,
            ProducerTemplate producer, MeterRegistry registry) {
        this.sources = sources;
        this.db = db;
        this.leases = leases;
        this.parser = parser;
        this.store = store;
        this.producer = producer;
        this.registry = registry;
    }

    private static final class SourceState {
        volatile Probe probe;
        volatile String lastError;
    }

    /** Column kinds of the source table, and the status values converted to the status column's kind. */
    record Probe(Map<String, Kind> kinds, Object newValue, Object doneValue, Object failedValue) {

        Kind kind(String column) {
            return kinds.getOrDefault(column.toLowerCase(Locale.ROOT), Kind.OTHER);
        }
    }

    /** One row read: the event it makes or why it makes none, and what moving past it means. */
    private record Row(Object id, String mark, String eventId, Event event, InvalidEventException error, String raw) {
    }

    /** One timer tick of the source (property HubFlow holds the sourceId). Returns the rows read. */
    public int poll(Exchange exchange) {
        String sourceId = exchange.getProperty("HubFlow", String.class);
        SourceState st = state.computeIfAbsent(String.valueOf(sourceId), k -> new SourceState());
        int total = 0;
        try {
            SqlSource src = sources.source(sourceId);
            if (!leases.hold(src.leaseName()).held()) {
                polls(sourceId, "not_leader");
                return 0;
            }
            for (int i = 0; i < MAX_BATCHES_PER_POLL; i++) {
                int n = pollBatch(src, st, exchange.getFromRouteId());
                total += n;
                if (n < src.batchSize() || !leases.hold(src.leaseName()).held()) {
                    break;
                }
            }
            polls(sourceId, total > 0 ? "rows" : "empty");
            if (st.lastError != null) {
                LOG.infof("SQL source %s polls again after: %s", sourceId, st.lastError);
                st.lastError = null;
            }
        } catch (SQLException | RuntimeException e) {
            st.probe = null; // the table may have changed: look at it again
            polls(sourceId, "failed");
            String why = e instanceof IllegalStateException && e.getMessage() != null ? e.getMessage() : describe(e);
            if (!why.equals(st.lastError)) {
                LOG.warnf("SQL source %s: poll failed, nothing moved past, retried at the next poll: %s", sourceId, why);
            } else {
                LOG.debugf("SQL source %s: poll failed again: %s", sourceId, why);
            }
            st.lastError = why;
        }
        return total;
    }

    private int pollBatch(SqlSource src, SourceState st, String routeId) throws SQLException {
        DataSource ds = sources.dataSource(src);
        List<Row> rows = new ArrayList<>();
        Probe probe = st.probe;
        try (Connection c = ds.getConnection()) {
            if (probe == null) {
                probe = probe(c, src);
                st.probe = probe;
            }
            try (PreparedStatement q = nextRows(c, src, probe)) {
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        rows.add(read(rs, src, probe));
                    }
                }
            }
        }
        if (rows.isEmpty()) {
            return 0;
        }
        List<Event> good = new ArrayList<>(rows.size());
        List<Row> bad = new ArrayList<>();
        for (Row r : rows) {
            if (r.error() == null) {
                good.add(r.event());
            } else {
                bad.add(r);
            }
        }
        Probe p = probe;
        Database.SqlWork<Void> movePast;
        if (src.mode() == SqlSource.Mode.WATERMARK) {
            String mark = rows.get(rows.size() - 1).mark();
            movePast = c -> {
                writeMark(c, src.sourceId(), mark);
                return null;
            };
        } else {
            movePast = c -> {
                setStatuses(c, src, p, rows);
                return null;
            };
        }
        // Where the mark (hub_poll_mark, hub database) or the status column (source table in the hub database) can
        // commit in the events' own transaction, it does. Otherwise it moves right after: a crash before that makes
        // the rows come again, and the event store ignores the eventIds it already holds (counted as duplicates).
        boolean markInHub = src.mode() == SqlSource.Mode.WATERMARK || src.inHubDatabase();
        boolean together = bad.isEmpty() && markInHub;
        if (!good.isEmpty()) {
            EventStore.Stored stored = store.store(good, VIA, together ? movePast : null);
            rowsCounted(src.sourceId(), "stored", good.size() - stored.duplicates().size());
            rowsCounted(src.sourceId(), "duplicate", stored.duplicates().size());
        }
        // Invalid rows must not block the source forever: park them, then move past. If the dead-letter store fails
        // this throws and nothing moves; the next poll reads the same rows (stored ones are duplicates then). A row
        // parked before such a failure, or before a crash, is parked a second time: never lost.
        for (Row r : bad) {
            deadLetter(src, r, routeId);
        }
        rowsCounted(src.sourceId(), "dead_letter", bad.size());
        if (!together) {
            if (markInHub) {
                db.inTransaction(movePast);
            } else {
                inTransaction(sources.dataSource(src), movePast);
            }
        }
        return rows.size();
    }

    // ---- reading ----------------------------------------------------------------------------------------------------

    /** Looks at the source table once (its columns exist, their kinds) before reading rows from it. */
    private Probe probe(Connection c, SqlSource src) {
        Map<String, Kind> kinds = new HashMap<>();
        try (PreparedStatement q = c.prepareStatement(src.probeSql()); ResultSet rs = q.executeQuery()) {
            ResultSetMetaData md = rs.getMetaData();
            for (int i = 1; i <= md.getColumnCount(); i++) {
                kinds.put(md.getColumnLabel(i).toLowerCase(Locale.ROOT), Kind.of(md.getColumnType(i), md.getColumnTypeName(i)));
            }
        } catch (SQLException e) {
            throw new IllegalStateException("cannot read columns " + src.columns() + " of table " + src.table()
                    + " in datasource " + src.datasource() + ": " + describe(e), e);
        }
        Probe p = new Probe(kinds, null, null, null);
        if (src.mode() == SqlSource.Mode.STATUS) {
            Kind k = p.kind(src.statusColumn());
            p = new Probe(kinds, statusValue(src, "newValue", src.newValue(), k), statusValue(src, "doneValue", src.doneValue(), k),
                    statusValue(src, "failedValue", src.failedValue(), k));
        }
        return p;
    }

    private static Object statusValue(SqlSource src, String name, String value, Kind kind) {
        try {
            return kind.decode(value);
        } catch (RuntimeException e) {
            throw new IllegalStateException(name + " '" + value + "' does not fit column " + src.statusColumn()
                    + " (" + kind.name().toLowerCase(Locale.ROOT) + ")");
        }
    }

    private PreparedStatement nextRows(Connection c, SqlSource src, Probe probe) throws SQLException {
        if (src.mode() == SqlSource.Mode.STATUS) {
            PreparedStatement q = c.prepareStatement(src.pendingSql());
            q.setObject(1, probe.newValue());
            q.setInt(2, src.batchSize());
            return q;
        }
        String mark = readMark(src.sourceId());
        if (mark == null) {
            PreparedStatement q = c.prepareStatement(src.firstBatchSql());
            q.setInt(1, src.batchSize());
            return q;
        }
        Kind wk = probe.kind(src.watermarkColumn());
        String tie = src.tieBreaker();
        PreparedStatement q = c.prepareStatement(src.nextBatchSql());
        try {
            if (tie == null) {
                q.setObject(1, wk.decode(mark));
                q.setInt(2, src.batchSize());
            } else {
                ArrayNode both = (ArrayNode) strict.readTree(mark);
                Object w = wk.decode(both.get(0).asText());
                q.setObject(1, w);
                q.setObject(2, w);
                q.setObject(3, probe.kind(tie).decode(both.get(1).asText()));
                q.setInt(4, src.batchSize());
            }
        } catch (JsonProcessingException | RuntimeException e) {
            q.close();
            throw new IllegalStateException("the high-water mark '" + mark + "' (hub_poll_mark.poller = '" + src.sourceId()
                    + "') does not fit the watermark column(s); was the source's configuration changed? "
                    + "Delete that row to read the table from its start (rows already stored are skipped as duplicates)");
        }
        return q;
    }

    private Row read(ResultSet rs, SqlSource src, Probe probe) throws SQLException {
        Object id = src.idColumn() == null ? null : rs.getObject(src.idColumn());
        String mark = null;
        if (src.mode() == SqlSource.Mode.WATERMARK) {
            String w = Kind.encode(probe.kind(src.watermarkColumn()).read(rs, src.watermarkColumn()));
            String tie = src.tieBreaker();
            if (tie == null) {
                mark = w;
            } else {
                ArrayNode both = strict.createArrayNode();
                both.add(w).add(Kind.encode(probe.kind(tie).read(rs, tie)));
                mark = both.toString();
            }
            if (mark.length() > MAX_MARK) {
                throw new IllegalStateException("watermark value longer than " + MAX_MARK + " characters: " + mark);
            }
        }
        String eventId = src.eventIdColumn() != null ? rs.getString(src.eventIdColumn())
                : id == null ? null : src.sourceId() + ":" + rs.getString(src.idColumn());
        String raw = rawRow(rs);
        try {
            ObjectNode n = strict.createObjectNode();
            n.put("eventId", eventId);
            n.put("type", src.type() != null ? src.type() : rs.getString(src.typeColumn()));
            n.put("source", src.source());
            n.put("hospital", src.hospital() != null ? src.hospital() : rs.getString(src.hospitalColumn()));
            if (src.keyColumn() != null) {
                String key = rs.getString(src.keyColumn());
                if (key != null) {
                    n.put("key", key);
                }
            }
            n.put("occurredAt", occurredAt(rs, src, probe));
            String payload = rs.getString(src.payloadColumn());
            if (payload == null) {
                n.putNull("payload");
            } else {
                try {
                    n.set("payload", strict.readTree(payload));
                } catch (JsonProcessingException e) {
                    throw new InvalidEventException("payload", "json", "column " + src.payloadColumn()
                            + " does not hold JSON: " + e.getOriginalMessage());
                }
            }
            return new Row(id, mark, eventId, parser.validate(n), null, raw);
        } catch (InvalidEventException e) {
            return new Row(id, mark, eventId, null, e, raw);
        }
    }

    /** occurredAt as ISO-8601 with offset; a timestamp without time zone is read in the source's timeZone. */
    private static String occurredAt(ResultSet rs, SqlSource src, Probe probe) throws SQLException {
        String col = src.occurredAtColumn();
        Kind k = probe.kind(col);
        OffsetDateTime t;
        switch (k) {
            case TIMESTAMPTZ -> t = rs.getObject(col, OffsetDateTime.class);
            case TIMESTAMP -> {
                LocalDateTime l = rs.getObject(col, LocalDateTime.class);
                t = l == null ? null : l.atZone(src.timeZone()).toOffsetDateTime();
            }
            case DATE -> {
                LocalDate d = rs.getObject(col, LocalDate.class);
                t = d == null ? null : d.atStartOfDay(src.timeZone()).toOffsetDateTime();
            }
            default -> {
                return rs.getString(col); // text: validated by the parser like any envelope's
            }
        }
        return t == null ? null : DateTimeFormatter.ISO_OFFSET_DATE_TIME.format(t);
    }

    /** The row as a JSON object, column label to value, for the dead-letter store. */
    private String rawRow(ResultSet rs) throws SQLException {
        ResultSetMetaData md = rs.getMetaData();
        ObjectNode n = strict.createObjectNode();
        for (int i = 1; i <= md.getColumnCount(); i++) {
            String label = md.getColumnLabel(i);
            Object v = rs.getObject(i);
            if (v == null) {
                n.putNull(label);
            } else if (v instanceof Integer || v instanceof Long || v instanceof Short || v instanceof Byte) {
                n.put(label, ((Number) v).longValue());
            } else if (v instanceof BigDecimal b) {
                n.put(label, b);
            } else if (v instanceof Double || v instanceof Float) {
                n.put(label, ((Number) v).doubleValue());
            } else if (v instanceof Boolean b) {
                n.put(label, b);
            } else {
                n.put(label, rs.getString(i));
            }
        }
        return n.toString();
    }

    // ---- moving past ------------------------------------------------------------------------------------------------

    private String readMark(String poller) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT mark FROM hub_poll_mark WHERE poller = ?")) {
            q.setString(1, poller);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? rs.getString(1) : null;
            }
        }
    }

    private void writeMark(Connection c, String poller, String mark) throws SQLException {
        for (int attempt = 0; attempt < 2; attempt++) {
            try (PreparedStatement up = c.prepareStatement(
                    "UPDATE hub_poll_mark SET mark = ?, updated_at = ? WHERE poller = ?")) {
                up.setString(1, mark);
                up.setObject(2, Database.utc(clock.instant()));
                up.setString(3, poller);
                if (up.executeUpdate() == 1) {
                    return;
                }
            }
            try (PreparedStatement ins = c.prepareStatement(
                    "INSERT INTO hub_poll_mark (poller, mark, updated_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")) {
                ins.setString(1, poller);
                ins.setString(2, mark);
                ins.setObject(3, Database.utc(clock.instant()));
                if (ins.executeUpdate() == 1) {
                    return;
                }
            }
        }
        throw new SQLException("could not write the high-water mark of " + poller);
    }

    /** Status mode: taken rows to doneValue, dead-lettered ones to failedValue (only rows still at newValue). */
    private static void setStatuses(Connection c, SqlSource src, Probe p, List<Row> rows) throws SQLException {
        try (PreparedStatement up = c.prepareStatement(src.markRowSql())) {
            for (Row r : rows) {
                up.setObject(1, r.error() == null ? p.doneValue() : p.failedValue());
                up.setObject(2, r.id());
                up.setObject(3, p.newValue());
                up.addBatch();
            }
            up.executeBatch();
        }
    }

    private static void inTransaction(DataSource ds, Database.SqlWork<?> work) throws SQLException {
        try (Connection c = ds.getConnection()) {
            boolean auto = c.getAutoCommit();
            c.setAutoCommit(false);
            try {
                work.run(c);
                c.commit();
            } catch (SQLException | RuntimeException e) {
                c.rollback();
                throw e;
            } finally {
                c.setAutoCommit(auto);
            }
        }
    }

    private void deadLetter(SqlSource src, Row r, String routeId) {
        // Through the dead-letter route itself (no error handler): it throws if the store fails.
        Exchange ex = producer.send("direct:hub-dead-letter", e -> {
            e.setProperty("HubFlow", src.sourceId());
            e.setProperty(Exchange.EXCEPTION_CAUGHT, r.error());
            e.setProperty(Exchange.FAILURE_ROUTE_ID, routeId);
            e.getMessage().setHeader("HubEventId", r.eventId());
            e.getMessage().setHeader("HubSqlSource", src.sourceId());
            e.getMessage().setHeader("HubSqlTable", src.table());
            e.getMessage().setHeader("HubSqlDatasource", src.datasource());
            e.getMessage().setBody(r.raw());
        });
        if (ex.getException() != null) {
            // Named by eventId or row id only: the row itself may hold patient data, which does not belong in a log.
            throw new IllegalStateException("dead-letter store failed for row " + (r.eventId() != null ? r.eventId()
                    : src.idColumn() + "=" + r.id()) + ": " + describe(ex.getException()), ex.getException());
        }
    }

    /** A failure in a few words: the innermost cause (a JDBC batch error's own text repeats the statement and values). */
    static String describe(Throwable e) {
        Throwable deepest = e;
        for (Throwable t = e; t != null && t != t.getCause(); t = t.getCause()) {
            deepest = t;
        }
        if (deepest instanceof SQLException sql && sql.getNextException() != null) {
            deepest = sql.getNextException();
        }
        String m = deepest.getMessage() == null ? deepest.getClass().getName() : deepest.getMessage();
        m = m.replaceFirst("(?s);?\\s*SQL statement:.*", "").strip(); // H2 appends the statement
        return m.length() > 300 ? m.substring(0, 300) + "…" : m;
    }

    // ---- metrics ----------------------------------------------------------------------------------------------------

    private void polls(String source, String outcome) {
        Counter.builder("hub.sync.sql.polls").description("SQL source polls by outcome (rows, empty, not_leader, failed)")
                .tags("source", String.valueOf(source), "outcome", outcome).register(registry).increment();
    }

    private void rowsCounted(String source, String outcome, int n) {
        if (n > 0) {
            Counter.builder("hub.sync.sql.rows").description("Rows read from SQL sources by outcome (stored, duplicate, dead_letter)")
                    .tags("source", source, "outcome", outcome).register(registry).increment(n);
        }
    }

    // ---- column kinds -----------------------------------------------------------------------------------------------

    /** How a column is read, written into a mark, and bound back as a parameter. */
    enum Kind {
        INTEGER, DECIMAL, TIMESTAMP, TIMESTAMPTZ, DATE, TEXT, OTHER;

        static Kind of(int sqlType, String typeName) {
            String n = typeName == null ? "" : typeName.toLowerCase(Locale.ROOT);
            if (sqlType == Types.TIMESTAMP_WITH_TIMEZONE || n.equals("timestamptz") || n.contains("with time zone")) {
                return TIMESTAMPTZ;
            }
            return switch (sqlType) {
                case Types.BIGINT, Types.INTEGER, Types.SMALLINT, Types.TINYINT -> INTEGER;
                case Types.NUMERIC, Types.DECIMAL -> DECIMAL;
                case Types.TIMESTAMP -> TIMESTAMP;
                case Types.DATE -> DATE;
                case Types.CHAR, Types.VARCHAR, Types.LONGVARCHAR, Types.NCHAR, Types.NVARCHAR, Types.LONGNVARCHAR,
                        Types.CLOB -> TEXT;
                default -> OTHER;
            };
        }

        Object read(ResultSet rs, String col) throws SQLException {
            return switch (this) {
                case INTEGER -> {
                    long v = rs.getLong(col);
                    yield rs.wasNull() ? null : v;
                }
                case DECIMAL -> rs.getBigDecimal(col);
                case TIMESTAMP -> rs.getObject(col, LocalDateTime.class);
                case TIMESTAMPTZ -> rs.getObject(col, OffsetDateTime.class);
                case DATE -> rs.getObject(col, LocalDate.class);
                default -> rs.getString(col);
            };
        }

        static String encode(Object v) {
            if (v == null) {
                // ORDER BY puts no NULL watermark in a batch (they are filtered out); a NULL tie-breaker is refused.
                throw new IllegalStateException("a watermark or idColumn value is NULL");
            }
            return v instanceof BigDecimal b ? b.toPlainString() : v.toString();
        }

        Object decode(String s) {
            try {
                return switch (this) {
                    case INTEGER -> Long.valueOf(s);
                    case DECIMAL -> new BigDecimal(s);
                    case TIMESTAMP -> LocalDateTime.parse(s);
                    case TIMESTAMPTZ -> OffsetDateTime.parse(s);
                    case DATE -> LocalDate.parse(s);
                    default -> s;
                };
            } catch (DateTimeParseException e) {
                throw new IllegalArgumentException(e.getMessage(), e);
            }
        }
    }
}
