package org.hospitalhub.bench.shared;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/**
 * PostgreSQL's WAL segment files ready for reuse (bench/README, "WAL segments"): while some are ready ahead of the write
 * position, no commit waits for the server to create and zero-fill a new 16 MB segment. Needs a superuser connection.
 */
public final class WalSegments {

    private WalSegments() {
    }

    /** The segment files ahead of the write position, which PostgreSQL recycled and will use before creating any. */
    public static long ready(Connection c) throws SQLException {
        try (Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT count(*) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$' "
                        + "AND name > pg_walfile_name(pg_current_wal_lsn())")) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** A checkpoint, which recycles the segments filled since the one before, then {@link #ready}. */
    public static long checkpoint(Connection c) throws SQLException {
        try (Statement s = c.createStatement()) {
            s.execute("CHECKPOINT");
        }
        return ready(c);
    }
}
