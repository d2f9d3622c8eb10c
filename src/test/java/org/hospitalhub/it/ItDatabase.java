package org.hospitalhub.it;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;

/** A fresh PostgreSQL database (127.0.0.1:5432, trust auth) for one integration test, and counts in it. */
final class ItDatabase {

    final String url;

    private ItDatabase(String url) {
        this.url = url;
    }

    /** Drops and creates database {@code <hub.test.db>_<suffix>}. */
    static ItDatabase fresh(String suffix) throws SQLException {
        String name = System.getProperty("hub.test.db", "hospital_hub_test") + "_" + suffix;
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + name);
        }
        return new ItDatabase("jdbc:postgresql://127.0.0.1:5432/" + name);
    }

    long count(String sql) throws SQLException {
        try (Connection c = DriverManager.getConnection(url, "postgres", ""); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }
}
