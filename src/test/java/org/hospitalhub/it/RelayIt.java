package org.hospitalhub.it;

import java.net.ServerSocket;
import java.time.Duration;
import java.util.List;

import org.flywaydb.core.Flyway;
import org.hospitalhub.relay.RelayOptions;
import org.hospitalhub.relay.client.RelayClient;

import io.agroal.api.AgroalDataSource;
import io.agroal.api.configuration.supplier.AgroalDataSourceConfigurationSupplier;
import io.agroal.api.security.NamePrincipal;

/** What the relay's integration tests share: a node in the test JVM next to packaged hubs, and its clients. */
final class RelayIt {

    /** Timings of a relay node in the test JVM: reconnects and sweeps in fractions of a second. */
    static final RelayOptions FAST = RelayOptions.defaults().withTimings(Duration.ofSeconds(1), Duration.ofSeconds(2),
            Duration.ofSeconds(2), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofMillis(300));

    private RelayIt() {
    }

    /** The hub's migrations applied to {@code db}, behind a pool for a relay node in the test JVM. */
    static AgroalDataSource migratedPool(ItDatabase db) throws java.sql.SQLException {
        Flyway.configure().dataSource(db.url, "postgres", "").locations("classpath:db/migration").load().migrate();
        return AgroalDataSource.from(new AgroalDataSourceConfigurationSupplier().connectionPoolConfiguration(cp -> cp
                .maxSize(10).connectionFactoryConfiguration(cf -> cf.jdbcUrl(db.url).principal(new NamePrincipal("postgres")))));
    }

    /** A started SDK client adding the {@code n} of every packet it receives to {@code into}; kept in {@code opened}. */
    static RelayClient client(RelayClient.Builder b, List<Integer> into, List<RelayClient> opened) {
        RelayClient c = b.onPacket(p -> into.add(p.parameters().path("n").asInt())).heartbeat(Duration.ofSeconds(1))
                .pollWait(Duration.ofSeconds(2)).requestTimeout(Duration.ofSeconds(2))
                .reconnect(Duration.ofMillis(100), Duration.ofSeconds(1)).sendTimeout(Duration.ofSeconds(90)).build().start();
        opened.add(c);
        return c;
    }

    static int freePort() throws java.io.IOException {
        try (ServerSocket s = new ServerSocket(0)) {
            return s.getLocalPort();
        }
    }
}
