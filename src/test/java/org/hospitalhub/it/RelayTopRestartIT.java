package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;

import org.hospitalhub.relay.RelayNode;
import org.hospitalhub.relay.RelayTokens;
import org.hospitalhub.relay.Topology;
import org.hospitalhub.relay.client.RelayClient;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

import io.agroal.api.AgroalDataSource;

/**
 * The top (province) relay server is the packaged hub, killed with SIGKILL while packets flow both ways and then
 * restarted on the same database: the city node below it (in this JVM, its own database) and the clients reconnect
 * by themselves, and every packet arrives exactly once, in order; the top audited each once.
 */
class RelayTopRestartIT {

    static HubProcess province;
    static RelayNode city;
    static AgroalDataSource cityDs;
    static final List<RelayClient> clients = new ArrayList<>();

    @AfterAll
    static void tearDown() throws Exception {
        RelayIt.tearDown(clients, city, cityDs, java.util.Collections.singletonList(province));
    }

    @Test
    void killingTheTopServerLosesNothingAndEveryoneReconnectsByThemselves() throws Exception {
        ItDatabase topDb = ItDatabase.fresh("relay_top");
        ItDatabase cityDb = ItDatabase.fresh("relay_city");
        Path work = Files.createDirectories(Path.of("target", "relay-it").toAbsolutePath());
        int http = HubProcess.freePort();
        int tcp = HubProcess.freePort();
        Path topology = Files.writeString(work.resolve("province.yaml"), """
                node: province
                level: province
                children: [{id: city-a, transport: tcp}]
                clients: [{id: dr-zhao, transport: http}]
                """);
        province = new HubProcess(http, Map.ofEntries(Map.entry("QUARKUS_PROFILE", "postgres"),
                Map.entry("HUB_DB_URL", topDb.url), Map.entry("HUB_DB_USERNAME", "postgres"),
                Map.entry("HUB_AUTH_CLIENTS", "ops:operator:it-ops-key"),
                Map.entry("HUB_RELAY_ENABLED", "true"), Map.entry("HUB_RELAY_TOPOLOGY_FILE", topology.toString()),
                Map.entry("HUB_RELAY_TOKENS", "city-a:it-city-token;dr-zhao:it-zhao-token"),
                Map.entry("HUB_RELAY_TCP_PORT", String.valueOf(tcp)), Map.entry("HUB_RELAY_HEARTBEAT", "1s"),
                Map.entry("HUB_RELAY_SWEEP_PERIOD", "500ms")), work.resolve("province.log"));
        province.start();

        cityDs = RelayIt.migratedPool(cityDb);
        int cityTcp = HubProcess.freePort();
        city = RelayNode.builder().topology(Topology.parse("""
                node: city-a
                level: city
                parent: {id: province, transport: tcp, host: 127.0.0.1, port: %d}
                clients: [{id: clinic-c, transport: tcp}]
                """.formatted(tcp), "city-a")).tokens(RelayTokens.parse("clinic-c:it-clinic-token"))
                .parentToken("it-city-token").dataSource(cityDs).tcpPort(cityTcp).host("127.0.0.1").options(RelayIt.FAST).build()
                .start();

        List<Integer> atClinic = new CopyOnWriteArrayList<>();
        List<Integer> atDoctor = new CopyOnWriteArrayList<>();
        RelayClient clinic = RelayIt.client(RelayClient.builder().tcp("127.0.0.1", cityTcp).token("it-clinic-token"), atClinic,
                clients);
        RelayClient doctor = RelayIt.client(RelayClient.builder().http(URI.create("http://127.0.0.1:" + http)).token("it-zhao-token"),
                atDoctor, clients);

        int n = 150;
        RelayIt.exchange(clinic, "clinic-c@city-a", doctor, "dr-zhao@province", n, i -> {
            if (i == n / 3) {
                await().atMost(Duration.ofSeconds(30)).until(() -> atDoctor.size() > 10 && atClinic.size() > 10);
                province.kill(); // SIGKILL mid-stream: no shutdown hook, no flush
                assertTrue(atDoctor.size() < n / 2 && atClinic.size() < n / 2, "killed while packets were still flowing");
            }
            if (i == 2 * n / 3) {
                await().atMost(Duration.ofSeconds(20)).until(() -> count(cityDs, "SELECT COUNT(*) FROM relay_waiting "
                        + "WHERE hop = 'province' AND attempts > 0") > 0); // the city keeps retrying
                province.start();
            }
        });
        RelayIt.assertEachOnceInOrder(atDoctor, atClinic, n, "across the top server's crash");
        assertEquals(n, topDb.count("SELECT COUNT(*) FROM relay_audit WHERE command = 'it.question'"), "audited once each");
        assertEquals(n, topDb.count("SELECT COUNT(*) FROM relay_audit WHERE command = 'it.answer'"));
        assertEquals(0, topDb.count("SELECT COUNT(*) FROM relay_packet WHERE status = 'DEAD'"));
        assertTrue(city.parentConnected(), "the city node reconnected to the restarted top by itself");
    }

    private static long count(javax.sql.DataSource ds, String sql) throws java.sql.SQLException {
        try (var c = ds.getConnection(); var s = c.createStatement(); var rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

}
