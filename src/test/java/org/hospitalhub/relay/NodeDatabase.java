package org.hospitalhub.relay;

import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;

import org.flywaydb.core.Flyway;

import io.agroal.api.AgroalDataSource;
import io.agroal.api.configuration.supplier.AgroalDataSourceConfigurationSupplier;
import io.agroal.api.security.NamePrincipal;

/**
 * A relay node's own PostgreSQL database in the tests ({@code <hub.test.db>_<node>}, fresh, migrated by Flyway with
 * the hub's migrations), behind an Agroal pool as in the hub.
 */
final class NodeDatabase implements AutoCloseable {

    final String url;
    final AgroalDataSource dataSource;

    private NodeDatabase(String url, AgroalDataSource ds) {
        this.url = url;
        this.dataSource = ds;
    }

    static NodeDatabase fresh(String node) throws SQLException {
        String name = (System.getProperty("hub.test.db", "hospital_hub_test") + "_" + node.replace('-', '_'));
        try (Connection c = DriverManager.getConnection("jdbc:postgresql://127.0.0.1:5432/postgres", "postgres", "");
                Statement s = c.createStatement()) {
            s.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)");
            s.execute("CREATE DATABASE " + name);
        }
        String url = "jdbc:postgresql://127.0.0.1:5432/" + name;
        Flyway.configure().dataSource(url, "postgres", "").locations("classpath:db/migration").load().migrate();
        AgroalDataSource ds = AgroalDataSource.from(new AgroalDataSourceConfigurationSupplier()
                .connectionPoolConfiguration(cp -> cp.maxSize(12).acquisitionTimeout(Duration.ofSeconds(10))
                        .connectionFactoryConfiguration(cf -> cf.jdbcUrl(url).principal(new NamePrincipal("postgres")))));
        return new NodeDatabase(url, ds);
    }

    long count(String sql) throws SQLException {
        try (Connection c = dataSource.getConnection(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    @Override
    public void close() {
        dataSource.close();
    }
}
