package org.hospitalhub.relay;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.ServerSocket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.IntStream;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.RelayFiles;
import org.hospitalhub.relay.client.RelayRejectedException;
import org.hospitalhub.relay.client.SendResult;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.restassured.path.json.JsonPath;

/**
 * A whole relay tree in one test run, on real PostgreSQL (one database per node). The hub under test is the
 * province (top server, audit log, operator API); city-a, county-1 and county-2 are relay nodes built in this JVM
 * from their own topology, database and ports; township clinics and doctors are SDK clients.
 *
 * <pre>
 *                 province (this hub: HTTP :test-port, TCP)  clients dr-zhao (http), ghost (never connects)
 *                    ^ TCP
 *                 city-a (HTTP, TCP)                         client dr-li (tcp)
 *        HTTP ^ (via a proxy)      ^ TCP (via a proxy)
 *        county-1                  county-2 (localShortcut)
 *   clinic-a (http), clinic-a2 (tcp)   clinic-b (tcp), clinic-b2 (http)
 * </pre>
 *
 * A packet from clinic-a to clinic-b goes up over HTTP and down over TCP.
 */
@QuarkusTest
@TestProfile(RelayTreeTest.Province.class)
class RelayTreeTest {

    static final int PROVINCE_TCP = freePort();
    static final Path PROVINCE_FILES = tempDir("relay-files-province");
    static final ObjectMapper JSON = new ObjectMapper();
    static final String OPS = "test-ops-key";

