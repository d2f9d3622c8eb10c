package org.hospitalhub.relay;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Path;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CyclicBarrier;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.relay.client.Packet;
import org.hospitalhub.relay.client.SendResult;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.restassured.path.json.JsonPath;
import io.restassured.response.Response;

/**
 * An operator replays relay dead letters through the API ({@code POST /api/v1/relay/dead-letters/{id}/replay}), on
 * real PostgreSQL. The hub under test is the city node (its database is the hub's); its parent, the province, is a
 * {@link RelayNode} in the test JVM with its own database, reached through a proxy that can cut the link; the doctor
 * is the province's client, clinic and late the city's.
 *
 * <pre>
 *   province (RelayNode, HTTP)          client doctor
 *      ^ HTTP, through a cuttable proxy
 *   city (this hub, localShortcut)      clients clinic (sends), late (connects late)
 * </pre>
 *
 * The hub's sweep runs every 8 s, so that the forwarder to the province, idle, waits that long unless woken: a
 * replayed packet that reaches the doctor at once was woken by the replay.
 */
@QuarkusTest
@TestProfile(RelayReplayTest.City.class)
@QuarkusTestResource(value = PostgresResource.class, restrictToAnnotatedClass = true)
class RelayReplayTest {

    static final int PROVINCE_HTTP = RelayTreeTest.freePort();
    static final LinkProxy UP = proxy(PROVINCE_HTTP);
    static final String OPS = RelayTreeTest.OPS;
    static final Duration SWEEP = Duration.ofSeconds(8);

