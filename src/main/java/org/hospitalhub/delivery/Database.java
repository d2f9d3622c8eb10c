package org.hospitalhub.delivery;

import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Timestamp;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;

import javax.sql.DataSource;

import jakarta.enterprise.context.ApplicationScoped;

/** The hub's own database (PostgreSQL in production, H2 embedded by default) and what differs between them. */
@ApplicationScoped
public class Database {

    private final DataSource dataSource;
    private volatile Boolean postgres;

    public Database(@org.eclipse.microprofile.config.inject.ConfigProperty(name = "hub.datasource") String name) {
        this.dataSource = io.quarkus.arc.Arc.container()
                .select(DataSource.class, new io.quarkus.agroal.DataSource.DataSourceLiteral(name)).get();
    }

    public DataSource dataSource() {
        return dataSource;
    }

    public Connection connection() throws SQLException {
        return dataSource.getConnection();
    }

    public boolean isPostgres() {
        Boolean p = postgres;
        if (p == null) {
            try (Connection c = dataSource.getConnection()) {
                p = c.getMetaData().getDatabaseProductName().toLowerCase().contains("postgres");
            } catch (SQLException e) {
                throw new IllegalStateException("cannot reach the hub database: " + e.getMessage(), e);
            }
            postgres = p;
        }
        return p;
    }

    public static Timestamp ts(Instant i) {
        return Timestamp.from(i);
    }

    public static OffsetDateTime utc(Instant i) {
        return i.atOffset(ZoneOffset.UTC);
    }

    /** Runs work in one transaction: commit on success, rollback on any failure. */
    public <T> T inTransaction(SqlWork<T> work) throws SQLException {
        return inTransaction(dataSource, work);
    }

    /** Runs work in one transaction on a connection of {@code dataSource}: commit on success, rollback on failure. */
    public static <T> T inTransaction(DataSource dataSource, SqlWork<T> work) throws SQLException {
        try (Connection c = dataSource.getConnection()) {
            boolean auto = c.getAutoCommit();
            c.setAutoCommit(false);
            try {
                T result = work.run(c);
                c.commit();
                return result;
            } catch (SQLException | RuntimeException e) {
                c.rollback();
                throw e;
            } finally {
                c.setAutoCommit(auto);
            }
        }
    }

    @FunctionalInterface
    public interface SqlWork<T> {
        T run(Connection c) throws SQLException;
    }
}