    public static class Province implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            Path file = write("province.yaml", """
                    node: province
                    level: province
                    children:
                      - {id: city-a, transport: tcp, children: [{id: county-1}, {id: county-2}]}
                    clients:
                      - {id: dr-zhao, transport: http}
                      - {id: ghost}
                    """);
            return Map.ofEntries(Map.entry("hub.relay.enabled", "true"),
                    Map.entry("hub.relay.topology-file", file.toString()),
                    Map.entry("hub.relay.tokens", "city-a:tok-city;dr-zhao:tok-zhao;ghost:sha256:"
                            + java.util.HexFormat.of().formatHex(org.hospitalhub.ops.Callers.sha256("tok-ghost"))),
                    Map.entry("hub.relay.tcp-port", String.valueOf(PROVINCE_TCP)),
                    Map.entry("hub.relay.tcp-host", "127.0.0.1"),
                    Map.entry("hub.relay.heartbeat", "1s"),
                    Map.entry("hub.relay.parent-poll-wait", "2s"),
                    Map.entry("hub.relay.request-timeout", "2s"),
                    Map.entry("hub.relay.retry-min", "100ms"),
                    Map.entry("hub.relay.retry-max", "1s"),
                    Map.entry("hub.relay.sweep-period", "300ms"),
                    Map.entry("hub.relay.max-ttl", "1d"),
                    Map.entry("hub.relay.retention", "2d"),
                    Map.entry("hub.relay.file-dir", PROVINCE_FILES.toString()));
        }
    }

    static final RelayOptions FAST = RelayOptions.defaults().withTimings(Duration.ofSeconds(1), Duration.ofSeconds(2),
            Duration.ofSeconds(2), Duration.ofMillis(100), Duration.ofSeconds(1), Duration.ofMillis(300));

    static Tree tree;

    /** city-a, the counties, the proxies and the clients (built once, after the hub started). */
    static final class Tree {
        final int cityHttp = freePort();
        final int cityTcp = freePort();
        final int county1Http = freePort();
        final int county2Tcp = freePort();
        final int county1Tcp = freePort();
        final int county2Http = freePort();
        final Path cityFiles = tempDir("relay-files-city");
        final NodeDatabase cityDb;
        final NodeDatabase county1Db;
        final NodeDatabase county2Db;
        final LinkProxy county1ToCity;
        final LinkProxy county2ToCity;
        RelayNode city;
        final RelayNode county1;
        final RelayNode county2;
        final Mailbox clinicA;
        final Mailbox clinicA2;
        final Mailbox clinicB;
        final Mailbox clinicB2;
        final Mailbox drZhao;
        final Mailbox drLi;
        final Mailbox drWang;

        Tree() throws Exception {
            cityDb = NodeDatabase.fresh("city_a");
            county1Db = NodeDatabase.fresh("county_1");
            county2Db = NodeDatabase.fresh("county_2");
            city = city();
            county1ToCity = new LinkProxy(cityHttp);
            county2ToCity = new LinkProxy(cityTcp);
            county1 = RelayNode.builder().topology(Topology.parse("""
                    node: county-1
                    level: county
                    parent: {id: city-a, transport: http, url: "http://127.0.0.1:%d"}
                    clients:
                      - {id: clinic-a, transport: http}
                      - {id: clinic-a2, transport: tcp}
                    """.formatted(county1ToCity.port()), "county-1"))
                    .tokens(RelayTokens.parse("clinic-a:tok-a;clinic-a2:tok-a2")).parentToken("tok-county-1")
                    .dataSource(county1Db.dataSource).fileDir(tempDir("relay-files-county-1")).httpPort(county1Http).tcpPort(county1Tcp).host("127.0.0.1")
                    .options(FAST).build().start();
            county2 = RelayNode.builder().topology(Topology.parse("""
                    node: county-2
                    level: county
                    parent: {id: city-a, transport: tcp, host: 127.0.0.1, port: %d, url: "http://127.0.0.1:%d"}
                    localShortcut: true
                    clients:
                      - {id: clinic-b, transport: tcp}
                      - {id: clinic-b2, transport: http}
                    """.formatted(county2ToCity.port(), cityHttp), "county-2"))
                    .tokens(RelayTokens.parse("clinic-b:tok-b;clinic-b2:tok-b2")).parentToken("tok-county-2")
                    .dataSource(county2Db.dataSource).fileDir(tempDir("relay-files-county-2")).httpPort(county2Http).tcpPort(county2Tcp).host("127.0.0.1")
                    .options(FAST).build().start();
            clinicA = Mailbox.http("clinic-a@county-1", county1Http, "tok-a");
            clinicA2 = Mailbox.tcp("clinic-a2@county-1", county1Tcp, "tok-a2");
            clinicB = Mailbox.tcp("clinic-b@county-2", county2Tcp, "tok-b");
            clinicB2 = Mailbox.http("clinic-b2@county-2", county2Http, "tok-b2");
            drZhao = Mailbox.http("dr-zhao@province", testPort(), "tok-zhao");
            drLi = Mailbox.tcp("dr-li@city-a", cityTcp, "tok-li");
            drWang = Mailbox.http("dr-wang@city-a", cityHttp, "tok-wang");
        }

        RelayNode city() {
            return RelayNode.builder().topology(Topology.parse("""
                    node: city-a
                    level: city
                    parent: {id: province, transport: tcp, host: 127.0.0.1, port: %d, url: "http://127.0.0.1:%d"}
                    children:
                      - {id: county-1, transport: http}
                      - {id: county-2, transport: tcp}
                    clients:
                      - {id: dr-li, transport: tcp}
                      - {id: dr-wang, transport: http}
                    consultation:
                      hospitals: [dr-li@city-a, dr-wang@city-a]
                      acceptWithin: 2s
                    """.formatted(PROVINCE_TCP, testPort()), "city-a"))
                    .tokens(RelayTokens.parse("county-1:tok-county-1;county-2:tok-county-2;dr-li:tok-li;dr-wang:tok-wang"))
                    .parentToken("tok-city").dataSource(cityDb.dataSource).fileDir(cityFiles).httpPort(cityHttp).tcpPort(cityTcp)
                    .host("127.0.0.1").options(FAST).build().start();
        }

        void close() throws IOException {
            for (Mailbox m : List.of(clinicA, clinicA2, clinicB, clinicB2, drZhao, drLi, drWang)) {
                m.close();
            }
            county1.close();
            county2.close();
            city.close();
            county1ToCity.close();
            county2ToCity.close();
            cityDb.close();
            county1Db.close();
            county2Db.close();
        }
    }

    @BeforeEach
    void buildTree() throws Exception {
        if (tree == null) {
            tree = new Tree();
            await().atMost(Duration.ofSeconds(20)).until(() -> tree.city.parentConnected() && tree.county1.parentConnected()
                    && tree.county2.parentConnected() && tree.clinicA.client.connected() && tree.clinicB.client.connected());
        }
    }

    @AfterAll
    static void tearDown() throws IOException {
        if (tree != null) {
            tree.close();
            tree = null;
        }
    }

    // ---- exchange across the tree ----------------------------------------------------------------------------------

    @Test
    void clientsOnDifferentBranchesExchangeInBothDirectionsInOrderAndTheTopAuditsEveryPacket() throws Exception {
        String run = "both-ways";
        List<CompletableFuture<SendResult>> sent = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            sent.add(tree.clinicA.client.send(packet("clinic-a@county-1", "clinic-b@county-2", "consult.note", run, i)));
            sent.add(tree.clinicB.client.send(packet("clinic-b@county-2", "clinic-a@county-1", "consult.note", run, i)));
            sent.add(tree.drZhao.client.send(packet("dr-zhao@province", "clinic-b2@county-2", "consult.advice", run, i)));
            sent.add(tree.clinicB2.client.send(packet("clinic-b2@county-2", "dr-zhao@province", "consult.question", run, i)));
        }
        for (CompletableFuture<SendResult> f : sent) {
            assertEquals(SendResult.Status.STORED, f.get(20, TimeUnit.SECONDS).status());
        }
        List<Integer> expected = IntStream.range(0, 30).boxed().toList();
        await().atMost(Duration.ofSeconds(30)).until(() -> tree.clinicB.run(run).size() >= 30 && tree.clinicA.run(run).size() >= 30
                && tree.clinicB2.run(run).size() >= 30 && tree.drZhao.run(run).size() >= 30);
        assertEquals(expected, tree.clinicB.run(run), "clinic-b: every packet of clinic-a once, in order (HTTP up, TCP down)");
        assertEquals(expected, tree.clinicA.run(run), "clinic-a: every packet of clinic-b once, in order (TCP up, HTTP down)");
        assertEquals(expected, tree.clinicB2.run(run), "clinic-b2: the province doctor's packets once, in order");
        assertEquals(expected, tree.drZhao.run(run), "dr-zhao: clinic-b2's packets once, in order");
        assertTrue(tree.clinicA.threads.stream().allMatch(t -> t.equals("relay-poll-clinic-a@county-1")),
                "the HTTP client's callback runs on its own thread: " + tree.clinicA.threads);
        assertTrue(tree.clinicB.threads.stream().allMatch(t -> t.equals("relay-receive-clinic-b@county-2")),
                "the TCP client's callback runs on its own thread");
        Packet first = tree.clinicB.packets(run).get(0);
        assertEquals("clinic-a@county-1", first.from());
        assertEquals("consult.note", first.command());

        // a reply travels back with the request's id as correlationId
        SendResult reply = tree.clinicB.client.send(first.reply("consult.ack", obj("run", run + "-reply"), 600))
                .get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.STORED, reply.status());
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicA.packets(run + "-reply").size() == 1);
        assertEquals(first.packetId(), tree.clinicA.packets(run + "-reply").get(0).correlationId());

        // the top's audit log: from, to, command, time, size; never the parameters
        JsonPath audit = given().header("X-Api-Key", OPS).queryParam("from", "clinic-a@county-1").queryParam("command", "consult.note")
                .queryParam("limit", "1000").get("/api/v1/relay/audit").then().statusCode(200).extract().jsonPath();
        List<Map<String, Object>> items = audit.getList("items");
        assertEquals(30, items.stream().filter(i -> "clinic-b@county-2".equals(i.get("target"))).count(),
                "every packet clinic-a sent passed the top and was audited once");
        Map<String, Object> one = items.get(0);
        assertTrue(((Number) one.get("sizeBytes")).intValue() > 50, "size recorded: " + one);
        assertTrue(one.containsKey("passedAt") && one.containsKey("createdAt") && "city-a".equals(one.get("receivedFrom")), one.toString());
        String raw = given().header("X-Api-Key", OPS).get("/api/v1/relay/audit?limit=1000").asString();
        assertFalse(raw.contains("\"run\"") || raw.contains("parameters"), "the audit holds no parameters");
        assertEquals(30, audit(Map.of("from", "dr-zhao@province", "command", "consult.advice")), "the top's own clients too");
    }

    @Test
    void clientsOfOneCountyGoThroughTheTopUnlessTheirNodeHasTheLocalShortcut() throws Exception {
        String run = "local";
        tree.clinicA.client.send(packet("clinic-a@county-1", "clinic-a2@county-1", "local.note", run, 0)).get(10, TimeUnit.SECONDS);
        tree.clinicB.client.send(packet("clinic-b@county-2", "clinic-b2@county-2", "local.note", run, 0)).get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicA2.run(run).size() == 1 && tree.clinicB2.run(run).size() == 1);
        assertEquals(1, audit(Map.of("from", "clinic-a@county-1", "command", "local.note")),
                "county-1 has no shortcut: its local packet went through the top and is audited");
        assertEquals(0, audit(Map.of("from", "clinic-b@county-2", "command", "local.note")),
                "county-2 has the shortcut: delivered without passing the top");
    }

    // ---- links cut and restored ------------------------------------------------------------------------------------

    @Test
    void stoppingAndRestartingTheCityServerLosesNothing() throws Exception {
        String run = "city-restart";
        tree.city.close();
        List<CompletableFuture<SendResult>> sent = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            sent.add(tree.clinicA.client.send(packet("clinic-a@county-1", "clinic-b@county-2", "restart.note", run, i)));
            sent.add(tree.clinicB.client.send(packet("clinic-b@county-2", "clinic-a@county-1", "restart.note", run, i)));
        }
        for (CompletableFuture<SendResult> f : sent) {
            assertEquals(SendResult.Status.STORED, f.get(10, TimeUnit.SECONDS).status(), "stored at the county while the city is down");
        }
        await().atMost(Duration.ofSeconds(10)).until(() -> tree.county1Db.count(
                "SELECT COUNT(*) FROM relay_waiting WHERE hop = 'city-a' AND attempts > 0") > 0);
        assertEquals(0, tree.clinicB.run(run).size());

        tree.city = tree.city(); // same database, same ports: the counties and the province link reconnect by themselves
        List<Integer> expected = IntStream.range(0, 20).boxed().toList();
        await().atMost(Duration.ofSeconds(30)).until(() -> tree.clinicB.run(run).size() >= 20 && tree.clinicA.run(run).size() >= 20);
        assertEquals(expected, tree.clinicB.run(run));
        assertEquals(expected, tree.clinicA.run(run));
    }

    @Test
    void droppedTcpConnectionsReconnectAndResumeWithoutLossOrDuplicates() throws Exception {
        String run = "tcp-drop";
        long connectsBefore = tree.clinicB.connects();
        List<CompletableFuture<SendResult>> sent = new ArrayList<>();
        for (int i = 0; i < 60; i++) {
            sent.add(tree.clinicA.client.send(packet("clinic-a@county-1", "clinic-b@county-2", "drop.note", run, i)));
            if (i == 20 || i == 40) {
                long connects = tree.clinicB.connects();
                tree.city.dropTcpConnections();   // province -> city-a link stays; county-2 and dr-li are cut
                tree.county2.dropTcpConnections(); // clinic-b is cut
                await().atMost(Duration.ofSeconds(10)).until(() -> tree.clinicB.connects() > connects);
            }
        }
        for (CompletableFuture<SendResult> f : sent) {
            f.get(20, TimeUnit.SECONDS);
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> tree.clinicB.run(run).size() >= 60);
        assertEquals(IntStream.range(0, 60).boxed().toList(), tree.clinicB.run(run));
        assertTrue(tree.clinicB.connects() >= connectsBefore + 2, "clinic-b's connection was cut twice and came back by itself");
    }

    @Test
    void aBlockedHttpPollerTimesOutReconnectsAndGetsEverything() throws Exception {
        String run = "blocked-poll";
        tree.county1ToCity.blackhole(); // county-1's long-poll to city-a hangs, its sends too
        for (int i = 0; i < 10; i++) {
            tree.clinicB.client.send(packet("clinic-b@county-2", "clinic-a@county-1", "blocked.note", run, i)).get(10, TimeUnit.SECONDS);
        }
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.cityDb.count("SELECT COUNT(*) FROM relay_waiting WHERE hop = "
                + "'county-1' AND command = 'blocked.note'") == 10);
        Thread.sleep(1000); // the poll is held by the black hole: nothing moves
        assertEquals(0, tree.clinicA.run(run).size());
        tree.county1ToCity.restore();
        await().atMost(Duration.ofSeconds(20)).until(() -> tree.clinicA.run(run).size() >= 10);
        assertEquals(IntStream.range(0, 10).boxed().toList(), tree.clinicA.run(run));
    }

    // ---- security --------------------------------------------------------------------------------------------------

    @Test
    void aClientCannotSendAsSomeoneElse() throws Exception {
        ExecutionException e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class, () -> tree.clinicA.client
                .send(packet("clinic-b@county-2", "dr-zhao@province", "forged", "forged", 0)).get(10, TimeUnit.SECONDS));
        RelayRejectedException r = assertInstanceOf(RelayRejectedException.class, e.getCause());
        assertEquals(403, r.status());
        assertEquals("from", r.field());
        assertTrue(r.getMessage().contains("a client can only send as itself"), r.getMessage());
        // the same over TCP
        e = org.junit.jupiter.api.Assertions.assertThrows(ExecutionException.class, () -> tree.clinicB.client
                .send(packet("clinic-a@county-1", "dr-zhao@province", "forged", "forged", 1)).get(10, TimeUnit.SECONDS));
        assertEquals(403, assertInstanceOf(RelayRejectedException.class, e.getCause()).status());
        assertEquals(0, tree.county1Db.count("SELECT COUNT(*) FROM relay_packet WHERE command = 'forged'")
                + tree.county2Db.count("SELECT COUNT(*) FROM relay_packet WHERE command = 'forged'"), "nothing stored");
    }

    @Test
    void aChildNodeMaySendOnlyForItsOwnSubtreeAndTokensAreChecked() {
        String forged = body(packet("clinic-b@county-2", "dr-li@city-a", "forged", "forged", 2));
        given().baseUri("http://127.0.0.1").port(tree.cityHttp).header("Authorization", "Bearer tok-county-1")
                .contentType("application/json").body(forged).post("/relay/v1/packets")
                .then().statusCode(403).body("field", equalTo("from")).body("rule", equalTo("sender-in-subtree"));
        given().baseUri("http://127.0.0.1").port(tree.cityHttp).header("Authorization", "Bearer wrong")
                .contentType("application/json").body(forged).post("/relay/v1/packets")
                .then().statusCode(401).body("error", equalTo("unknown relay token"));
        given().baseUri("http://127.0.0.1").port(tree.cityHttp).contentType("application/json").body(forged)
                .post("/relay/v1/packets").then().statusCode(401);
        // county-2 is a TCP child of city-a: its token does not open the HTTP side
        given().baseUri("http://127.0.0.1").port(tree.cityHttp).header("Authorization", "Bearer tok-county-2")
                .get("/relay/v1/inbox").then().statusCode(403).body("field", equalTo("transport"));
        // relay tokens do not open the hub's API, API keys do not open the relay
        given().header("Authorization", "Bearer tok-zhao").get("/api/v1/relay/audit").then().statusCode(401);
        given().header("Authorization", "Bearer " + OPS).get("/relay/v1/inbox").then().statusCode(401);
        given().header("X-Api-Key", "test-his-key").get("/api/v1/relay/audit").then().statusCode(403);
    }

    @Test
    void invalidPacketsAreRefusedNamingTheFieldAndNothingIsStored() {
        ObjectNode p = packet("dr-zhao@province", "clinic-a@county-1", "bad", "bad", 0).toJson();
        p.remove("command");
        given().header("Authorization", "Bearer tok-zhao").contentType("application/json")
                .body("{\"packets\":[" + packet("dr-zhao@province", "clinic-a@county-1", "ok-before-bad", "bad", 1).toJson() + "," + p + "]}")
                .post("/relay/v1/packets").then().statusCode(400).body("field", equalTo("command")).body("rule", equalTo("required"));
        p.put("command", "bad").put("ttl", -5);
        given().header("Authorization", "Bearer tok-zhao").contentType("application/json").body("{\"packets\":[" + p + "]}")
                .post("/relay/v1/packets").then().statusCode(400).body("field", equalTo("ttl"));
        p.put("ttl", 60).put("to", "not an address");
        given().header("Authorization", "Bearer tok-zhao").contentType("application/json").body("{\"packets\":[" + p + "]}")
                .post("/relay/v1/packets").then().statusCode(400).body("field", equalTo("to")).body("rule", equalTo("address"));
        assertEquals(0, audit(Map.of("command", "ok-before-bad")), "a refused request stores nothing, not even its valid packets");
    }

    // ---- ttl and dead letters --------------------------------------------------------------------------------------

    @Test
    void aPacketPastItsTtlGoesToTheDeadLetterStoreWithTheReason() throws Exception {
        // ghost is a client of the province that never connects
        SendResult r = tree.drZhao.client.send(new Packet("ttl-1", "dr-zhao@province", "ghost@province", "ttl.note",
                obj("run", "ttl"), Instant.now(), 1, null)).get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.STORED, r.status());
        await().atMost(Duration.ofSeconds(10)).until(() -> given().header("X-Api-Key", OPS).queryParam("to", "ghost@province")
                .get("/api/v1/relay/dead-letters").jsonPath().getList("items").size() == 1);
        given().header("X-Api-Key", OPS).queryParam("to", "ghost@province").get("/api/v1/relay/dead-letters").then()
                .body("items[0].packetId", equalTo("ttl-1")).body("items[0].command", equalTo("ttl.note"))
                .body("items[0].reason", containsString("ttl expired at node province while waiting for ghost@province"))
                .body("items[0].reason", containsString("never picked up"));

        // already expired when it arrives: dead at once, and the sender is told so
        SendResult late = tree.clinicA.client.send(new Packet("ttl-2", "clinic-a@county-1", "clinic-b@county-2", "ttl.note",
                obj("run", "ttl"), Instant.now().minusSeconds(120), 60, null)).get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.DEAD, late.status());
        assertTrue(late.reason().contains("ttl of 60 s had passed"), late.reason());

        // a target nobody knows: the top dead-letters it with the reason
        tree.clinicA.client.send(packet("clinic-a@county-1", "someone@county-9", "lost.note", "lost", 0)).get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> given().header("X-Api-Key", OPS).queryParam("to", "someone@county-9")
                .get("/api/v1/relay/dead-letters").jsonPath().getList("items").size() == 1);
        given().header("X-Api-Key", OPS).queryParam("to", "someone@county-9").get("/api/v1/relay/dead-letters").then()
                .body("items[0].reason", containsString("no node 'county-9' in the relay tree"));
    }

    @Test
    void duplicatesAreDroppedAtEveryHop() throws Exception {
        Packet p = packet("clinic-a@county-1", "clinic-b@county-2", "dup.note", "dup", 0);
        assertEquals(SendResult.Status.STORED, tree.clinicA.client.send(p).get(10, TimeUnit.SECONDS).status());
        assertEquals(SendResult.Status.DUPLICATE, tree.clinicA.client.send(p).get(10, TimeUnit.SECONDS).status());
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicB.run("dup").size() == 1);
        // the same packet handed to city-a again by county-1 (as after a lost ack) is not stored twice
        given().baseUri("http://127.0.0.1").port(tree.cityHttp).header("Authorization", "Bearer tok-county-1")
                .contentType("application/json").body(body(p)).post("/relay/v1/packets")
                .then().statusCode(200).body("results[0].status", equalTo("DUPLICATE"));
        Thread.sleep(500);
        assertEquals(1, tree.clinicB.run("dup").size());
        assertEquals(1, audit(Map.of("command", "dup.note")));
    }

    @Test
    void theAuditLogCannotBeChangedThroughTheApi() {
        long before = audit(Map.of());
        for (String method : List.of("DELETE", "PUT", "POST", "PATCH")) {
            int status = given().header("X-Api-Key", OPS).contentType("application/json").body("{}")
                    .request(method, "/api/v1/relay/audit").statusCode();
            assertEquals(405, status, method + " on the audit log");
        }
        given().header("X-Api-Key", OPS).delete("/api/v1/relay/audit/1").then().statusCode(404);
        assertTrue(audit(Map.of()) >= before);
        given().header("X-Api-Key", OPS).get("/api/v1/relay/status").then().statusCode(200)
                .body("node", equalTo("province")).body("top", equalTo(true));
        String metrics = given().get("/q/metrics").asString();
        assertTrue(metrics.contains("hub_relay_packets_total{node=\"province\",outcome=\"stored\"}"), "packet counter exported");
        assertTrue(metrics.contains("hub_relay_tcp_connections{node=\"province\"} 1.0"), "city-a connected over TCP");
        assertFalse(metrics.contains("hub_relay_parent_connected{node=\"province\""), "the top node has no link up to report");
        assertTrue(metrics.contains("hub_relay_parent_connected{node=\"city-a\"} 1.0"), "a node with a parent reports its link");
    }

    // ---- consultation service ----------------------------------------------------------------------------------------

    @Test
    void aConsultationOfferedToTwoHospitalsIsAcceptedByOneAndTheOtherIsTold() throws Exception {
        Packet request = Packet.create("clinic-a@county-1", "consultation@city", "consult.request",
                obj("question", "chest CT: nodule?").put("patientRef", "P-17"), 600);
        assertEquals(SendResult.Status.STORED, tree.clinicA.client.send(request).get(10, TimeUnit.SECONDS).status());
        String id = request.packetId();
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.drLi.consultation("consult.offer", id).size() == 1
                && tree.drWang.consultation("consult.offer", id).size() == 1);
        Packet offer = tree.drWang.consultation("consult.offer", id).get(0);
        assertEquals("consultation@city-a", offer.from());
        assertEquals("clinic-a@county-1", offer.parameters().path("requester").asText());
        assertEquals("chest CT: nodule?", offer.parameters().path("question").asText());

        tree.drLi.client.send(Packet.create("dr-li@city-a", "consultation@city-a", "consult.accept", obj("consultationId", id), 600))
                .get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.drLi.consultation("consult.assigned", id).size() == 1);
        tree.drWang.client.send(Packet.create("dr-wang@city-a", "consultation@city-a", "consult.accept", obj("consultationId", id), 600))
                .get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicA.consultation("consult.accepted", id).size() == 1
                && tree.drWang.consultation("consult.taken", id).size() == 1);
        assertEquals("dr-li@city-a", tree.clinicA.consultation("consult.accepted", id).get(0).parameters().path("by").asText());
        assertEquals("dr-li@city-a", tree.drWang.consultation("consult.taken", id).get(0).parameters().path("by").asText());
        assertEquals(0, tree.drWang.consultation("consult.assigned", id).size(), "the late accept did not win");
        assertEquals(0, tree.drLi.consultation("consult.taken", id).size());

        // the winner's opinion travels back to the requester as an ordinary packet
        tree.drLi.client.send(new Packet("opinion-" + id, "dr-li@city-a", "clinic-a@county-1", "consult.opinion",
                obj("consultationId", id).put("text", "benign"), Instant.now(), 600, id)).get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicA.consultation("consult.opinion", id).size() == 1);
        assertEquals(id, tree.clinicA.consultation("consult.opinion", id).get(0).correlationId());
        Thread.sleep(300);
        assertEquals(1, tree.drWang.consultation("consult.taken", id).size(), "told once, although told for two reasons");
    }

    @Test
    void aConsultationNobodyAcceptsInTimeIsReportedToTheRequester() throws Exception {
        Packet request = Packet.create("clinic-b@county-2", "consultation@city", "consult.request", obj("question", "ECG?"), 600);
        tree.clinicB.client.send(request).get(10, TimeUnit.SECONDS);
        String id = request.packetId();
        await().atMost(Duration.ofSeconds(20)).until(() -> tree.clinicB.consultation("consult.unanswered", id).size() == 1
                && tree.drLi.consultation("consult.withdrawn", id).size() == 1
                && tree.drWang.consultation("consult.withdrawn", id).size() == 1);
        assertTrue(tree.clinicB.consultation("consult.unanswered", id).get(0).parameters().path("reason").asText()
                .contains("accepted within PT2S"));
        tree.drLi.client.send(Packet.create("dr-li@city-a", "consultation@city-a", "consult.accept", obj("consultationId", id), 600))
                .get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.drLi.consultation("consult.refused", id).size() == 1);
        assertTrue(tree.drLi.consultation("consult.refused", id).get(0).parameters().path("reason").asText().contains("too late"));
        assertEquals(0, tree.clinicB.consultation("consult.accepted", id).size());
    }

    // ---- files ------------------------------------------------------------------------------------------------------

    @Test
    void aFileIsUploadedResumablyWithItsChecksumAndDownloadedOnAnotherBranchThroughTheTree() throws Exception {
        Path dir = tempDir("relay-files-test");
        byte[] data = new byte[700 * 1024];
        new java.util.Random(17).nextBytes(data);
        Path image = Files.write(dir.resolve("ct-scan.dcm"), data);
        String sha = RelayFiles.sha256(image);
        // the link broke after the first 256 KiB: the node has them, the SDK goes on from there
        given().baseUri("http://127.0.0.1").port(tree.county1Http).header("Authorization", "Bearer tok-a")
                .contentType("application/octet-stream").body(java.util.Arrays.copyOf(data, 262144))
                .put("/relay/v1/files/" + sha + "?size=" + data.length + "&offset=0").then().statusCode(200)
                .body("offset", equalTo(262144)).body("complete", equalTo(false));
        given().baseUri("http://127.0.0.1").port(tree.county1Http).header("Authorization", "Bearer tok-a")
                .contentType("application/octet-stream").body(new byte[10])
                .put("/relay/v1/files/" + sha + "?size=" + data.length + "&offset=0").then().statusCode(409)
                .body("offset", equalTo(262144)).body("rule", equalTo("resume-at"));
        RelayFiles clinicAFiles = new RelayFiles(java.net.URI.create("http://127.0.0.1:" + tree.county1Http), "tok-a", 256 * 1024,
                Duration.ofSeconds(10));
        assertEquals(262144, clinicAFiles.offset(sha));
        RelayFiles.FileRef ref = clinicAFiles.upload(image);
        assertEquals(sha, ref.sha256());
        assertEquals(data.length, ref.size());

        // the packet carries the reference, not the bytes
        tree.clinicA.client.send(Packet.create("clinic-a@county-1", "clinic-b@county-2", "consult.images",
                obj("run", "files").set("file", ref.toJson()), 600)).get(10, TimeUnit.SECONDS);
        await().atMost(Duration.ofSeconds(15)).until(() -> tree.clinicB.packets("files").size() == 1);
        RelayFiles.FileRef got = RelayFiles.FileRef.fromJson(tree.clinicB.packets("files").get(0).parameters().path("file"));
        await().atMost(Duration.ofSeconds(20)).until(() -> Files.exists(PROVINCE_FILES.resolve(sha)));  // replicated to the top

        // clinic-b downloads from its own server (county-2), which fetches through city-a
        RelayFiles clinicBFiles = new RelayFiles(java.net.URI.create("http://127.0.0.1:" + tree.county2Http), "tok-b");
        Path copy = dir.resolve("copy.dcm");
        clinicBFiles.download(got, copy);
        assertTrue(java.util.Arrays.equals(data, Files.readAllBytes(copy)), "the same bytes");
        assertEquals("ct-scan.dcm", got.name());

        // bytes that do not match the announced checksum are refused and discarded
        String claimed = "0".repeat(64);
        given().baseUri("http://127.0.0.1").port(tree.county1Http).header("Authorization", "Bearer tok-a")
                .contentType("application/octet-stream").body(new byte[] {1, 2, 3})
                .put("/relay/v1/files/" + claimed + "?size=3&offset=0").then().statusCode(422).body("rule", equalTo("checksum"));
        assertEquals(0, clinicAFiles.offset(claimed));
        given().baseUri("http://127.0.0.1").port(tree.county2Http).header("Authorization", "Bearer tok-b")
                .get("/relay/v1/files/" + claimed).then().statusCode(404);
        given().baseUri("http://127.0.0.1").port(tree.county2Http).get("/relay/v1/files/" + sha).then().statusCode(401);
    }

    // ---- helpers ---------------------------------------------------------------------------------------------------

    static long audit(Map<String, String> filters) {
        return given().header("X-Api-Key", OPS).queryParams(filters).queryParam("limit", "1000").get("/api/v1/relay/audit")
                .then().statusCode(200).extract().jsonPath().getList("items").size();
    }

    static Packet packet(String from, String to, String command, String run, int n) {
        return Packet.create(from, to, command, obj("run", run).put("n", n), 600);
    }

    static ObjectNode obj(String k, String v) {
        return JSON.createObjectNode().put(k, v);
    }

    static String body(Packet p) {
        return "{\"packets\":[" + p.toJson() + "]}";
    }

    static int testPort() {
        return org.eclipse.microprofile.config.ConfigProvider.getConfig().getValue("quarkus.http.test-port", Integer.class);
    }

    /**
     * A port for a test server, free now and never handed out twice in this JVM. Taken below Linux's ephemeral range
     * (32768 and up): a port the kernel gave {@code new ServerSocket(0)} could be taken, before the server bound it, by
     * any outgoing connection of the test JVM (Kafka, PostgreSQL, HTTP clients), which failed a run with "Address
     * already in use".
     */
    static int freePort() {
        for (int tries = 0; tries < PORTS_TO; tries++) {
            int port = PORTS_FROM + Math.floorMod(Ports.NEXT.getAndIncrement(), PORTS_TO - PORTS_FROM);
            if (!Ports.HANDED_OUT.add(port)) {
                continue;
            }
            try (ServerSocket s = new ServerSocket()) {
                s.bind(new java.net.InetSocketAddress("127.0.0.1", port));
                return port;
            } catch (IOException inUse) {
                // taken by another process: the next one
            }
        }
        throw new UncheckedIOException(new IOException("no free port between " + PORTS_FROM + " and " + PORTS_TO));
    }

    private static final int PORTS_FROM = 20_000;
    private static final int PORTS_TO = 32_000;

    /** Initialised on first use (static fields of this class call {@link #freePort} while it is being initialised). */
    private static final class Ports {
        /** Where this JVM starts looking (random, so two test runs on one machine seldom try the same ports). */
        static final java.util.concurrent.atomic.AtomicInteger NEXT = new java.util.concurrent.atomic.AtomicInteger(
                new java.util.Random().nextInt(PORTS_TO - PORTS_FROM));
        static final java.util.Set<Integer> HANDED_OUT = java.util.concurrent.ConcurrentHashMap.newKeySet();
    }

    static Path tempDir(String prefix) {
        try {
            return Files.createTempDirectory(prefix);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Path write(String name, String content) {
        try {
            Path dir = Files.createDirectories(Path.of("target", "relay-test"));
            return Files.writeString(dir.resolve(name), content).toAbsolutePath();
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
