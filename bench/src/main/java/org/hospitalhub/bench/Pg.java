package org.hospitalhub.bench;

import java.sql.Array;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/** The local PostgreSQL the benchmark writes to: one fresh database per measured system (bench_*). */
final class Pg {

    private static final Pattern NAME = Pattern.compile("bench_[a-z0-9_]{1,40}");

    final String server;
    final String user;
    final String password;

    Pg(String server, String user, String password) {
        this.server = server.endsWith("/") ? server : server + "/";
        this.user = user;
        this.password = password;
    }

    String url(String db) {
        return server + db;
    }

    Connection connect(String db) throws SQLException {
        return DriverManager.getConnection(url(db), user, password);
    }

    /** Drops (closing its sessions) and creates a database whose name starts with bench_. */
    void recreate(String db) throws SQLException {
        if (!NAME.matcher(db).matches()) {
            throw new IllegalArgumentException("benchmark databases are named bench_*: " + db);
        }
        try (Connection c = connect("postgres"); Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + db + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + db);
        }
    }

    /** A staging table with the hub's staging-table contract (the DDL of the hub's V2 migration). */
    static void createStaging(Connection c, String table) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("CREATE TABLE " + table + " ("
                    + "event_id VARCHAR(200) NOT NULL PRIMARY KEY, event_type VARCHAR(200) NOT NULL, "
                    + "source VARCHAR(100) NOT NULL, hospital VARCHAR(100) NOT NULL, event_key VARCHAR(200), "
                    + "occurred_at TIMESTAMP WITH TIME ZONE NOT NULL, payload VARCHAR NOT NULL, "
                    + "loaded_at TIMESTAMP WITH TIME ZONE NOT NULL)");
        }
    }

    long count(String db, String table) throws SQLException {
        try (Connection c = connect(db); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT count(*) FROM " + table)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    String version() throws SQLException {
        try (Connection c = connect("postgres"); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT current_setting('server_version'), current_setting('shared_buffers'), "
                        + "current_setting('synchronous_commit'), current_setting('fsync'), current_setting('max_wal_size'), "
                        + "current_setting('min_wal_size')")) {
            rs.next();
            return "PostgreSQL " + rs.getString(1) + " (shared_buffers " + rs.getString(2) + ", synchronous_commit "
                    + rs.getString(3) + ", fsync " + rs.getString(4) + ", max_wal_size " + rs.getString(5)
                    + ", min_wal_size " + rs.getString(6) + ")";
        }
    }

    /** The server's WAL write position, in bytes. */
    long walBytes() throws SQLException {
        try (Connection c = connect("postgres"); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint")) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /**
     * A checkpoint, so that the WAL segments an earlier phase filled are recycled, as on a server in its steady state
     * (bench/README, "WAL segments"); then the number of segments ready for reuse ahead of the write position. While
     * some are ready, no commit waits for PostgreSQL to create and zero-fill a new 16 MB segment.
     */
    long checkpoint() throws SQLException {
        try (Connection c = connect("postgres"); Statement s = c.createStatement()) {
            s.execute("CHECKPOINT");
            try (ResultSet rs = s.executeQuery("SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' "
                    + "AND name > pg_walfile_name(pg_current_wal_lsn())")) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /**
     * Delays in ms of the steady-phase rows: loaded_at (the sink transaction's start, PostgreSQL's now()) minus the
     * broker append time of the record. Rows without an append time are not counted.
     */
    List<Double> delays(String db, String table, Map<String, Long> appendMillis) throws SQLException {
        List<Double> out = new ArrayList<>(appendMillis.size());
        try (Connection c = connect(db); Statement s = c.createStatement()) {
            c.setAutoCommit(false);
            s.setFetchSize(10_000);
            try (ResultSet rs = s.executeQuery("SELECT event_id, loaded_at FROM " + table)) {
                while (rs.next()) {
                    Long appended = appendMillis.get(rs.getString(1));
                    if (appended != null) {
                        var at = rs.getObject(2, OffsetDateTime.class).toInstant();
                        double loadedMs = at.getEpochSecond() * 1000.0 + at.getNano() / 1e6;
                        out.add(loadedMs - appended);
                    }
                }
            }
            c.commit();
        }
        return out;
    }

    /**
     * The same statement as the hub's JdbcBatchSink on PostgreSQL: one unnest INSERT per batch, an eventId already
     * in the table ignored. Returns the rows inserted.
     */
    static int insertUnnest(Connection c, String table, String[][] cols) throws SQLException {
        try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table
                + " (event_id, event_type, source, hospital, event_key, occurred_at, payload, loaded_at) "
                + "SELECT u.a, u.b, u.c, u.d, u.e, u.f::timestamptz, u.g, now() FROM unnest("
                + "?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[], ?::varchar[]) "
                + "AS u(a, b, c, d, e, f, g) ON CONFLICT DO NOTHING")) {
            for (int i = 0; i < 7; i++) {
                Array a = c.createArrayOf("varchar", cols[i]);
                ps.setArray(i + 1, a);
            }
            return ps.executeUpdate();
        }
    }
}
