package org.hospitalhub.delivery;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.util.LinkedHashMap;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

import javax.sql.DataSource;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.apache.camel.ExchangeProperty;
import org.apache.camel.Header;

import io.quarkus.agroal.DataSource.DataSourceLiteral;
import io.quarkus.arc.Arc;

/**
 * Writes a batch of events into a receiving system's staging table in one JDBC statement (PostgreSQL: one
 * {@code unnest} insert; other databases: one JDBC batch) and one transaction. An eventId already in the table is
 * ignored, not an error, so a batch delivered twice is applied once.
 * <p>
 * Staging table contract: columns event_id (unique), event_type, source, hospital, event_key, occurred_at, payload,
 * loaded_at.
 */
@ApplicationScoped
@Named("jdbcBatchSink")
public class JdbcBatchSink {

    public static final String TABLE = "HubSinkTable";
    public static final String DATASOURCE = "HubSinkDatasource";
    public static final String DUPLICATES = "HubDuplicates";
    /** Set by kafka-source: record the batch in hub_processed (in the sink's transaction when it is the hub's DB). */
    public static final String RECORD_PROCESSED = "HubRecordProcessed";
    /** Set by this sink when it recorded the batch in hub_processed itself. */
    public static final String PROCESSED_RECORDED = "HubProcessedRecorded";
    private static final Pattern TABLE_NAME = Pattern.compile("[A-Za-z_][A-Za-z0-9_]{0,62}(\\.[A-Za-z_][A-Za-z0-9_]{0,62})?");

    private final Map<String, Boolean> postgres = new java.util.concurrent.ConcurrentHashMap<>();

    public void write(@ExchangeProperty("HubFlow") String flow, @Header(TABLE) String table, @Header(DATASOURCE) String datasource,
            List<Event> batch, Exchange exchange) throws SQLException {
        if (table == null || !TABLE_NAME.matcher(table).matches()) {
            throw new NonRetryableDeliveryException("flow " + flow + ": staging table name '" + table
                    + "' is not a plain [schema.]table identifier");
        }
        DataSource ds = dataSource(datasource);
        int inserted;
        try (Connection c = ds.getConnection()) {
            c.setAutoCommit(false);
            try {
                inserted = isPostgres(datasource, c) ? insertUnnest(c, table, batch) : insertBatch(c, table, batch);
                if (isHub(datasource) && exchange.getProperty(RECORD_PROCESSED, false, Boolean.class)) {
                    // A Kafka-fed flow writing to the hub's own database: the processed-events record commits with
                    // the rows, so a crash can never leave rows applied but not recorded (one commit instead of two).
                    Arc.container().select(ProcessedEvents.class).get().insert(c, flow,
                            batch.stream().map(Event::eventId).toList());
                    exchange.setProperty(PROCESSED_RECORDED, true);
                }
                c.commit();
            } catch (SQLException e) {
                c.rollback();
                if (!isDataError(e)) {
                    throw e; // connection trouble, lock timeout...: retry later
                }
                if (batch.size() == 1) {
                    throw new NonRetryableDeliveryException("refused by " + table + ": " + e.getMessage(), e);
                }
                inserted = oneByOne(c, table, batch);
            } finally {
                c.setAutoCommit(true);
            }
        }
        exchange.getMessage().setHeader(DUPLICATES, batch.size() - inserted);
    }

    /** A batch with bad rows: apply the good ones one by one, refuse the bad ones with their own reason. */
    private int oneByOne(Connection c, String table, List<Event> batch) throws SQLException {
        Map<Event, String> refused = new LinkedHashMap<>();
        List<Event> applied = new ArrayList<>();
        int inserted = 0;
        for (Event e : batch) {
            try {
                inserted += insertBatch(c, table, List.of(e));
                c.commit();
                applied.add(e);
            } catch (SQLException ex) {
                c.rollback();
                if (!isDataError(ex)) {
                    throw ex;
                }
                refused.put(e, ex.getMessage());
            }
        }
        if (!refused.isEmpty()) {
            throw new PartialBatchException(refused, applied);
        }
        return inserted;
    }

    private int insertUnnest(Connection c, String table, List<Event> batch) throws SQLException {
        int n = batch.size();
        String[][] cols = new String[6][n];
        // the payloads as UTF-8 bytes: a Kafka record's are the bytes it came in (no decoding into a String and
        // encoding again for the driver, a sixth of a Kafka flow's CPU); the database converts them to its encoding
        byte[][] payloads = new byte[n][];
        for (int i = 0; i < n; i++) {
            Event e = batch.get(i);
            cols[0][i] = e.eventId();
            cols[1][i] = e.type();
            cols[2][i] = e.source();
            cols[3][i] = e.hospital();
            cols[4][i] = e.key();
            cols[5][i] = e.occurredAtText();
            payloads[i] = e.payloadUtf8();
        }
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table
                + " (event_id, event_type, source, hospital, event_key, occurred_at, payload, loaded_at) "
                + "SELECT u.a, u.b, u.c, u.d, u.e, u.f::timestamptz, convert_from(u.g, 'UTF8'), now() FROM unnest("
                + "?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::bytea[]) "
                + "AS u(a, b, c, d, e, f, g) ON CONFLICT DO NOTHING")) {
            for (int i = 0; i < 6; i++) {
                Array a = c.createArrayOf("varchar", cols[i]);
                ps.setArray(i + 1, a);
            }
            ps.setArray(7, c.createArrayOf("bytea", payloads));
            return ps.executeUpdate();
        }
    }

    private int insertBatch(Connection c, String table, List<Event> batch) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table
                + " (event_id, event_type, source, hospital, event_key, occurred_at, payload, loaded_at) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?, CURRENT_TIMESTAMP) ON CONFLICT DO NOTHING")) {
            for (Event e : batch) {
                ps.setString(1, e.eventId());
                ps.setString(2, e.type());
                ps.setString(3, e.source());
                ps.setString(4, e.hospital());
                ps.setString(5, e.key());
                ps.setObject(6, e.occurredAt());
                ps.setString(7, e.payloadJson());
                ps.addBatch();
            }
            int inserted = 0;
            for (int r : ps.executeBatch()) {
                inserted += Math.max(r, 0);
            }
            return inserted;
        }
    }

    /** SQL states retrying cannot fix: data exceptions (22), integrity violations (23), unknown objects (42). */
    static boolean isDataError(SQLException e) {
        String state = e.getSQLState();
        if (state == null && e.getNextException() != null) {
            state = e.getNextException().getSQLState();
        }
        return state != null && (state.startsWith("22") || state.startsWith("23") || state.startsWith("42"));
    }

    private boolean isPostgres(String datasource, Connection c) {
        return postgres.computeIfAbsent(datasource == null ? "<default>" : datasource, k -> {
            try {
                return Database.isPostgres(c);
            } catch (SQLException e) {
                return false;
            }
        });
    }

    private static boolean isHub(String name) {
        return name == null || name.isBlank() || "hub".equals(name) || "<default>".equals(name);
    }

    private static DataSource dataSource(String name) {
        if (isHub(name)) {
            return Arc.container().select(Database.class).get().dataSource();
        }
        var handle = Arc.container().select(DataSource.class, new DataSourceLiteral(name));
        if (!handle.isResolvable()) {
            throw new NonRetryableDeliveryException("no datasource named '" + name
                    + "' (configure quarkus.datasource.\"" + name + "\".*)");
        }
        return handle.get();
    }
}
