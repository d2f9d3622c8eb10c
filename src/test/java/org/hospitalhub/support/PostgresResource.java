package org.hospitalhub.support;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Map;

import io.quarkus.test.common.QuarkusTestResourceLifecycleManager;

/**
 * The real PostgreSQL on 127.0.0.1:5432 (the test command starts it if it is stopped). Each test run gets a fresh
 * database, so tests see only their own rows.
 */
public class PostgresResource implements QuarkusTestResourceLifecycleManager {

    /** Database name; several checkouts can test side by side with -Dhub.test.db=... */
    public static final String DB = System.getProperty("hub.test.db", "hospital_hub_test");
    public static final String URL = "jdbc:postgresql://127.0.0.1:5432/" + DB;
    public static final String USER = System.getProperty("hub.test.pg.user", "postgres");

    @Override
    public Map<String, String> start() {
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", USER, "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + DB + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + DB);
        } catch (SQLException e) {
            throw new IllegalStateException("PostgreSQL is not reachable on 127.0.0.1:5432 as " + USER
                    + " (start it: pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start): "
                    + e.getMessage(), e);
        }
        return Map.of(
                "hub.datasource", "postgres",
                "quarkus.datasource.postgres.active", "true",
                "quarkus.datasource.embedded.active", "false",
                "quarkus.datasource.postgres.jdbc.url", URL,
                "quarkus.datasource.postgres.username", USER,
                "quarkus.datasource.postgres.password", "");
    }

    @Override
    public void stop() {
    }

    public static Connection connect() throws SQLException {
        return DriverManager.getConnection(URL, USER, "");
    }
}
