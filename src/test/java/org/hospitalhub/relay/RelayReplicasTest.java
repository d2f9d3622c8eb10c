package org.hospitalhub.relay;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.hospitalhub.delivery.Leases;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.Test;

import io.micrometer.core.instrument.simple.SimpleMeterRegistry;

/**
 * Two replicas of one relay node (county-1) on one PostgreSQL database, behind a "Service" (a TCP forwarder per port)
 * as Kubernetes would run them, under a city. One replica holds the node's lease and runs its link to the city; the
 * other serves the clients connected to it. Packets a client hands to the standby reach the city through the active
 * replica's link, packets the link brings down reach a client connected to the standby, and packets between clients of
 * the two replicas go straight through the shared database. Then the active replica dies without releasing its lease:
 * the other takes the link over once the lease lapses, and every packet arrives once and in order.
 *
 * The replicas' sweep runs every 30 s, longer than any wait below: what arrives in time was woken by the replicas'
 * signals (PostgreSQL LISTEN/NOTIFY), not found by the sweep.
 */
class RelayReplicasTest {

    static final RelayOptions SLOW_SWEEP = RelayOptions.defaults().withTimings(Duration.ofSeconds(1), Duration.ofSeconds(2),
            Duration.ofSeconds(2), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofSeconds(30));
    static final Duration LEASE_TTL = Duration.ofSeconds(2);
    static final int N = 100;