    public static class City implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            Path file = RelayTreeTest.write("replay-city.yaml", """
                    node: city
                    level: city
                    parent: {id: province, transport: http, url: "http://127.0.0.1:%d"}
                    localShortcut: true
                    clients:
                      - {id: clinic, transport: http}
                      - {id: late, transport: http}
                    """.formatted(UP.port()));
            return Map.ofEntries(Map.entry("hub.relay.enabled", "true"),
                    Map.entry("hub.relay.topology-file", file.toString()),
                    Map.entry("hub.relay.tokens", "clinic:tok-clinic;late:tok-late"),
                    Map.entry("hub.relay.parent-token", "tok-city"),
                    Map.entry("hub.relay.tcp-port", "0"),
                    Map.entry("hub.relay.heartbeat", "1s"),
                    Map.entry("hub.relay.parent-poll-wait", "2s"),
                    Map.entry("hub.relay.request-timeout", "2s"),
                    Map.entry("hub.relay.retry-min", "100ms"),
                    Map.entry("hub.relay.retry-max", "1s"),
                    Map.entry("hub.relay.sweep-period", SWEEP.toMillis() + "ms"),
                    Map.entry("hub.relay.max-ttl", "1d"),
                    Map.entry("hub.relay.retention", "2d"),
                    Map.entry("hub.relay.file-dir", RelayTreeTest.tempDir("relay-files-replay").toString()));
        }
    }

    static NodeDatabase provinceDb;
    static RelayNode province;
    static Mailbox doctor;
    static Mailbox clinic;

    static RelayNode province() {
        return RelayNode.builder().topology(Topology.parse("""
                node: province
                level: province
                children: [{id: city, transport: http}]
                clients: [{id: doctor, transport: http}]
                """, "province")).tokens(RelayTokens.parse("city:tok-city;doctor:tok-doctor"))
                .dataSource(provinceDb.dataSource).httpPort(PROVINCE_HTTP).host("127.0.0.1").options(RelayTreeTest.FAST)
                .build().start();
    }

    @BeforeEach
    void buildTree() throws Exception {
        if (province == null) {
            provinceDb = NodeDatabase.fresh("replay_province");
            province = province();
            doctor = Mailbox.http("doctor@province", PROVINCE_HTTP, "tok-doctor");
            clinic = Mailbox.http("clinic@city", RelayTreeTest.testPort(), "tok-clinic");
            await().atMost(Duration.ofSeconds(20)).until(() -> doctor.client.connected() && clinic.client.connected()
                    && parentConnected());
        }
    }

    @AfterAll
    static void tearDown() throws IOException {
        if (doctor != null) {
            doctor.close();
            clinic.close();
            province.close();
            provinceDb.close();
            province = null;
        }
        UP.close();
    }

    // ---- the next hop down, then back ------------------------------------------------------------------------------

    /**
     * The province is stopped; of three packets the clinic sends, the short-lived one dies at the city waiting for
     * it. The province comes back and gets the other two, then a third; the operator replays the dead one with a new
     * ttl: the doctor gets it once, after the others, at once (the replay wakes the forwarder), and it is no longer a
     * dead letter; a second replay is 409.
     */
    @Test
    void aPacketThatDiedWhileTheParentWasDownIsReplayedAndDeliveredOnceAfterTheOthers() throws Exception {
        String run = "parent-down";
        province.close();
        Packet a0 = RelayTreeTest.packet("clinic@city", "doctor@province", "replay.note", run, 0);
        Packet doomed = new Packet("parent-down-doomed", "clinic@city", "doctor@province", "replay.note",
                RelayTreeTest.obj("run", run).put("n", 3), Instant.now(), 2, null);
        Packet a1 = RelayTreeTest.packet("clinic@city", "doctor@province", "replay.note", run, 1);
        Packet a2 = RelayTreeTest.packet("clinic@city", "doctor@province", "replay.note", run, 2);
        try {
            for (Packet p : List.of(a0, doomed, a1)) {
                assertEquals(SendResult.Status.STORED, clinic.client.send(p).get(10, TimeUnit.SECONDS).status());
            }
            long id = awaitDeadLetter(doomed.packetId());
            given().header("X-Api-Key", OPS).queryParam("to", "doctor@province").get("/api/v1/relay/dead-letters").then()
                    .body("items.find { it.id == " + id + " }.reason",
                            containsString("ttl expired at node city while waiting for province to take it"))
                    .body("items.find { it.id == " + id + " }.hop", equalTo("province"));
            // a request that held it before it died is given up by the SDK after its send timeout (2 x the request
            // timeout); returning earlier, the province could get that copy, store it dead on arrival and drop the
            // replay as a duplicate (the operator would then replay it there)
            Thread.sleep(5000);
        } finally {
            province = province(); // same database and port: the city's link and the doctor reconnect by themselves
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> doctor.run(run).size() >= 2);
        assertEquals(SendResult.Status.STORED, clinic.client.send(a2).get(10, TimeUnit.SECONDS).status());
        await().atMost(Duration.ofSeconds(30)).until(() -> doctor.run(run).size() >= 3);
        assertEquals(List.of(0, 1, 2), doctor.run(run), "the dead one was not sent");

        long id = deadLetterId(doomed.packetId());
        long before = System.nanoTime();
        JsonPath r = given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": 600}")
                .post("/api/v1/relay/dead-letters/" + id + "/replay").then().statusCode(200)
                .body("id", equalTo((int) id)).body("packetId", equalTo(doomed.packetId()))
                .body("hop", equalTo("province")).body("deadHop", equalTo("province"))
                .body("replayedBy", equalTo("ops")).extract().jsonPath();
        Instant expires = OffsetDateTime.parse(r.getString("expiresAt")).toInstant();
        assertTrue(!expires.isBefore(Instant.now().plusSeconds(590)), "600 s from the replay: " + expires);
        await().atMost(Duration.ofSeconds(20)).until(() -> doctor.run(run).size() >= 4);
        long took = TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - before);
        assertTrue(took < SWEEP.toMillis() / 4, "the replay woke the forwarder: the doctor had the packet after " + took
                + " ms (the idle forwarder waits " + SWEEP + ")");
        Thread.sleep(1000);
        assertEquals(List.of(0, 1, 2, 3), doctor.run(run), "once, after the packets queued before it");
        assertEquals(doomed.packetId(), doctor.packets(run).get(3).packetId());

        assertTrue(deadLetterIds().stream().noneMatch(i -> i == id), "no longer listed");
        given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/" + id + "/replay").then().statusCode(409)
                .body("status", equalTo(409)).body("field", equalTo("id")).body("rule", equalTo("dead-letter"))
                .body("error", containsString("is not a dead letter: it was replayed at"));
        await().atMost(Duration.ofSeconds(10)).until(() -> waitingAtCity(doomed.packetId()) == 0);
        assertEquals(1, count("SELECT COUNT(*) FROM relay_replay WHERE packet_row = " + id + " AND replayed_by = 'ops' "
                + "AND dead_reason LIKE 'ttl expired at node city%' AND hop = 'province'"), "the replay is recorded");
    }

    /**
     * The packet reached the province (which gave it to the doctor) but the city never heard back before it died
     * there. Replayed, the province drops it as a duplicate; the city settles it by its cursor: the doctor has it
     * once, and it is neither waiting nor dead again after its new ttl.
     */
    @Test
    void aPacketTheParentAlreadyHadIsDroppedThereAsADuplicateAndSettledHere() throws Exception {
        String run = "had-it";
        Packet p = new Packet("had-it-1", "clinic@city", "doctor@province", "replay.note",
                RelayTreeTest.obj("run", run).put("n", 0), Instant.now(), 3, null);
        UP.blackhole(); // the city's requests to the province hang
        long id;
        try {
            assertEquals(SendResult.Status.STORED, clinic.client.send(p).get(10, TimeUnit.SECONDS).status());
            // what the city's request would have done had it got through: the province stores it (leg from below)
            given().baseUri("http://127.0.0.1").port(PROVINCE_HTTP).header("Authorization", "Bearer tok-city")
                    .contentType("application/json").body(RelayTreeTest.body(p)).post("/relay/v1/packets").then()
                    .statusCode(200).body("results[0].status", equalTo("STORED"));
            await().atMost(Duration.ofSeconds(10)).until(() -> doctor.run(run).size() == 1);
            id = awaitDeadLetter(p.packetId());
        } finally {
            UP.restore();
        }
        await().atMost(Duration.ofSeconds(20)).until(RelayReplayTest::parentConnected);
        given().header("X-Api-Key", OPS).queryParam("ttl", "2").post("/api/v1/relay/dead-letters/" + id + "/replay").then()
                .statusCode(200).body("hop", equalTo("province"));
        await().atMost(Duration.ofSeconds(20)).until(() -> waitingAtCity(p.packetId()) == 0);
        Instant settled = Instant.now();
        Thread.sleep(Duration.ofSeconds(2).plus(SWEEP).plusMillis(500).toMillis()); // its ttl, then a whole sweep
        assertEquals(1, doctor.run(run).size(), "once: the replayed copy was dropped at the province");
        assertTrue(deadLetterIds().stream().noneMatch(i -> i == id), "not dead again after its ttl (settled at " + settled + ")");
        assertEquals(1, count("SELECT COUNT(*) FROM relay_packet p JOIN relay_hop_ack a ON a.hop = p.hop WHERE p.id = " + id
                + " AND p.status = 'PENDING' AND p.hop_seq <= a.acked_seq"), "settled by the province hop's cursor");
        assertTrue(province.deadLetters(null, null, 0, 1000).stream().noneMatch(d -> d.packetId().equals(p.packetId())),
                "it did not die at the province");
    }

    /** A client of this node that was away: its packet died waiting; replayed with ?ttl= it gets it after the other. */
    @Test
    void aPacketThatDiedWaitingForAClientIsReplayedToItInOrder() throws Exception {
        String run = "late";
        Packet l0 = new Packet("late-0", "clinic@city", "late@city", "replay.note", RelayTreeTest.obj("run", run).put("n", 0),
                Instant.now(), 600, null);
        Packet doomed = new Packet("late-1", "clinic@city", "late@city", "replay.note",
                RelayTreeTest.obj("run", run).put("n", 1), Instant.now(), 1, null);
        for (Packet p : List.of(l0, doomed)) {
            assertEquals(SendResult.Status.STORED, clinic.client.send(p).get(10, TimeUnit.SECONDS).status());
        }
        long id = awaitDeadLetter(doomed.packetId());
        given().header("X-Api-Key", OPS).queryParam("to", "late@city").get("/api/v1/relay/dead-letters").then()
                .body("items.find { it.id == " + id + " }.reason",
                        containsString("ttl expired at node city while waiting for late@city to take it (never picked up)"));
        try (Mailbox late = Mailbox.http("late@city", RelayTreeTest.testPort(), "tok-late")) {
            await().atMost(Duration.ofSeconds(20)).until(() -> late.run(run).size() >= 1);
            given().header("X-Api-Key", OPS).queryParam("ttl", "600").post("/api/v1/relay/dead-letters/" + id + "/replay")
                    .then().statusCode(200).body("hop", equalTo("late@city"));
            await().atMost(Duration.ofSeconds(20)).until(() -> late.run(run).size() >= 2);
            Thread.sleep(500);
            assertEquals(List.of(0, 1), late.run(run));
        }
        assertTrue(deadLetterIds().stream().noneMatch(i -> i == id));
    }

    // ---- what is refused --------------------------------------------------------------------------------------------

    @Test
    void deadOnArrivalIsReroutedWhenItCanBeAndRefusalsNameTheProblemAndChangeNothing() throws Exception {
        // no such client: still unroutable, 422 with the reason, and it stays a dead letter
        SendResult lost = clinic.client.send(RelayTreeTest.packet("clinic@city", "nobody@city", "replay.lost", "lost", 0))
                .get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.DEAD, lost.status());
        long lostId = deadLetterId(lost.packetId());
        given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/" + lostId + "/replay").then().statusCode(422)
                .body("rule", equalTo("route")).body("error", containsString("no client or service 'nobody' at node city"));
        assertTrue(deadLetterIds().contains(lostId), "still a dead letter");

        // expired when it arrived: replayed with a new ttl, routed now (to the province) and delivered
        Packet stale = new Packet("stale-1", "clinic@city", "doctor@province", "replay.note",
                RelayTreeTest.obj("run", "stale").put("n", 0), Instant.now().minusSeconds(120), 60, null);
        SendResult dead = clinic.client.send(stale).get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.DEAD, dead.status());
        long staleId = deadLetterId(stale.packetId());
        String path = "/api/v1/relay/dead-letters/" + staleId + "/replay";

        // bad ttls: 400 naming the field, nothing changed
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": 0}").post(path),
                "ttl", "positive-integer");
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": \"PT1H\"}").post(path),
                "ttl", "positive-integer");
        badTtl(given().header("X-Api-Key", OPS).queryParam("ttl", "soon").post(path), "ttl", "positive-integer");
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": 172800}").post(path), "ttl",
                "max");
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("{\"tll\": 60}").post(path), "tll",
                "unknown");
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": 60}").queryParam("ttl", "60")
                .post(path), "ttl", "single");
        badTtl(given().header("X-Api-Key", OPS).contentType("application/json").body("[60]").post(path), "body", "json");
        assertTrue(deadLetterIds().contains(staleId), "still a dead letter after the refusals");
        assertEquals(0, count("SELECT COUNT(*) FROM relay_replay WHERE packet_row = " + staleId));

        // who may: nobody without a key, no source system
        given().post(path).then().statusCode(401).body("status", equalTo(401));
        given().header("X-Api-Key", "wrong").post(path).then().statusCode(401);
        given().header("X-Api-Key", "test-his-key").post(path).then().statusCode(403);
        given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/999999999/replay").then().statusCode(404)
                .body("field", equalTo("id")).body("error", containsString("no dead letter 999999999"));
        given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/abc/replay").then().statusCode(400)
                .body("field", equalTo("id"));
        assertTrue(deadLetterIds().contains(staleId));

        int ttl = given().header("X-Api-Key", OPS).contentType("application/json").body("{\"ttl\": 600}").post(path).then()
                .statusCode(200).body("deadHop", equalTo(PacketStore.DEAD_HOP)).body("hop", equalTo("province"))
                .extract().path("ttl");
        assertTrue(ttl > 720 && ttl < 760, "its age (about 2 minutes, counted from createdAt) and 600 s: " + ttl);
        await().atMost(Duration.ofSeconds(20)).until(() -> doctor.run("stale").size() >= 1);
        Thread.sleep(500);
        assertEquals(1, doctor.run("stale").size());
    }

    /** Six operators replay the same dead letter at once: one answer 200, five 409; the doctor gets it once. */
    @Test
    void simultaneousReplaysOfOneDeadLetterQueueItOnce() throws Exception {
        Packet stale = new Packet("race-1", "clinic@city", "doctor@province", "replay.note",
                RelayTreeTest.obj("run", "race").put("n", 0), Instant.now().minusSeconds(120), 60, null);
        assertEquals(SendResult.Status.DEAD, clinic.client.send(stale).get(10, TimeUnit.SECONDS).status());
        long id = deadLetterId(stale.packetId());
        int n = 6;
        CyclicBarrier start = new CyclicBarrier(n);
        ExecutorService pool = Executors.newFixedThreadPool(n);
        List<Integer> statuses = new ArrayList<>();
        try {
            List<Future<Integer>> answers = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                answers.add(pool.submit(() -> {
                    start.await(10, TimeUnit.SECONDS);
                    return given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/" + id + "/replay").statusCode();
                }));
            }
            for (Future<Integer> f : answers) {
                statuses.add(f.get(30, TimeUnit.SECONDS));
            }
        } finally {
            pool.shutdownNow();
        }
        assertEquals(1, statuses.stream().filter(s -> s == 200).count(), statuses.toString());
        assertEquals(n - 1, statuses.stream().filter(s -> s == 409).count(), statuses.toString());
        assertEquals(1, count("SELECT COUNT(*) FROM relay_replay WHERE packet_row = " + id));
        await().atMost(Duration.ofSeconds(20)).until(() -> doctor.run("race").size() >= 1);
        Thread.sleep(500);
        assertEquals(1, doctor.run("race").size());
    }

    /** The bulk form replays what the list shows for a filter, up to a limit, and says what it skipped and why. */
    @Test
    void theDeadLettersOfATargetAreReplayedTogether() throws Exception {
        List<Packet> stale = new ArrayList<>();
        for (int i = 0; i < 3; i++) {
            stale.add(new Packet("bulk-" + i, "clinic@city", "doctor@province", "replay.bulk",
                    RelayTreeTest.obj("run", "bulk").put("n", i), Instant.now().minusSeconds(120), 60, null));
        }
        for (Packet p : stale) {
            assertEquals(SendResult.Status.DEAD, clinic.client.send(p).get(10, TimeUnit.SECONDS).status());
        }
        SendResult nowhere = clinic.client.send(RelayTreeTest.packet("clinic@city", "nobody-else@city", "replay.bulk", "bulk", 9))
                .get(10, TimeUnit.SECONDS);
        assertEquals(SendResult.Status.DEAD, nowhere.status());

        given().header("X-Api-Key", OPS).post("/api/v1/relay/dead-letters/replay").then().statusCode(400)
                .body("field", equalTo("all"));
        long second = deadLetterId("bulk-1");
        given().header("X-Api-Key", OPS).queryParam("to", "doctor@province").queryParam("limit", "2").queryParam("ttl", "600")
                .post("/api/v1/relay/dead-letters/replay").then().statusCode(200).body("replayed", equalTo(2))
                .body("skipped.size()", equalTo(0)).body("next", equalTo((int) second));
        given().header("X-Api-Key", OPS).queryParam("to", "doctor@province").queryParam("ttl", "600")
                .post("/api/v1/relay/dead-letters/replay").then().statusCode(200).body("replayed", equalTo(1));
        given().header("X-Api-Key", OPS).queryParam("to", "nobody-else@city").post("/api/v1/relay/dead-letters/replay").then()
                .statusCode(200).body("replayed", equalTo(0)).body("skipped[0].status", equalTo(422))
                .body("skipped[0].packetId", equalTo(nowhere.packetId()));
        await().atMost(Duration.ofSeconds(20)).until(() -> doctor.run("bulk").size() >= 3);
        Thread.sleep(500);
        assertEquals(List.of(0, 1, 2), doctor.run("bulk"));
    }

    // ---- helpers ----------------------------------------------------------------------------------------------------

    private static void badTtl(Response r, String field, String rule) {
        r.then().statusCode(400).body("status", equalTo(400)).body("field", equalTo(field)).body("rule", equalTo(rule));
    }

    private static long awaitDeadLetter(String packetId) {
        await().atMost(SWEEP.multipliedBy(2).plusSeconds(10)).until(() -> findDeadLetter(packetId) != null);
        return findDeadLetter(packetId);
    }

    private static long deadLetterId(String packetId) {
        Long id = findDeadLetter(packetId);
        if (id == null) {
            throw new AssertionError("packet " + packetId + " is not among the dead letters");
        }
        return id;
    }

    private static Long findDeadLetter(String packetId) {
        List<Map<String, Object>> items = given().header("X-Api-Key", OPS).queryParam("limit", "1000")
                .get("/api/v1/relay/dead-letters").then().statusCode(200).extract().jsonPath().getList("items");
        return items.stream().filter(i -> packetId.equals(i.get("packetId"))).map(i -> ((Number) i.get("id")).longValue())
                .findFirst().orElse(null);
    }

    private static List<Long> deadLetterIds() {
        List<Map<String, Object>> items = given().header("X-Api-Key", OPS).queryParam("limit", "1000")
                .get("/api/v1/relay/dead-letters").then().statusCode(200).extract().jsonPath().getList("items");
        return items.stream().map(i -> ((Number) i.get("id")).longValue()).toList();
    }

    private static boolean parentConnected() {
        return Boolean.TRUE.equals(given().header("X-Api-Key", OPS).get("/api/v1/relay/status").jsonPath()
                .get("parent.connected"));
    }

    /** Rows of the city (the hub's database) still waiting for their hop, for this packet. */
    private static long waitingAtCity(String packetId) throws SQLException {
        try (Connection c = PostgresResource.connect();
                PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM relay_waiting WHERE packet_id = ?")) {
            q.setString(1, packetId);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    private static long count(String sql) throws SQLException {
        try (Connection c = PostgresResource.connect(); PreparedStatement q = c.prepareStatement(sql);
                ResultSet rs = q.executeQuery()) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static LinkProxy proxy(int port) {
        try {
            return new LinkProxy(port);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}
