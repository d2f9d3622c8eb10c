package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

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
 * A county relay node run as two packaged hubs on one PostgreSQL database (two replicas, as a Kubernetes Deployment
 * runs it) under a city node (in this JVM). The replica holding the node's lease, and with it the link to the city, is
 * killed with SIGKILL while packets flow both ways through a clinic connected to the other replica: the survivor takes
 * the link over once the lease lapses, and every packet arrives exactly once, in order.
 */
class RelayReplicaKillIT {

    static final List<HubProcess> replicas = new ArrayList<>();
    static RelayNode city;
    static AgroalDataSource cityDs;
    static final List<RelayClient> clients = new ArrayList<>();

    @AfterAll
    static void tearDown() throws Exception {
        RelayIt.tearDown(clients, city, cityDs, replicas);
    }

    @Test
    void killingTheReplicaThatHoldsTheLinkLosesNothing() throws Exception {
        ItDatabase countyDb = ItDatabase.fresh("relay_county_replicas");
        ItDatabase cityDb = ItDatabase.fresh("relay_city_replicas");
        Path work = Files.createDirectories(Path.of("target", "relay-replicas-it").toAbsolutePath());

        cityDs = RelayIt.migratedPool(cityDb);
        int cityTcp = HubProcess.freePort();
        city = RelayNode.builder().topology(Topology.parse("""
                node: city
                level: city
                children: [{id: county-1, transport: tcp}]
                clients: [{id: dr-li, transport: tcp}]
                """, "city")).tokens(RelayTokens.parse("county-1:it-county-token;dr-li:it-li-token")).dataSource(cityDs)
                .tcpPort(cityTcp).host("127.0.0.1").options(RelayIt.FAST).build().start();

        Path topology = Files.writeString(work.resolve("county-1.yaml"), """
                node: county-1
                level: county
                parent: {id: city, transport: tcp, host: 127.0.0.1, port: %d}
                clients: [{id: clinic-a, transport: tcp}]
                """.formatted(cityTcp));
        int[] tcp = {HubProcess.freePort(), HubProcess.freePort()};
        for (int r = 0; r < 2; r++) {
            HubProcess hub = new HubProcess(HubProcess.freePort(), Map.ofEntries(Map.entry("QUARKUS_PROFILE", "postgres"),
                    Map.entry("HUB_DB_URL", countyDb.url), Map.entry("HUB_DB_USERNAME", "postgres"),
                    Map.entry("HUB_AUTH_CLIENTS", "ops:operator:it-ops-key"),
                    Map.entry("HUB_RELAY_ENABLED", "true"), Map.entry("HUB_RELAY_TOPOLOGY_FILE", topology.toString()),
                    Map.entry("HUB_RELAY_TOKENS", "clinic-a:it-clinic-token"), Map.entry("HUB_RELAY_PARENT_TOKEN", "it-county-token"),
                    Map.entry("HUB_RELAY_TCP_PORT", String.valueOf(tcp[r])), Map.entry("HUB_RELAY_HEARTBEAT", "1s"),
                    Map.entry("HUB_RELAY_RETRY_MAX", "1s"), Map.entry("HUB_LEASE_TTL", "3s"),
                    Map.entry("HUB_QC_TIMER_SWEEP_EVERY", "off")), work.resolve("county-1-replica-" + r + ".log"));
            hub.start();
            replicas.add(hub);
        }
        HubProcess first = replicas.get(0);
        HubProcess second = replicas.get(1);
        assertEquals(1.0, active(first), "the replica started first holds the lease");
        assertEquals(0.0, active(second), "the other stands by");

        List<Integer> atDoctor = new CopyOnWriteArrayList<>();
        List<Integer> atClinic = new CopyOnWriteArrayList<>();
        RelayClient doctor = RelayIt.client(RelayClient.builder().tcp("127.0.0.1", cityTcp).token("it-li-token"), atDoctor,
                clients);
        // connected to the replica that stands by: its packets go up through the other's link until that one dies
        RelayClient clinic = RelayIt.client(RelayClient.builder().tcp("127.0.0.1", tcp[1]).token("it-clinic-token"), atClinic,
                clients);

        int n = 150;
        RelayIt.exchange(clinic, "clinic-a@county-1", doctor, "dr-li@city", n, i -> {
            if (i == n / 3) {
                await().atMost(Duration.ofSeconds(30)).until(() -> atDoctor.size() > 10 && atClinic.size() > 10);
                first.kill(); // SIGKILL: its lease is not released, the survivor waits for it to lapse
                assertTrue(atDoctor.size() < n / 2 && atClinic.size() < n / 2, "killed while packets were still flowing");
            }
        });
        RelayIt.assertEachOnceInOrder(atDoctor, atClinic, n, "across the active replica's death");
        assertEquals(1.0, active(second), "the survivor took the lease over");
        assertEquals(2L * n, countyDb.count("SELECT COUNT(*) FROM relay_packet"), "each packet stored once at the county");
    }

    /** The replica's {@code hub_relay_replica_active} gauge. */
    private static double active(HubProcess hub) throws Exception {
        for (String line : hub.get("/q/metrics").split("\n")) {
            if (line.startsWith("hub_relay_replica_active{")) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        throw new AssertionError("no hub_relay_replica_active in the replica's metrics");
    }

}