    @Test
    void twoReplicasOfANodeShareItsWorkAndTheSurvivorTakesTheLinkOver() throws Exception {
        int cityTcp = RelayTreeTest.freePort();
        int[] http = {RelayTreeTest.freePort(), RelayTreeTest.freePort()};
        int[] tcp = {RelayTreeTest.freePort(), RelayTreeTest.freePort()};
        String countyTopology = """
                node: county-1
                level: county
                parent: {id: city, transport: tcp, host: 127.0.0.1, port: %d}
                localShortcut: true
                clients:
                  - {id: clinic-a, transport: tcp}
                  - {id: clinic-b, transport: http}
                """.formatted(cityTcp);
        try (NodeDatabase cityDb = NodeDatabase.fresh("replicas_city"); NodeDatabase countyDb = NodeDatabase.fresh("replicas_county");
                RelayNode city = RelayNode.builder().topology(Topology.parse("""
                        node: city
                        level: city
                        children: [{id: county-1, transport: tcp}]
                        clients: [{id: dr-li, transport: tcp}]
                        """, "city")).tokens(RelayTokens.parse("county-1:tok-county;dr-li:tok-li")).dataSource(cityDb.dataSource)
                        .tcpPort(cityTcp).host("127.0.0.1").options(RelayTreeTest.FAST).registry(new SimpleMeterRegistry())
                        .build().start()) {
            // replica 1 dies below: its lease is never released (as after kill -9), so replica 2 waits for it to lapse
            Leases crashing = new Leases(countyDb.dataSource, LEASE_TTL) {
                @Override
                public void release(String name) {
                }
            };
            RelayNode r1 = replica(countyTopology, countyDb, crashing, http[0], tcp[0]);
            RelayNode r2 = replica(countyTopology, countyDb, new Leases(countyDb.dataSource, LEASE_TTL), http[1], tcp[1]);
            try (LinkProxy tcpService = new LinkProxy(tcp[1]); LinkProxy httpService = new LinkProxy(http[0]);
                    Mailbox drLi = Mailbox.tcp("dr-li@city", cityTcp, "tok-li");
                    Mailbox clinicA = Mailbox.tcp("clinic-a@county-1", tcpService.port(), "tok-a");
                    Mailbox clinicB = Mailbox.http("clinic-b@county-1", httpService.port(), "tok-b")) {
                assertTrue(r1.active(), "the first replica took the lease");
                assertFalse(r2.active(), "the second stands by");
                await().atMost(10, TimeUnit.SECONDS).until(() -> r1.parentConnected() && drLi.client.connected()
                        && clinicA.client.connected() && clinicB.client.connected());
                assertFalse(r2.parentConnected(), "one link to the city, not two");
                assertEquals(List.of("county-1", "dr-li@city"), List.copyOf(connectedTcp(city).keySet()));
                assertEquals(Map.of("id", replicaStatus(r2).get("id"), "active", false), replicaStatus(r2));

                // clinic-a is connected to the standby, clinic-b polls the active replica
                sendAll(clinicA, "clinic-a@county-1", "dr-li@city", "up");
                sendAll(drLi, "dr-li@city", "clinic-a@county-1", "down");
                sendAll(clinicA, "clinic-a@county-1", "clinic-b@county-1", "across");
                await().atMost(10, TimeUnit.SECONDS).until(() -> drLi.run("up").size() >= N && clinicA.run("down").size() >= N
                        && clinicB.run("across").size() >= N);
                List<Integer> inOrder = IntStream.range(0, N).boxed().toList();
                assertEquals(inOrder, drLi.run("up"), "stored by the standby, taken up by the active replica's link");
                assertEquals(inOrder, clinicA.run("down"), "brought down by the active replica, pushed by the standby");
                assertEquals(inOrder, clinicB.run("across"), "from a client of one replica to a client of the other");

                // the active replica dies; the Service sends clinic-b to the survivor
                r1.close();
                httpService.retarget(http[1]);
                sendAll(clinicA, "clinic-a@county-1", "dr-li@city", "up-after");
                sendAll(drLi, "dr-li@city", "clinic-b@county-1", "down-after");
                await().atMost(20, TimeUnit.SECONDS).until(() -> drLi.run("up-after").size() >= N
                        && clinicB.run("down-after").size() >= N);
                assertTrue(r2.active(), "the survivor holds the lease");
                assertTrue(r2.parentConnected(), "and the link to the city");
                assertEquals(inOrder, drLi.run("up-after"), "once and in order after the take-over");
                assertEquals(inOrder, clinicB.run("down-after"), "once and in order after the take-over");
                Thread.sleep(500); // nothing more comes: no packet twice
                assertEquals(inOrder, drLi.run("up"));
                assertEquals(inOrder, clinicA.run("down"));
                assertEquals(inOrder, clinicB.run("across"));
                assertEquals(4L * N, cityDb.count("SELECT count(*) FROM relay_packet"), "each packet stored once at the city");
                assertEquals(5L * N, countyDb.count("SELECT count(*) FROM relay_packet"),
                        "each packet stored once at the county, whichever replica took it");
            } finally {
                r1.close();
                r2.close();
            }
        }
    }

    private static RelayNode replica(String topology, NodeDatabase db, Leases leases, int httpPort, int tcpPort) {
        return RelayNode.builder().topology(Topology.parse(topology, "county-1"))
                .tokens(RelayTokens.parse("clinic-a:tok-a;clinic-b:tok-b")).parentToken("tok-county").dataSource(db.dataSource)
                .httpPort(httpPort).tcpPort(tcpPort).host("127.0.0.1").options(SLOW_SWEEP).registry(new SimpleMeterRegistry())
                .replicas(leases).build().start();
    }

    private static void sendAll(Mailbox from, String fromAddress, String to, String run) throws Exception {
        List<CompletableFuture<SendResult>> sent = IntStream.range(0, N)
                .mapToObj(i -> from.client.send(RelayTreeTest.packet(fromAddress, to, "replica.note", run, i))).toList();
        for (CompletableFuture<SendResult> f : sent) {
            assertEquals(SendResult.Status.STORED, f.get(30, TimeUnit.SECONDS).status());
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> connectedTcp(RelayNode node) throws Exception {
        return (Map<String, Object>) node.status().get("connectedTcp");
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> replicaStatus(RelayNode node) throws Exception {
        return (Map<String, Object>) node.status().get("replica");
    }
}
