package org.hospitalhub.federation.network;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.http.HttpResponse;
import java.security.KeyPair;
import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.eclipse.microprofile.config.ConfigProvider;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.TestProfile;
import io.restassured.http.ContentType;

/**
 * The network side of research federation on one hub (node {@code hub-test}) against two peers played by the test
 * over real HTTP on 127.0.0.1 (see {@link TestPeer}): signature checks (forged, unsigned, tampered, expired, replayed),
 * invitations (accept, decline, auto-accept), the inbox (order, duplicates, dependencies, only accepted projects),
 * retries after cleaning, and the initiator side (outbox in order, held while a peer is offline, resend, status and
 * results per node, CSV, pushed status events).
 */
@QuarkusTest
@TestProfile(FederationTestProfile.class)
@QuarkusTestResource(PostgresResource.class)
class FederationNetworkTest {

    private static final String OPS = "test-ops-key";

    @jakarta.inject.Inject
    org.apache.camel.CamelContext camel;
    @jakarta.inject.Inject
    Projects projects;
    private static final String NODE = FederationTestProfile.NODE;
    private static TestPeer a;
    private static TestPeer b;
    private static int port;

    @BeforeAll
    static void peers() throws Exception {
        int base = Integer.parseInt(System.getenv().getOrDefault("HUB_TEST_PORT", "8081"));
        a = new TestPeer("peer-a", base + 1);
        b = new TestPeer("peer-b", base + 2);
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement()) {
            s.execute(TableStepExecutor.DDL);
            s.execute("INSERT INTO fed_test_measure (person_id, value) SELECT g, g FROM generate_series(1, 20) g ON CONFLICT DO NOTHING");
        }
    }

    @AfterAll
    static void stopPeers() {
        a.close();
        b.close();
    }

    @BeforeEach
    void register() {
        port = ConfigProvider.getConfig().getValue("quarkus.http.test-port", Integer.class);
        String hubKey = given().header("X-Api-Key", OPS).get("/api/v1/federation/node").then().statusCode(200)
                .body("nodeId", equalTo(NODE)).extract().path("publicKey");
        a.hubKey = NodeKeys.publicKey(hubKey);
        TestPeer.KNOWN.put(NODE, a.hubKey);
        b.hubKey = NodeKeys.publicKey(hubKey);
        putNode(a, false);
        putNode(b, true);
        a.offline = false;
        b.offline = false;
    }

    private static void putNode(TestPeer p, boolean autoAccept) {
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"baseUrl\":\"" + p.baseUrl() + "\",\"publicKey\":\"" + p.publicKey() + "\",\"autoAccept\":" + autoAccept + "}")
                .put("/api/v1/federation/nodes/" + p.nodeId).then().statusCode(200).body("autoAccept", equalTo(autoAccept));
    }

    // ---- helpers -------------------------------------------------------------------------------------------------

    private static ObjectNode invitation(String title) {
        ObjectNode p = TestPeer.JSON.createObjectNode();
        p.put("title", title);
        p.put("sharingLevel", "aggregate-only");
        p.putArray("invited").add(NODE).add("peer-b");
        return p;
    }

    private static ObjectNode step(String stepId, int seq, String kind, String definition, String dependsOn) throws Exception {
        ObjectNode p = TestPeer.JSON.createObjectNode();
        JsonNode d = TestPeer.JSON.readTree(definition);
        JsonNode deps = TestPeer.JSON.readTree(dependsOn);
        p.put("stepId", stepId);
        p.put("seq", seq);
        p.put("kind", kind);
        p.set("definition", d);
        p.set("dependsOn", deps);
        p.put("checksum", TestPeer.checksum(d, deps, kind));
        return p;
    }

    private static void ok(HttpResponse<String> r) {
        assertEquals(200, r.statusCode(), r.body());
    }

    /** peer-a invites hub-test to a new project; returns its id. */
    private static String invitedByA(String title) throws Exception {
        String project = UUID.randomUUID().toString();
        ok(a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, project, invitation(title))));
        return project;
    }

    private static void accept(String project) {
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/" + project + "/accept").then().statusCode(200)
                .body("localStatus", equalTo("ACCEPTED"));
    }

    private static String status(String step) {
        return given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", projectOf(step), step)
                .then().statusCode(200).extract().path("nodes.find { it.nodeId == '" + NODE + "' }.status");
    }

    private static String projectOf(String step) {
        try {
            return query("SELECT project_id FROM fed_step WHERE step_id = '" + step + "'");
        } catch (SQLException e) {
            throw new IllegalStateException(e);
        }
    }

    private static String query(String sql) throws SQLException {
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    private static long count(String sql) throws SQLException {
        return Long.parseLong(query(sql));
    }

    /**
     * The offline peer comes back and the held messages are resent on demand: it gets the project's invitation and its
     * two steps, in order; returns the transmissions that carried them (the bodies, as received).
     */
    private static List<String> backOnline(TestPeer p, String project) {
        int before = p.transmissions.size();
        p.offline = false;
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"destination\":\"" + p.nodeId + "\"}")
                .post("/api/v1/federation/outbox/resend").then().statusCode(200);
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(p, project).size() == 3);
        assertEquals(List.of("invitation", "step", "step"), forProject(p, project).stream().map(m -> m.path("type").asText()).toList());
        return p.transmissions.subList(before, p.transmissions.size()).stream().filter(t -> t.contains(project)).toList();
    }

    /** Statuses peer-a received for a step, in order. */
    private static List<String> reportedToA(String step) {
        List<String> out = new ArrayList<>();
        for (JsonNode m : a.received(Messages.STEP_STATUS)) {
            if (m.path("payload").path("stepId").asText().equals(step)) {
                out.add(m.path("payload").path("status").asText());
            }
        }
        return out;
    }

    // ---- signatures ------------------------------------------------------------------------------------------------

    @Test
    void unsignedForgedTamperedExpiredAndReplayedMessagesAreRejectedAndLogged() throws Exception {
        String project = UUID.randomUUID().toString();
        String body = a.seal(a.keys, Messages.INVITATION, NODE, project, invitation("signature checks"));
        long rejectionsBefore = count("SELECT COUNT(*) FROM fed_rejection");

        // unsigned
        HttpResponse<String> r = TestPeer.transmit(port, null, null, null, 0, body, body);
        assertEquals(401, r.statusCode(), r.body());
        assertTrue(r.body().contains("unsigned"), r.body());
        // signed with a key that is not peer-a's (forged)
        KeyPair forger = NodeKeys.generate();
        r = TestPeer.transmit(port, "peer-a", forger, UUID.randomUUID().toString(), System.currentTimeMillis(), body, body);
        assertEquals(401, r.statusCode(), r.body());
        assertTrue(r.body().contains("signature does not verify"), r.body());
        // body changed after signing
        String tampered = body.replace("signature checks", "signature checkz");
        r = TestPeer.transmit(port, "peer-a", a.keys, UUID.randomUUID().toString(), System.currentTimeMillis(), tampered, body);
        assertEquals(401, r.statusCode(), r.body());
        // an unknown node
        r = TestPeer.transmit(port, "peer-x", forger, UUID.randomUUID().toString(), System.currentTimeMillis(), body, body);
        assertEquals(401, r.statusCode(), r.body());
        assertTrue(r.body().contains("unknown node peer-x"), r.body());
        // expired: sent two minutes ago (window 1 minute in this test)
        r = TestPeer.transmit(port, "peer-a", a.keys, UUID.randomUUID().toString(), System.currentTimeMillis() - 120_000, body, body);
        assertEquals(401, r.statusCode(), r.body());
        assertTrue(r.body().contains("expired"), r.body());
        // a valid transmission by peer-a of a message that claims peer-b as origin but is signed by peer-a
        ObjectNode p = invitation("forged origin");
        String forgedOrigin = a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(), p)
                .replace("\\\"origin\\\":\\\"peer-a\\\"", "\\\"origin\\\":\\\"peer-b\\\"");
        assertTrue(forgedOrigin.contains("peer-b"));
        r = a.send(port, forgedOrigin);
        assertEquals(401, r.statusCode(), r.body());
        assertTrue(r.body().contains("origin signature"), r.body());
        assertEquals(0, count("SELECT COUNT(*) FROM fed_project WHERE project_id = '" + project + "'"), "nothing stored");

        // the genuine transmission is accepted; the same transmission again (same nonce) is a replay
        String nonce = UUID.randomUUID().toString();
        long now = System.currentTimeMillis();
        r = TestPeer.transmit(port, "peer-a", a.keys, nonce, now, body, body);
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.body().contains("\"duplicate\":false"), r.body());
        r = TestPeer.transmit(port, "peer-a", a.keys, nonce, now, body, body);
        assertEquals(409, r.statusCode(), r.body());
        assertTrue(r.body().contains("replayed"), r.body());
        // the same message resent in a new transmission (a lost acknowledgement): acknowledged, stored once
        r = a.send(port, body);
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.body().contains("\"duplicate\":true"), r.body());
        assertEquals(1, count("SELECT COUNT(*) FROM fed_project WHERE project_id = '" + project + "'"));

        assertEquals(rejectionsBefore + 7, count("SELECT COUNT(*) FROM fed_rejection"));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/rejections?limit=7").then().statusCode(200)
                .body("size()", equalTo(7)).body("[0].status", equalTo(409)).body("[0].reason", containsString("replayed"));
        String metrics = given().get("/q/metrics").then().statusCode(200).extract().asString();
        assertTrue(metrics.contains("hub_federation_messages_rejected_total{status=\"409\"}"), "rejections counted");
        // the operator API needs the operator role
        given().header("X-Api-Key", "test-his-key").get("/api/v1/federation/rejections").then().statusCode(403);
    }

    // ---- invitations -------------------------------------------------------------------------------------------------

    @Test
    void aNodeExecutesOnlyProjectsItAccepted() throws Exception {
        String accepted = invitedByA("accepted later");
        String declined = invitedByA("declined");
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/" + accepted).then().statusCode(200)
                .body("project.localStatus", equalTo("INVITED")).body("project.initiator", equalTo("peer-a"));
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, accepted, step(s1, 1, "cohort", "{\"minValue\":15}", "{}"))));
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, declined, step(s2, 1, "cohort", "{\"minValue\":15}", "{}"))));
        // held, not run, while the invitation is open
        await().during(Duration.ofMillis(600)).atMost(Duration.ofSeconds(2))
                .until(() -> count("SELECT COUNT(*) FROM fed_test_run WHERE step_id IN ('" + s1 + "','" + s2 + "')") == 0);

        given().header("X-Api-Key", "test-his-key").post("/api/v1/federation/projects/" + accepted + "/accept").then().statusCode(403);
        accept(accepted);
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/" + declined + "/decline").then().statusCode(200)
                .body("localStatus", equalTo("DECLINED"));
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/" + declined + "/accept").then().statusCode(409)
                .body("error", containsString("declined"));

        await().atMost(Duration.ofSeconds(10)).until(() -> status(s1).equals("SUCCEEDED"));
        await().atMost(Duration.ofSeconds(10)).until(() -> reportedToA(s1).contains("SUCCEEDED"));
        assertEquals(List.of("QUEUED", "RUNNING", "SUCCEEDED"), reportedToA(s1), "every change reported, in order");
        JsonNode done = a.received(Messages.STEP_STATUS).stream()
                .filter(m -> m.path("payload").path("status").asText().equals("SUCCEEDED")
                        && m.path("payload").path("stepId").asText().equals(s1)).findFirst().orElseThrow();
        assertEquals(6, done.path("payload").path("result").path("persons").asInt(), "persons 15..20");
        assertTrue(done.path("payload").has("durationMs"));
        List<Boolean> answers = new ArrayList<>();
        for (JsonNode m : a.received(Messages.INVITATION_RESPONSE)) {
            if (m.path("projectId").asText().equals(accepted) || m.path("projectId").asText().equals(declined)) {
                answers.add(m.path("payload").path("accepted").asBoolean());
            }
        }
        assertEquals(List.of(true, false), answers, "the initiator is told, signed by this node");
        await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(2))
                .until(() -> count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + s2 + "'") == 0);

        // auto-accept policy for peer-b: accepted on arrival, the answer sent at once
        String auto = UUID.randomUUID().toString();
        ok(b.send(port, b.seal(b.keys, Messages.INVITATION, NODE, auto, invitation("auto"))));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/" + auto).then().statusCode(200)
                .body("project.localStatus", equalTo("ACCEPTED")).body("project.decidedBy", equalTo("auto-accept"));
        await().atMost(Duration.ofSeconds(10)).until(() -> b.received(Messages.INVITATION_RESPONSE).stream()
                .anyMatch(m -> m.path("projectId").asText().equals(auto) && m.path("payload").path("accepted").asBoolean()));
    }

    @Test
    void aPeerChangedThroughThisReplicaAppliesAtOnceAndThroughAnotherWithinTheCacheTime() throws Exception {
        ok(a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(), invitation("peer as read"))));
        // another replica gives peer-a another key in the shared database: refused within hub.federation.peers.cache-ttl (2 s)
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement()) {
            s.executeUpdate("UPDATE fed_node SET public_key = '" + b.publicKey() + "' WHERE node_id = 'peer-a'");
        }
        long changed = System.nanoTime();
        await().atMost(Duration.ofSeconds(5)).pollInterval(Duration.ofMillis(200)).until(() -> a.send(port,
                a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(), invitation("old key"))).statusCode() == 401);
        assertTrue(System.nanoTime() - changed < Duration.ofSeconds(3).toNanos(), "refused within the cache time");
        // through this replica's API: at once, both ways
        putNode(a, false);
        ok(a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(), invitation("key restored"))));
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"baseUrl\":\"" + a.baseUrl() + "\",\"publicKey\":\"" + b.publicKey() + "\",\"autoAccept\":false}")
                .put("/api/v1/federation/nodes/peer-a").then().statusCode(200);
        assertEquals(401, a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(),
                invitation("key replaced"))).statusCode(), "the replaced key is refused at once");
        given().header("X-Api-Key", OPS).delete("/api/v1/federation/nodes/peer-a").then().statusCode(204);
        assertEquals(401, a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(),
                invitation("removed"))).statusCode(), "a removed node is refused at once");
        putNode(a, false);
        ok(a.send(port, a.seal(a.keys, Messages.INVITATION, NODE, UUID.randomUUID().toString(), invitation("registered again"))));
    }

    // ---- inbox: order, duplicates, dependencies -------------------------------------------------------------------

    @Test
    void stepsRunInTheInitiatorsOrderAfterTheirDependenciesAndDuplicatesAreIgnored() throws Exception {
        String project = invitedByA("order");
        accept(project);
        // steps are added on the initiator only
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"cohort\",\"definition\":{}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(403).body("field", equalTo("projectId"));
        String cohort = UUID.randomUUID().toString();
        String analysis = UUID.randomUUID().toString();
        // step 2 (depends on step 1) arrives first: it waits
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project,
                step(analysis, 2, "analysis", "{}", "{\"cohort\":\"" + cohort + "\"}"))));
        await().during(Duration.ofMillis(600)).atMost(Duration.ofSeconds(2)).until(() -> status(analysis).equals("QUEUED"));
        assertEquals(0, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + analysis + "'"));

        String cohortMessage = a.seal(a.keys, Messages.STEP, NODE, project, step(cohort, 1, "cohort", "{\"minValue\":11}", "{}"));
        ok(a.send(port, cohortMessage));
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(status(analysis)));
        List<String> order = new ArrayList<>();
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement(); ResultSet rs = s.executeQuery(
                "SELECT step_id FROM fed_test_run WHERE step_id IN ('" + cohort + "','" + analysis + "') ORDER BY id")) {
            while (rs.next()) {
                order.add(rs.getString(1));
            }
        }
        assertEquals(List.of(cohort, analysis), order, "cohort first, each once");
        await().atMost(Duration.ofSeconds(10)).until(() -> reportedToA(analysis).contains("SUCCEEDED"));
        JsonNode result = a.received(Messages.STEP_STATUS).stream()
                .filter(m -> m.path("payload").path("stepId").asText().equals(analysis) && m.path("payload").has("result"))
                .findFirst().orElseThrow().path("payload").path("result");
        assertEquals(10, result.path("count").asInt(), "persons 11..20");
        assertEquals(155.0, result.path("sum").asDouble(), 1e-9, "11 + ... + 20");

        // the same step again: as the same message (new transmission) and as a new message with the same content
        HttpResponse<String> r = a.send(port, cohortMessage);
        assertEquals(200, r.statusCode());
        assertTrue(r.body().contains("\"duplicate\":true"));
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(cohort, 1, "cohort", "{\"minValue\":11}", "{}"))));
        // a message id received before, now with other content (alone, and first of a transmission of two): refused,
        // nothing of it applied
        var json = new com.fasterxml.jackson.databind.ObjectMapper();
        String reused = json.readTree(json.readTree(cohortMessage).path("envelope").asText()).path("id").asText();
        ObjectNode otherStep = step(UUID.randomUUID().toString(), 3, "cohort", "{\"minValue\":12}", "{}");
        r = a.send(port, a.seal(a.keys, reused, Messages.STEP, NODE, project, otherStep));
        assertEquals(409, r.statusCode(), r.body());
        assertTrue(r.body().contains("envelope.id"), r.body());
        r = a.send(port, "[" + a.seal(a.keys, reused, Messages.STEP, NODE, project, otherStep) + ","
                + a.seal(a.keys, Messages.STEP, NODE, project, otherStep) + "]");
        assertEquals(200, r.statusCode(), r.body());
        assertTrue(r.body().contains("\"status\":409") && r.body().contains("envelope.id"), r.body());
        assertEquals(0, count("SELECT COUNT(*) FROM fed_step WHERE step_id = '" + otherStep.path("stepId").asText() + "'"));
        // a different definition under the same step id is a conflict
        r = a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(cohort, 1, "cohort", "{\"minValue\":3}", "{}")));
        assertEquals(409, r.statusCode(), r.body());
        assertTrue(r.body().contains("payload.stepId"), r.body());
        // a checksum that does not match its definition
        ObjectNode bad = step(UUID.randomUUID().toString(), 3, "cohort", "{\"minValue\":1}", "{}");
        bad.put("checksum", "0".repeat(64));
        r = a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, bad));
        assertEquals(400, r.statusCode(), r.body());
        assertTrue(r.body().contains("payload.checksum"), r.body());
        // only the initiator sends a project's steps
        r = b.send(port, b.seal(b.keys, Messages.STEP, NODE, project, step(UUID.randomUUID().toString(), 3, "cohort", "{}", "{}")));
        assertEquals(403, r.statusCode(), r.body());
        await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(2))
                .until(() -> count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + cohort + "'") == 1);
    }

    @Test
    void withBothPollsStoppedAStepStillRunsAtOnceAndItsStatusIsSentBackAtOnce() throws Exception {
        // the sender and the runner are woken by the commit of what they act on; their polls are only a safety net
        var routes = camel.getRouteController();
        routes.stopRoute("federation-outbox-sender");
        routes.stopRoute("federation-step-runner");
        try {
            String project = invitedByA("woken");
            accept(project);
            await().atMost(Duration.ofSeconds(5)).until(() -> a.received(Messages.INVITATION_RESPONSE).stream()
                    .anyMatch(m -> m.path("projectId").asText().equals(project) && m.path("payload").path("accepted").asBoolean()));
            String cohort = UUID.randomUUID().toString();
            ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(cohort, 1, "cohort", "{\"minValue\":15}", "{}"))));
            await().atMost(Duration.ofSeconds(5)).until(() -> reportedToA(cohort).contains("SUCCEEDED"));
            assertEquals(1, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + cohort + "'"));
            assertEquals(List.of("QUEUED", "RUNNING", "SUCCEEDED"), reportedToA(cohort), "every state, in order");
        } finally {
            routes.startRoute("federation-outbox-sender");
            routes.startRoute("federation-step-runner");
        }
    }

    @Test
    void withTheRunnersPollStoppedStepsArrivingWhileOneRunsFollowItAtOnceInOrder() throws Exception {
        // a step received while an earlier one of the project runs is claimed when that one succeeds (in the same
        // transaction as its outcome), not left for the poll; a wake-up that found the project busy is not lost
        var routes = camel.getRouteController();
        routes.stopRoute("federation-step-runner");
        try {
            String project = invitedByA("chain");
            accept(project);
            String cohort = UUID.randomUUID().toString();
            String second = UUID.randomUUID().toString();
            String third = UUID.randomUUID().toString();
            ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project,
                    step(cohort, 1, "cohort", "{\"minValue\":11,\"sleepMs\":1500}", "{}"))));
            await().atMost(Duration.ofSeconds(5)).until(() -> "RUNNING".equals(status(cohort)));
            ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project,
                    step(second, 2, "analysis", "{\"sleepMs\":1000}", "{\"cohort\":\"" + cohort + "\"}"))));
            await().atMost(Duration.ofSeconds(5)).until(() -> "RUNNING".equals(status(second)));
            ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project,
                    step(third, 3, "analysis", "{}", "{\"cohort\":\"" + cohort + "\"}"))));
            await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(status(third)));
            List<String> order = new ArrayList<>();
            try (Connection c = PostgresResource.connect(); Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                    "SELECT step_id FROM fed_test_run WHERE step_id IN ('" + cohort + "','" + second + "','" + third + "') ORDER BY id")) {
                while (rs.next()) {
                    order.add(rs.getString(1));
                }
            }
            assertEquals(List.of(cohort, second, third), order, "in the initiator's order, each once");
            for (String step : List.of(cohort, second, third)) {
                await().atMost(Duration.ofSeconds(5)).until(() -> reportedToA(step).contains("SUCCEEDED"));
                assertEquals(List.of("QUEUED", "RUNNING", "SUCCEEDED"), reportedToA(step), "every state of " + step + ", in order");
            }
        } finally {
            routes.startRoute("federation-step-runner");
        }
    }

    @Test
    void severalMessagesTravelInOneTransmissionBothWaysAndOneAtATimeToANodeThatRefusesThat() throws Exception {
        // receiving: peer-a sends an invitation and three steps at once, the third signed with another node's key
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        String s3 = UUID.randomUUID().toString();
        String invitation = a.seal(a.keys, Messages.INVITATION, NODE, project, invitation("batched"));
        String step1 = a.seal(a.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":11}", "{}"));
        String step2 = a.seal(a.keys, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":12}", "{}"));
        String forged = a.seal(b.keys, Messages.STEP, NODE, project, step(s3, 3, "cohort", "{\"minValue\":13}", "{}"));
        String step4 = a.seal(a.keys, Messages.STEP, NODE, project, step(UUID.randomUUID().toString(), 4, "cohort", "{}", "{}"));
        HttpResponse<String> r = a.send(port, "[" + invitation + "," + step1 + "," + step2 + "," + forged + "," + step4 + "]");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode results = TestPeer.JSON.readTree(r.body()).path("results");
        assertEquals(4, results.size(), "handled in order up to the first one refused: " + r.body());
        assertEquals(TestPeer.JSON.readTree(TestPeer.JSON.readTree(invitation).path("envelope").asText()).path("id").asText(),
                results.get(0).path("ack").asText());
        for (int i = 0; i < 3; i++) {
            assertEquals(200, results.get(i).path("status").asInt(), r.body());
        }
        assertEquals(401, results.get(3).path("status").asInt(), r.body());
        assertEquals("signature", results.get(3).path("field").asText(), r.body());
        assertTrue(results.get(3).path("error").asText().contains("origin signature"), r.body());
        assertEquals(3, count("SELECT COUNT(*) FROM fed_inbox WHERE project_id = '" + project + "'"), "not the forged one, nor the one after it");
        // an empty batch is refused as a transmission; what is not a message is refused as a message; nothing more is stored
        assertEquals(400, a.send(port, "[]").statusCode());
        HttpResponse<String> notMessages = a.send(port, "[1, 2]");
        assertEquals(200, notMessages.statusCode(), notMessages.body());
        assertEquals(400, TestPeer.JSON.readTree(notMessages.body()).path("results").get(0).path("status").asInt(), notMessages.body());
        assertEquals(3, count("SELECT COUNT(*) FROM fed_inbox WHERE project_id = '" + project + "'"));

        // sending: peer-b answers a batch with 400, as a node of an older version would: its messages go one at a time
        b.refuseBatches = true;
        b.offline = true;
        try {
            String mine = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                    .body("{\"title\":\"to an older node\",\"invitedNodes\":[\"peer-b\"],\"sharingLevel\":\"aggregate-only\"}")
                    .post("/api/v1/federation/projects").then().statusCode(201).extract().path("projectId");
            for (int i = 0; i < 2; i++) {
                given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"cohort\",\"definition\":{\"minValue\":" + i + "}}")
                        .post("/api/v1/federation/projects/" + mine + "/steps").then().statusCode(201);
            }
            await().atMost(Duration.ofSeconds(10)).until(() -> count("SELECT COUNT(*) FROM fed_outbox WHERE destination = 'peer-b' "
                    + "AND project_id = '" + mine + "' AND status = 'PENDING' AND attempts > 0") >= 1);
            List<String> sent = backOnline(b, mine);
            assertTrue(sent.get(0).startsWith("["), "a batch first: " + sent);
            assertEquals(3, sent.stream().filter(t -> t.startsWith("{")).count(), "then one at a time: " + sent);
            await().atMost(Duration.ofSeconds(5)).until(() -> count("SELECT COUNT(*) FROM fed_outbox WHERE destination = 'peer-b' "
                    + "AND project_id = '" + mine + "' AND status = 'ACKED'") == 3); // none parked
        } finally {
            b.refuseBatches = false;
            b.offline = false;
        }
    }

    @Test
    void aMessageRefusedForWhatItSaysMidTransmissionKeepsTheOnesBeforeItAndNothingAfterIt() throws Exception {
        // the messages of a transmission are stored in one transaction: the third (a step number the project already
        // has) is refused while being applied, so the transaction is done again with the first two only
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String clash = UUID.randomUUID().toString();
        String invitation = a.seal(a.keys, Messages.INVITATION, NODE, project, invitation("refused in the middle"));
        String step1 = a.seal(a.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":21}", "{}"));
        String sameSeq = a.seal(a.keys, Messages.STEP, NODE, project, step(clash, 1, "cohort", "{\"minValue\":22}", "{}"));
        String step2 = a.seal(a.keys, Messages.STEP, NODE, project, step(UUID.randomUUID().toString(), 2, "cohort", "{}", "{}"));
        String forged = a.seal(b.keys, Messages.STEP, NODE, project, step(UUID.randomUUID().toString(), 3, "cohort", "{}", "{}"));
        long rejectionsBefore = count("SELECT COUNT(*) FROM fed_rejection");
        HttpResponse<String> r = a.send(port, "[" + invitation + "," + step1 + "," + sameSeq + "," + step2 + "," + forged + "]");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode results = TestPeer.JSON.readTree(r.body()).path("results");
        assertEquals(3, results.size(), r.body());
        assertEquals(200, results.get(0).path("status").asInt(), r.body());
        assertEquals(200, results.get(1).path("status").asInt(), r.body());
        assertEquals(409, results.get(2).path("status").asInt(), r.body());
        assertEquals("payload.seq", results.get(2).path("field").asText(), r.body());
        assertTrue(results.get(2).path("error").asText().contains("step number 1 of the project is step " + s1), r.body());
        assertEquals(2, count("SELECT COUNT(*) FROM fed_inbox WHERE project_id = '" + project + "'"), "the invitation and step 1");
        assertEquals(1, count("SELECT COUNT(*) FROM fed_project WHERE project_id = '" + project + "'"));
        assertEquals(s1, query("SELECT step_id FROM fed_step WHERE project_id = '" + project + "'"), "step 1 only");
        assertEquals(1, count("SELECT COUNT(*) FROM fed_rejection") - rejectionsBefore,
                "the refused step only: the forged message after it was never reached");
        assertTrue(query("SELECT reason FROM fed_rejection ORDER BY id DESC LIMIT 1").contains("step number 1 of the project is step " + s1), "its reason");
        // sent again as the sender would (the refused one is parked there): the first two are duplicates, the next stored
        HttpResponse<String> again = a.send(port, "[" + invitation + "," + step1 + "," + step2 + "]");
        JsonNode second = TestPeer.JSON.readTree(again.body()).path("results");
        assertEquals(3, second.size(), again.body());
        assertTrue(second.get(0).path("duplicate").asBoolean() && second.get(1).path("duplicate").asBoolean(), again.body());
        assertFalse(second.get(2).path("duplicate").asBoolean(), again.body());
        assertEquals(2, count("SELECT COUNT(*) FROM fed_step WHERE project_id = '" + project + "'"));
    }

    @Test
    void aStepQueuedInAnAcceptedProjectIsClaimedByTheTransactionThatReceivedItAndLetGoWhenThatRollsBack() throws Exception {
        // peer-b's projects are accepted on arrival. Its invitation, step 1 and a step under step 1's number come in one
        // transmission: the first attempt claims step 1 in the receiving transaction, then the third message undoes
        // that transaction; done again with the first two, step 1 is claimed again, and runs once
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String invitation = b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("claimed on receipt"));
        String step1 = b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":41}", "{}"));
        String clash = b.seal(b.keys, Messages.STEP, NODE, project,
                step(UUID.randomUUID().toString(), 1, "cohort", "{\"minValue\":42}", "{}"));
        HttpResponse<String> r = b.send(port, "[" + invitation + "," + step1 + "," + clash + "]");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode results = TestPeer.JSON.readTree(r.body()).path("results");
        assertEquals(List.of(200, 200, 409), List.of(results.get(0).path("status").asInt(), results.get(1).path("status").asInt(),
                results.get(2).path("status").asInt()), r.body());
        String execution = "FROM fed_execution WHERE step_id = '" + s1 + "' AND node_id = '" + NODE + "'";
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + execution)));
        assertEquals(1, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + s1 + "'"), "run once");
        assertEquals("1", query("SELECT attempts " + execution), "one attempt: the undone claim did not count");
        // the acceptance, the queued report and the running one were written by the receiving transaction, in one batch
        List<String> written = new ArrayList<>();
        try (Connection c = PostgresResource.connect(); Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                "SELECT message_type, created_at, message FROM fed_outbox WHERE destination = 'peer-b' AND project_id = '"
                        + project + "' ORDER BY id")) {
            while (rs.next()) {
                String m = rs.getString(3);
                written.add(rs.getString(1) + (m.contains("QUEUED") ? " QUEUED" : m.contains("RUNNING") ? " RUNNING"
                        : m.contains("SUCCEEDED") ? " SUCCEEDED" : "") + " @" + rs.getString(2));
            }
        }
        assertEquals(4, written.size(), written.toString());
        String at = written.get(0).substring(written.get(0).indexOf('@'));
        assertEquals(List.of("invitation-response " + at, "step-status QUEUED " + at, "step-status RUNNING " + at),
                written.subList(0, 3), "one transaction, then the success: " + written);
        assertTrue(written.get(3).startsWith("step-status SUCCEEDED"), written.toString());
    }

    @Test
    void aStepReceivedBeforeItsInvitationIsReportedAndRunOnceTheInvitationIsAcceptedOnArrival() throws Exception {
        // peer-b's projects are accepted on arrival; its step comes first (as a relay may deliver it), then the invitation
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        ok(b.send(port, b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":61}", "{}"))));
        String execution = "FROM fed_execution WHERE step_id = '" + s1 + "' AND node_id = '" + NODE + "'";
        assertEquals("QUEUED", query("SELECT status " + execution), "stored, waiting for its project");
        await().during(Duration.ofMillis(300)).atMost(Duration.ofSeconds(2))
                .until(() -> count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + s1 + "'") == 0);
        ok(b.send(port, b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("step first"))));
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + execution)));
        assertEquals(1, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + s1 + "'"));
        await().atMost(Duration.ofSeconds(10)).until(() -> b.received(Messages.STEP_STATUS).stream()
                .filter(m -> m.path("payload").path("stepId").asText().equals(s1)).map(m -> m.path("payload").path("status").asText())
                .toList().equals(List.of("QUEUED", "RUNNING", "SUCCEEDED")));
    }

    @Test
    void aStepsSuccessAndTheNextStepsClaimAreOneWriteAndEachIsReportedInOrder() throws Exception {
        // peer-b's projects are accepted on arrival: its invitation and two steps, the second depending on the first
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        String wires = "[" + b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("chained")) + ","
                + b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":71,\"sleepMs\":200}", "{}")) + ","
                + b.seal(b.keys, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":72}", "{\"cohort\":\"" + s1 + "\"}"))
                + "]";
        ok(b.send(port, wires));
        String mine = "FROM fed_execution WHERE node_id = '" + NODE + "' AND step_id = ";
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + mine + "'" + s2 + "'")));
        assertEquals("SUCCEEDED", query("SELECT status " + mine + "'" + s1 + "'"));
        for (String st : List.of(s1, s2)) {
            assertEquals("3 1", query("SELECT version || ' ' || attempts " + mine + "'" + st + "'"), "queued, running, succeeded; one attempt");
        }
        // the second was claimed by the statement that recorded the first's success: the same instant
        assertEquals(query("SELECT finished_at " + mine + "'" + s1 + "'"), query("SELECT started_at " + mine + "'" + s2 + "'"));
        assertTrue(count("SELECT duration_ms " + mine + "'" + s1 + "'") >= 200, "the first step's own work");
        assertReportedInOrderAndRunOnce(s1, s2);
    }

    /** Each step reported to peer-b as queued, running and succeeded, in that order, and run once here. */
    private static void assertReportedInOrderAndRunOnce(String... steps) throws SQLException {
        String last = steps[steps.length - 1];
        await().atMost(Duration.ofSeconds(10)).until(() -> b.received(Messages.STEP_STATUS).stream()
                .filter(m -> m.path("payload").path("stepId").asText().equals(last)).count() == 3);
        for (String st : steps) {
            assertEquals(List.of("QUEUED", "RUNNING", "SUCCEEDED"), b.received(Messages.STEP_STATUS).stream()
                    .filter(m -> m.path("payload").path("stepId").asText().equals(st)).map(m -> m.path("payload").path("status").asText())
                    .toList(), "every state of " + st + ", in order");
        }
        assertEquals(steps.length, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id IN ('" + String.join("','", steps) + "')"),
                "each once");
    }

    @Test
    void aStepReceivedWhileThePreviousOneRunsIsClaimedByTheStatementThatRecordsItsSuccess() throws Exception {
        // a study posted step by step: the second step arrives in a transmission of its own while the first runs; the
        // runner is handed it and claims it with the first's success (one write), as for steps received together
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        ok(b.send(port, "[" + b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("step by step")) + ","
                + b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":73,\"sleepMs\":1500}", "{}"))
                + "]"));
        String mine = "FROM fed_execution WHERE node_id = '" + NODE + "' AND step_id = ";
        await().atMost(Duration.ofSeconds(10)).until(() -> "RUNNING".equals(query("SELECT status " + mine + "'" + s1 + "'")));
        ok(b.send(port, b.seal(b.keys, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":74}",
                "{\"cohort\":\"" + s1 + "\"}"))));
        assertEquals("RUNNING", query("SELECT status " + mine + "'" + s1 + "'"), "the second arrived while the first ran");
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + mine + "'" + s2 + "'")));
        assertEquals(query("SELECT finished_at " + mine + "'" + s1 + "'"), query("SELECT started_at " + mine + "'" + s2 + "'"),
                "claimed by the statement that recorded the first's success");
        assertReportedInOrderAndRunOnce(s1, s2);
        for (String st : List.of(s1, s2)) {
            assertEquals("3 1", query("SELECT version || ' ' || attempts " + mine + "'" + st + "'"), "one attempt");
        }
    }

    @Test
    void aStepReceivedWhileAnEarlierOneIsMissingWaitsAndRunsOnceTheGapIsFilled() throws Exception {
        // step 3 arrives while step 1 runs, before step 2: not taken in out of order; once step 2 arrives all run in order
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        String s3 = UUID.randomUUID().toString();
        ok(b.send(port, "[" + b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("a gap")) + ","
                + b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":75,\"sleepMs\":800}", "{}")) + "]"));
        String mine = "FROM fed_execution WHERE node_id = '" + NODE + "' AND step_id = ";
        await().atMost(Duration.ofSeconds(10)).until(() -> "RUNNING".equals(query("SELECT status " + mine + "'" + s1 + "'")));
        ok(b.send(port, b.seal(b.keys, Messages.STEP, NODE, project, step(s3, 3, "cohort", "{\"minValue\":77}", "{}"))));
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + mine + "'" + s1 + "'")));
        await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(2)).until(() -> "QUEUED".equals(query("SELECT status "
                + mine + "'" + s3 + "'")));
        ok(b.send(port, b.seal(b.keys, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":76}", "{}"))));
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + mine + "'" + s3 + "'")));
        assertTrue(count("SELECT COUNT(*) FROM fed_execution e2 JOIN fed_execution e3 ON e3.step_id = '" + s3 + "' AND e3.node_id = '"
                + NODE + "' WHERE e2.step_id = '" + s2 + "' AND e2.node_id = '" + NODE + "' AND e3.started_at >= e2.finished_at") == 1,
                "the third after the second");
        assertReportedInOrderAndRunOnce(s1, s2, s3);
    }

    @Test
    void aStepsDurationIsItsOwnWorkNotTheTimeItWaitedForARunnerThread() throws Exception {
        // the runner's four threads (hub.federation.steps.threads) busy with four projects' slow steps; a fifth project's
        // step, claimed by the transaction that received it, waits for a thread: it is RUNNING from its claim, but its
        // duration counts from when a thread began it
        String last = null;
        for (int i = 0; i < 5; i++) {
            String project = UUID.randomUUID().toString();
            last = UUID.randomUUID().toString();
            String invitation = b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("busy runner " + i));
            String step = b.seal(b.keys, Messages.STEP, NODE, project, step(last, 1, "cohort",
                    "{\"minValue\":5" + i + ",\"sleepMs\":" + (i < 4 ? 1500 : 100) + "}", "{}"));
            HttpResponse<String> r = b.send(port, "[" + invitation + "," + step + "]");
            assertEquals(200, r.statusCode(), r.body());
        }
        String execution = "FROM fed_execution WHERE step_id = '" + last + "' AND node_id = '" + NODE + "'";
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(query("SELECT status " + execution)));
        long running = count("SELECT (EXTRACT(EPOCH FROM finished_at - started_at) * 1000)::bigint " + execution);
        long duration = count("SELECT duration_ms " + execution);
        assertTrue(running >= 1000, "RUNNING from its claim, waiting for a thread: " + running + " ms");
        assertTrue(duration >= 100 && duration < running - 500, "its own work (a 100 ms step): " + duration + " ms of " + running);
    }

    @Test
    void aMessageTwiceInOneTransmissionIsAppliedOnceAndAReusedIdWithOtherContentIsRefused() throws Exception {
        // the messages of a transmission are stored by one statement: a message sent twice in it is stored and applied
        // once (the second acknowledged as a duplicate), and an id stored before but with other content is refused
        String project = UUID.randomUUID().toString();
        String s1 = UUID.randomUUID().toString();
        String s2 = UUID.randomUUID().toString();
        String invitation = a.seal(a.keys, Messages.INVITATION, NODE, project, invitation("twice in one"));
        String step1 = a.seal(a.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":31}", "{}"));
        String reusedId = TestPeer.JSON.readTree(TestPeer.JSON.readTree(step1).path("envelope").asText()).path("id").asText();
        String otherContent = a.seal(a.keys, reusedId, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":32}", "{}"));
        String step2 = a.seal(a.keys, Messages.STEP, NODE, project, step(s2, 2, "cohort", "{\"minValue\":32}", "{}"));
        HttpResponse<String> r = a.send(port, "[" + invitation + "," + step1 + "," + step1 + "," + otherContent + "," + step2 + "]");
        assertEquals(200, r.statusCode(), r.body());
        JsonNode results = TestPeer.JSON.readTree(r.body()).path("results");
        assertEquals(4, results.size(), "up to the refused one: " + r.body());
        assertFalse(results.get(1).path("duplicate").asBoolean(), r.body());
        assertEquals(reusedId, results.get(2).path("ack").asText(), r.body());
        assertTrue(results.get(2).path("duplicate").asBoolean(), "the second copy: " + r.body());
        assertEquals(409, results.get(3).path("status").asInt(), r.body());
        assertEquals("envelope.id", results.get(3).path("field").asText(), r.body());
        assertTrue(results.get(3).path("error").asText().contains("received before with other content"), r.body());
        assertEquals(2, count("SELECT COUNT(*) FROM fed_inbox WHERE project_id = '" + project + "'"), "the invitation and step 1, once");
        assertEquals(s1, query("SELECT step_id FROM fed_step WHERE project_id = '" + project + "'"), "step 1, once; nothing after the refusal");
        assertTrue(query("SELECT message FROM fed_inbox WHERE message_id = '" + reusedId + "'").contains("\"minValue\":31"),
                "the first content kept");
        // the same id with other content in a later transmission is refused the same way; the step itself, sent properly, is stored
        HttpResponse<String> later = a.send(port, "[" + otherContent + "]");
        assertEquals(409, TestPeer.JSON.readTree(later.body()).path("results").get(0).path("status").asInt(), later.body());
        HttpResponse<String> proper = a.send(port, "[" + step2 + "]");
        assertEquals(200, TestPeer.JSON.readTree(proper.body()).path("results").get(0).path("status").asInt(), proper.body());
        assertEquals(2, count("SELECT COUNT(*) FROM fed_step WHERE project_id = '" + project + "'"));

        // a received step's checks and its storing are one statement: what the checks refuse stores nothing
        String s3 = UUID.randomUUID().toString();
        String fromB = b.seal(b.keys, Messages.STEP, NODE, project, step(s3, 3, "cohort", "{\"minValue\":33}", "{}"));
        JsonNode notInitiator = TestPeer.JSON.readTree(b.send(port, "[" + fromB + "]").body()).path("results").get(0);
        assertEquals(403, notInitiator.path("status").asInt(), notInitiator.toString());
        assertTrue(notInitiator.path("error").asText().contains("only the project's initiator peer-a sends its steps"), notInitiator.toString());
        String changed = a.seal(a.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":34}", "{}"));
        JsonNode redefined = TestPeer.JSON.readTree(a.send(port, "[" + changed + "]").body()).path("results").get(0);
        assertEquals(409, redefined.path("status").asInt(), redefined.toString());
        assertEquals("payload.stepId", redefined.path("field").asText(), redefined.toString());
        String resent = a.seal(a.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":31}", "{}"));
        JsonNode same = TestPeer.JSON.readTree(a.send(port, "[" + resent + "]").body()).path("results").get(0);
        assertEquals(200, same.path("status").asInt(), "the same step under another message id: acknowledged, ignored");
        assertEquals(2, count("SELECT COUNT(*) FROM fed_step WHERE project_id = '" + project + "'"), "none of the three stored");
        assertEquals(2, count("SELECT COUNT(*) FROM fed_execution WHERE project_id = '" + project + "'"));
        assertTrue(query("SELECT definition FROM fed_step WHERE step_id = '" + s1 + "'").contains("31"), "its first definition");
    }

    // ---- retries -------------------------------------------------------------------------------------------------------

    @Test
    void aFailedStepIsCleanedAndRetriedAutomaticallyAndOnDemand() throws Exception {
        String project = invitedByA("retries");
        accept(project);
        String flaky = UUID.randomUUID().toString();
        String stubborn = UUID.randomUUID().toString();
        String invalid = UUID.randomUUID().toString();
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(flaky, 1, "cohort", "{\"minValue\":5,\"failTimes\":1}", "{}"))));
        await().atMost(Duration.ofSeconds(15)).until(() -> "SUCCEEDED".equals(status(flaky)));
        assertEquals(2, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + flaky + "'"), "failed once, then succeeded");
        assertEquals(16, count("SELECT COUNT(*) FROM fed_test_cohort WHERE step_id = '" + flaky + "'"),
                "persons 5..20 once each: the failed run's partial rows were removed");
        await().atMost(Duration.ofSeconds(10)).until(() -> reportedToA(flaky).contains("SUCCEEDED"));
        assertEquals(List.of("QUEUED", "RUNNING", "FAILED", "QUEUED", "RUNNING", "SUCCEEDED"), reportedToA(flaky));

        // fails on all 3 automatic attempts, then an operator retries it
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(stubborn, 2, "cohort", "{\"minValue\":18,\"failTimes\":3}", "{}"))));
        await().atMost(Duration.ofSeconds(15)).until(() -> count("SELECT COUNT(*) FROM fed_execution WHERE step_id = '" + stubborn
                + "' AND status = 'FAILED' AND NOT retryable") == 1);
        assertEquals(3, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + stubborn + "'"));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, stubborn).then().statusCode(200)
                .body("nodes[0].reason", containsString("no more automatic retries")).body("nodes[0].attempts", equalTo(3));
        assertEquals(0, count("SELECT COUNT(*) FROM fed_test_cohort WHERE step_id = '" + stubborn + "'"), "cleaned after failing");
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/{p}/steps/{s}/retry", project, flaky).then().statusCode(409);
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/{p}/steps/{s}/retry", project, stubborn).then().statusCode(202);
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(status(stubborn)));
        assertEquals(3, count("SELECT COUNT(*) FROM fed_test_cohort WHERE step_id = '" + stubborn + "'"), "persons 18..20 once");

        // an invalid definition is not retried; the reason names the field
        ok(a.send(port, a.seal(a.keys, Messages.STEP, NODE, project, step(invalid, 3, "cohort", "{\"invalid\":true}", "{}"))));
        await().atMost(Duration.ofSeconds(10)).until(() -> "FAILED".equals(status(invalid)));
        await().during(Duration.ofMillis(700)).atMost(Duration.ofSeconds(2))
                .until(() -> count("SELECT attempts FROM fed_execution WHERE step_id = '" + invalid + "' AND status = 'FAILED'") == 1);
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, invalid).then()
                .body("nodes[0].reason", containsString("definition.invalid")).body("nodes[0].retryable", equalTo(false));
    }

    // ---- initiator -------------------------------------------------------------------------------------------------------

    @Test
    void theInitiatorSendsInOrderHoldsMessagesForAnOfflineNodeAndCollectsStatusAndResults() throws Exception {
        a.offline = true;
        String project = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"title\":\"initiated here\",\"invitedNodes\":[\"peer-a\",\"peer-b\",\"" + NODE + "\"],\"sharingLevel\":\"aggregate-only\"}")
                .post("/api/v1/federation/projects").then().statusCode(201).body("initiator", equalTo(NODE))
                .body("localStatus", equalTo("ACCEPTED")).extract().path("projectId");
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"title\":\"x\",\"invitedNodes\":[\"nobody\"]}")
                .post("/api/v1/federation/projects").then().statusCode(400).body("field", equalTo("invitedNodes"));
        String cohort = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"kind\":\"cohort\",\"definition\":{\"minValue\":16}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(201).body("seq", equalTo(1))
                .body("kind", equalTo("cohort")).body("definition.minValue", equalTo(16))
                .body("nodes.nodeId", equalTo(List.of(NODE))).body("nodes[0].status", equalTo("QUEUED")) // as committed
                .extract().path("stepId");
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"kind\":\"analysis\",\"definition\":{},\"dependsOn\":{\"cohort\":\"not-a-step\"}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(400).body("field", equalTo("dependsOn.cohort"));
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"drop table\",\"definition\":{}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(400).body("field", equalTo("kind"));
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"drop table\",\"definition\":{}}")
                .post("/api/v1/federation/projects/no-such-project/steps").then().statusCode(404).body("field", equalTo("projectId"));
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"cohort\",\"definition\":{}}")
                .post("/api/v1/federation/projects/no-such-project/steps").then().statusCode(404).body("field", equalTo("projectId"));
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"kind\":\"analysis\",\"definition\":{},"
                + "\"dependsOn\":{\"cohort\":\"" + cohort + "\",\"variables\":\"not-a-step\"}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(400).body("field", equalTo("dependsOn.variables"));
        String analysis = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"kind\":\"analysis\",\"definition\":{},\"dependsOn\":{\"cohort\":\"" + cohort + "\"}}")
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(201).body("seq", equalTo(2))
                .extract().path("stepId");

        // peer-b (online) gets invitation, step 1, step 2 in that order, signed by this node
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 3);
        assertEquals(List.of("invitation", "step", "step"), forProject(b, project).stream().map(m -> m.path("type").asText()).toList());
        assertEquals(List.of(cohort, analysis), forProject(b, project).stream().skip(1)
                .map(m -> m.path("payload").path("stepId").asText()).toList());
        // peer-a is offline: its messages are held, retried with backoff
        await().atMost(Duration.ofSeconds(10)).until(() -> count("SELECT MAX(attempts) FROM fed_outbox WHERE destination = 'peer-a' "
                + "AND project_id = '" + project + "' AND status = 'PENDING'") >= 2);
        given().header("X-Api-Key", OPS).get("/api/v1/federation/outbox?destination=peer-a&status=PENDING").then().statusCode(200)
                .body("findAll { it.projectId == '" + project + "' }.size()", equalTo(3))
                .body("find { it.projectId == '" + project + "' }.lastError", containsString("503"));
        assertTrue(forProject(a, project).isEmpty());
        await().atMost(Duration.ofSeconds(5)).until(() -> given().get("/q/metrics").then().extract().asString()
                .matches("(?s).*hub_federation_outbox_pending\\{destination=\"peer-a\"[^}]*} [3-9].*"));
        // this node takes part itself: it ran both steps on its own data
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(status(analysis)));

        // peer-a comes back and gets everything in order, the messages held for it in one transmission
        List<String> after = backOnline(a, project);
        assertEquals(1, after.size(), "one transmission: " + after);
        assertEquals(3, TestPeer.JSON.readTree(after.get(0)).size(), after.get(0));
        // recorded acknowledged (with the read of what follows, one statement): none of them goes again
        await().atMost(Duration.ofSeconds(5)).until(() -> count("SELECT COUNT(*) FROM fed_outbox WHERE destination = 'peer-a' "
                + "AND project_id = '" + project + "' AND status = 'ACKED' AND acked_at IS NOT NULL") == 3);
        await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(2)).until(() -> forProject(a, project).size() == 3);
        assertEquals(3, forProject(b, project).size(), "peer-b got each message once");
        String firstStepMessage = forProject(a, project).get(1).path("id").asText();
        // resend on demand of an acknowledged message: delivered again with the same id (the receiver ignores it)
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"messageIds\":[\"" + firstStepMessage + "\"]}")
                .post("/api/v1/federation/outbox/resend").then().statusCode(200).body("resent", equalTo(1));
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(a, project).size() == 4);
        assertEquals(firstStepMessage, forProject(a, project).get(3).path("id").asText());

        // status events are pushed to a subscriber
        List<String> pushed = new CopyOnWriteArrayList<>();
        java.net.http.HttpClient http = java.net.http.HttpClient.newBuilder().version(java.net.http.HttpClient.Version.HTTP_1_1).build();
        var sse = http.sendAsync(java.net.http.HttpRequest.newBuilder(java.net.URI.create("http://127.0.0.1:" + port
                + "/api/v1/federation/projects/" + project + "/events")).header("X-Api-Key", OPS).header("Accept", "text/event-stream")
                .build(), java.net.http.HttpResponse.BodyHandlers.ofLines());
        var lines = sse.get(10, TimeUnit.SECONDS);
        Thread reader = new Thread(() -> lines.body().filter(l -> l.startsWith("data:")).forEach(pushed::add));
        reader.setDaemon(true);
        reader.start();

        // the peers report back: peer-a succeeded with a result, peer-b failed; an older report never wins
        ObjectNode done = report(analysis, "peer-a", "SUCCEEDED", 3);
        done.putObject("result").put("count", 4).put("sum", 74.0);
        ok(a.send(port, a.seal(a.keys, Messages.STEP_STATUS, NODE, project, done)));
        ok(a.send(port, a.seal(a.keys, Messages.STEP_STATUS, NODE, project, report(analysis, "peer-a", "RUNNING", 2))));
        ObjectNode failed = report(analysis, "peer-b", "FAILED", 3);
        failed.put("reason", "disk full");
        ok(b.send(port, b.seal(b.keys, Messages.STEP_STATUS, NODE, project, failed)));
        // a node reports only its own executions
        HttpResponse<String> r = a.send(port, a.seal(a.keys, Messages.STEP_STATUS, NODE, project, report(analysis, "peer-b", "SUCCEEDED", 9)));
        assertEquals(403, r.statusCode(), r.body());

        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, analysis).then().statusCode(200)
                .body("nodes.find { it.nodeId == 'peer-a' }.status", equalTo("SUCCEEDED"))
                .body("nodes.find { it.nodeId == 'peer-b' }.status", equalTo("FAILED"))
                .body("nodes.find { it.nodeId == 'peer-b' }.reason", equalTo("disk full"))
                .body("nodes.find { it.nodeId == '" + NODE + "' }.status", equalTo("SUCCEEDED"));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}/results", project, analysis).then()
                .statusCode(200).body("nodes.peer-a.count", equalTo(4)).body("nodes.hub-test.count", equalTo(5))
                .body("nodes.hub-test.sum", equalTo(90.0f));
        String csv = given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}/results?format=csv", project, analysis)
                .then().statusCode(200).contentType(containsString("text/csv")).extract().asString();
        assertEquals("node,count,sum\nhub-test,5,90.0\npeer-a,4,74.0\n", csv);
        await().atMost(Duration.ofSeconds(5)).until(() -> pushed.stream().anyMatch(l -> l.contains("\"nodeId\":\"peer-b\"")
                && l.contains("FAILED")));
        assertTrue(pushed.stream().noneMatch(l -> l.contains("RUNNING") && l.contains("peer-a")), "the stale report was not applied");
        sse.cancel(true);

        // the initiator asks peer-b to retry: a signed step-retry message
        given().header("X-Api-Key", OPS).post("/api/v1/federation/projects/{p}/steps/{s}/retry?node=peer-b", project, analysis)
                .then().statusCode(202);
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).stream()
                .anyMatch(m -> m.path("type").asText().equals(Messages.STEP_RETRY)));

        // a node's reports in one transmission are applied together (one statement): the newest stands, with its result
        ObjectNode succeeded = report(analysis, "peer-b", "SUCCEEDED", 6);
        succeeded.put("startedAt", "2026-12-06T10:00:00Z").put("finishedAt", "2026-12-06T10:00:02.5Z").put("durationMs", 2500);
        succeeded.putObject("result").put("count", 6).put("sum", 21.0);
        HttpResponse<String> three = b.send(port, "[" + b.seal(b.keys, Messages.STEP_STATUS, NODE, project, report(analysis, "peer-b",
                "QUEUED", 4)) + "," + b.seal(b.keys, Messages.STEP_STATUS, NODE, project, report(analysis, "peer-b", "RUNNING", 5))
                + "," + b.seal(b.keys, Messages.STEP_STATUS, NODE, project, succeeded) + "]");
        JsonNode applied = TestPeer.JSON.readTree(three.body()).path("results");
        assertEquals(3, applied.size(), three.body());
        applied.forEach(x -> assertEquals(200, x.path("status").asInt(), three.body()));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, analysis).then().statusCode(200)
                .body("nodes.find { it.nodeId == 'peer-b' }.status", equalTo("SUCCEEDED"))
                .body("nodes.find { it.nodeId == 'peer-b' }.durationMs", equalTo(2500))
                .body("nodes.find { it.nodeId == 'peer-b' }.reason", equalTo(null));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}/results", project, analysis).then()
                .statusCode(200).body("nodes.peer-b.count", equalTo(6));
        // run again there (queued, then a report with a time that is none): the result no longer stands; the bad report
        // is refused naming its field, and nothing of it is applied
        ObjectNode badTime = report(analysis, "peer-b", "RUNNING", 8);
        badTime.put("startedAt", "yesterday");
        HttpResponse<String> again = b.send(port, "[" + b.seal(b.keys, Messages.STEP_STATUS, NODE, project, report(analysis, "peer-b",
                "QUEUED", 7)) + "," + b.seal(b.keys, Messages.STEP_STATUS, NODE, project, badTime) + "]");
        JsonNode refused = TestPeer.JSON.readTree(again.body()).path("results");
        assertEquals(200, refused.get(0).path("status").asInt(), again.body());
        assertEquals(400, refused.get(1).path("status").asInt(), again.body());
        assertEquals("payload.startedAt", refused.get(1).path("field").asText(), again.body());
        assertTrue(refused.get(1).path("error").asText().contains("not 'yesterday'"), again.body());
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, analysis).then().statusCode(200)
                .body("nodes.find { it.nodeId == 'peer-b' }.status", equalTo("QUEUED"));
        assertEquals(0, count("SELECT COUNT(*) FROM fed_result WHERE step_id = '" + analysis + "' AND node_id = 'peer-b'"));
    }

    @Test
    void aMessageCommittedWhileAnEarlierOneWaitsForItsRetryIsNotSentAheadOfIt() throws Exception {
        // a message to an idle node goes as committed, without the sender reading it back; one to a node with a
        // message pending (here: waiting out its backoff) waits behind it, even when the node is reachable again
        a.offline = true;
        try {
            String project = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                    .body("{\"title\":\"held\",\"invitedNodes\":[\"peer-a\",\"" + NODE + "\"],\"sharingLevel\":\"aggregate-only\"}")
                    .post("/api/v1/federation/projects").then().statusCode(201).extract().path("projectId");
            String pendingInvitation = "SELECT COUNT(*) FROM fed_outbox WHERE destination = 'peer-a' AND project_id = '" + project
                    + "' AND status = 'PENDING' AND message_type = 'invitation'";
            // just after a failed attempt, with the next one (backoff capped at 1 s here) at least 0.6 s away
            await().atMost(Duration.ofSeconds(15)).pollInterval(Duration.ofMillis(20)).until(() -> count(pendingInvitation
                    + " AND attempts >= 4 AND next_attempt_at > now() + interval '600 milliseconds'") == 1);
            a.offline = false;
            String step = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                    .body("{\"kind\":\"cohort\",\"definition\":{\"minValue\":1}}")
                    .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(201).extract().path("stepId");
            assertEquals(1, count(pendingInvitation), "the invitation still waits for its next attempt");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(a, project).size() == 2);
            assertEquals(List.of("invitation", "step"), forProject(a, project).stream().map(m -> m.path("type").asText()).toList());
            assertEquals(step, forProject(a, project).get(1).path("payload").path("stepId").asText());
        } finally {
            a.offline = false;
        }
    }

    @Test
    void aStepPostedWhileTheMessageBeforeItIsUnansweredFollowsItAtOnceAndEveryMessageIsSentOnceInOrder() throws Exception {
        // a study posted step by step: a step need not wait for the round trip of the invitation or step before it
        CountDownLatch invitationAnswered = new CountDownLatch(1);
        CountDownLatch stepAnswered = new CountDownLatch(1);
        b.hold = new TestPeer.Hold(Messages.INVITATION, invitationAnswered);
        try {
            String project = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                    .body("{\"title\":\"steps follow\",\"invitedNodes\":[\"peer-b\"],\"sharingLevel\":\"aggregate-only\"}")
                    .post("/api/v1/federation/projects").then().statusCode(201).extract().path("projectId");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 1);
            String s1 = postStep(project, "{\"kind\":\"cohort\",\"definition\":{\"minValue\":1}}");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 2);
            assertEquals(1, invitationAnswered.getCount());
            String row = "SELECT status FROM fed_outbox WHERE destination = 'peer-b' AND project_id = '" + project + "' AND ";
            await().atMost(Duration.ofSeconds(5)).until(() -> "ACKED".equals(query(row + "message_id = '" + messageOf(s1) + "'")));
            assertEquals("PENDING", query(row + "message_type = 'invitation'"), "the invitation is still unanswered");
            b.hold = new TestPeer.Hold(Messages.STEP, stepAnswered);
            invitationAnswered.countDown();
            await().atMost(Duration.ofSeconds(10)).until(() -> "ACKED".equals(query(row + "message_type = 'invitation'")));

            // the same after a step: the next one follows while the one before is unanswered
            String s2 = postStep(project, "{\"kind\":\"variables\",\"definition\":{},\"dependsOn\":{\"cohort\":\"" + s1 + "\"}}");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 3);
            String s3 = postStep(project, "{\"kind\":\"analysis\",\"definition\":{},\"dependsOn\":{\"cohort\":\"" + s1 + "\"}}");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 4);
            assertEquals(1, stepAnswered.getCount());
            await().atMost(Duration.ofSeconds(5)).until(() -> "ACKED".equals(query(row + "message_id = '" + messageOf(s3) + "'")));
            assertEquals("PENDING", query(row + "message_id = '" + messageOf(s2) + "'"), "the step before it is still unanswered");
            stepAnswered.countDown();
            await().atMost(Duration.ofSeconds(10)).until(() -> count("SELECT COUNT(*) FROM fed_outbox WHERE project_id = '"
                    + project + "' AND status = 'ACKED'") == 4);
            // nothing went twice, and in order
            await().during(Duration.ofMillis(500)).atMost(Duration.ofSeconds(2)).until(() -> forProject(b, project).size() == 4);
            assertEquals(List.of("invitation", "step", "step", "step"), forProject(b, project).stream().map(m -> m.path("type").asText()).toList());
            assertEquals(List.of(s1, s2, s3), forProject(b, project).stream().skip(1).map(m -> m.path("payload").path("stepId").asText()).toList());
        } finally {
            b.hold = null;
            invitationAnswered.countDown();
            stepAnswered.countDown();
        }
    }

    private static String postStep(String project, String body) {
        return given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body(body)
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(201).extract().path("stepId");
    }

    /** The id of the outbox message that carries step {@code step} to peer-b. */
    private static String messageOf(String step) throws SQLException {
        return query("SELECT message_id FROM fed_outbox WHERE destination = 'peer-b' AND message_type = 'step' AND message LIKE '%"
                + step + "%'");
    }

    @Test
    void anInvitationAndItsFirstStepReceivedAtTheSameTimeAreAppliedInTurnAndTheStepIsReportedAndRunAtOnce() throws Exception {
        // a sender lets a study's first step follow its invitation before that is acknowledged: the two receipts may
        // run at the same time; whichever commits second sees the other, so the step is reported queued and run at once
        // (not at the runner's next poll, its queued state unreported)
        ExecutorService two = Executors.newFixedThreadPool(2);
        try {
            for (int i = 0; i < 12; i++) {
                String project = UUID.randomUUID().toString();
                String s1 = UUID.randomUUID().toString();
                String invitation = b.seal(b.keys, Messages.INVITATION, NODE, project, invitation("together " + i));
                String step = b.seal(b.keys, Messages.STEP, NODE, project, step(s1, 1, "cohort", "{\"minValue\":3}", "{}"));
                CountDownLatch go = new CountDownLatch(1);
                Future<HttpResponse<String>> first = two.submit(() -> {
                    go.await();
                    return b.send(port, invitation);
                });
                Future<HttpResponse<String>> second = two.submit(() -> {
                    go.await();
                    return b.send(port, step);
                });
                go.countDown();
                ok(first.get(10, TimeUnit.SECONDS));
                ok(second.get(10, TimeUnit.SECONDS));
                await().atMost(Duration.ofSeconds(10)).until(() -> b.received(Messages.STEP_STATUS).stream()
                        .filter(m -> m.path("payload").path("stepId").asText().equals(s1))
                        .map(m -> m.path("payload").path("status").asText()).toList().contains("SUCCEEDED"));
                assertEquals(List.of("QUEUED", "RUNNING", "SUCCEEDED"), b.received(Messages.STEP_STATUS).stream()
                        .filter(m -> m.path("payload").path("stepId").asText().equals(s1))
                        .map(m -> m.path("payload").path("status").asText()).toList(), "round " + i);
                assertEquals(1, count("SELECT COUNT(*) FROM fed_test_run WHERE step_id = '" + s1 + "'"));
            }
        } finally {
            two.shutdownNow();
        }
    }

    @Test
    void aStudyCreatedWithItsStepsTravelsWithItsInvitationInOneTransmission() throws Exception {
        // refused whole, naming the entry and field: nothing of such a project is stored
        String base = "{\"invitedNodes\":[\"peer-b\",\"" + NODE + "\"],\"title\":\"plan-refused\",\"steps\":";
        Map<String, String> bad = new LinkedHashMap<>();
        bad.put("[{\"ref\":\"c\",\"kind\":\"cohort\",\"definition\":{}},{\"kind\":\"analysis\",\"definition\":{},"
                + "\"dependsOn\":{\"cohort\":\"x\"}}]", "steps[1].dependsOn.cohort");
        bad.put("[{\"kind\":\"analysis\",\"definition\":{},\"dependsOn\":{\"cohort\":\"a\"},\"ref\":\"a\"}]",
                "steps[0].dependsOn.cohort"); // a step cannot depend on itself
        bad.put("[{\"ref\":\"c\",\"kind\":\"cohort\",\"definition\":{}},{\"ref\":\"c\",\"kind\":\"cohort\",\"definition\":{}}]",
                "steps[1].ref");
        bad.put("[{\"kind\":\"drop table\",\"definition\":{}}]", "steps[0].kind");
        bad.put("[{\"kind\":\"cohort\"}]", "steps[0].definition");
        bad.put("[{\"definition\":{}}]", "steps[0].kind");
        bad.put("[7]", "steps[0]");
        bad.put("{\"kind\":\"cohort\"}", "steps");
        for (Map.Entry<String, String> e : bad.entrySet()) {
            given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body(base + e.getKey() + "}")
                    .post("/api/v1/federation/projects").then().statusCode(400).body("field", equalTo(e.getValue()));
        }
        assertEquals(0, count("SELECT COUNT(*) FROM fed_project WHERE title = 'plan-refused'"));

        int before = b.transmissions.size();
        var created = given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body("{\"title\":\"a planned study\","
                + "\"invitedNodes\":[\"peer-b\",\"" + NODE + "\"],\"steps\":[{\"ref\":\"c\",\"kind\":\"cohort\","
                + "\"definition\":{\"minValue\":16}},{\"ref\":\"a\",\"kind\":\"analysis\",\"definition\":{},"
                + "\"dependsOn\":{\"cohort\":\"c\"}}]}")
                .post("/api/v1/federation/projects").then().statusCode(201).body("initiator", equalTo(NODE))
                .body("steps.ref", equalTo(List.of("c", "a"))).body("steps.seq", equalTo(List.of(1, 2)))
                .body("steps.kind", equalTo(List.of("cohort", "analysis"))).extract();
        String project = created.path("projectId");
        String cohort = created.path("steps[0].stepId");
        String analysis = created.path("steps[1].stepId");
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}", project, analysis).then()
                .statusCode(200).body("dependsOn.cohort", equalTo(cohort));

        // peer-b: the invitation and both steps, in order, in one transmission
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 3);
        assertEquals(List.of("invitation", "step", "step"), forProject(b, project).stream().map(m -> m.path("type").asText()).toList());
        assertEquals(cohort, forProject(b, project).get(2).path("payload").path("dependsOn").path("cohort").asText());
        List<String> carried = b.transmissions.subList(before, b.transmissions.size()).stream().filter(t -> t.contains(project)).toList();
        assertEquals(1, carried.size(), "one transmission: " + carried);
        // this node takes part itself and ran both, the analysis on the cohort
        await().atMost(Duration.ofSeconds(10)).until(() -> "SUCCEEDED".equals(status(analysis)));
        given().header("X-Api-Key", OPS).get("/api/v1/federation/projects/{p}/steps/{s}/results", project, analysis).then()
                .statusCode(200).body("nodes.hub-test.count", equalTo(5));
    }

    @Test
    void aProjectPostedAgainWithItsIdempotencyKeyIsCreatedAndSentOnce() throws Exception {
        String plan = "{\"title\":\"idempotent study\",\"invitedNodes\":[\"peer-b\"],\"steps\":[{\"ref\":\"c\","
                + "\"kind\":\"cohort\",\"definition\":{\"minValue\":3}},{\"ref\":\"a\",\"kind\":\"analysis\","
                + "\"definition\":{},\"dependsOn\":{\"cohort\":\"c\"}}]}";
        String key = "study-" + UUID.randomUUID();
        var first = given().header("X-Api-Key", OPS).header("Idempotency-Key", key).contentType(ContentType.JSON).body(plan)
                .post("/api/v1/federation/projects").then().statusCode(201).extract();
        String project = first.path("projectId");
        // the answer was lost: the client sends the same request again, as it may after a timeout
        given().header("X-Api-Key", OPS).header("Idempotency-Key", key).contentType(ContentType.JSON).body(plan)
                .post("/api/v1/federation/projects").then().statusCode(200).header("Idempotent-Replayed", "true")
                .body("projectId", equalTo(project)).body("steps.ref", equalTo(List.of("c", "a")))
                .body("steps.stepId", equalTo(first.path("steps.stepId")));
        // the same key for another study is refused, naming the header, and creates nothing
        given().header("X-Api-Key", OPS).header("Idempotency-Key", key).contentType(ContentType.JSON)
                .body(plan.replace("idempotent study", "another study")).post("/api/v1/federation/projects").then()
                .statusCode(422).body("field", equalTo("Idempotency-Key")).body("error", containsString(project));
        for (String badKey : List.of("has space", "x".repeat(201))) {
            given().header("X-Api-Key", OPS).header("Idempotency-Key", badKey).contentType(ContentType.JSON).body(plan)
                    .post("/api/v1/federation/projects").then().statusCode(400).body("field", equalTo("Idempotency-Key"));
        }
        assertEquals(1, count("SELECT COUNT(*) FROM fed_project WHERE title = 'idempotent study'"));
        assertEquals(0, count("SELECT COUNT(*) FROM fed_project WHERE title = 'another study'"));
        assertEquals(3, count("SELECT COUNT(*) FROM fed_outbox WHERE project_id = '" + project + "'"),
                "the invitation and two steps for peer-b, once");

        // six clients repeating one request at the same moment: one project, every answer names it
        String raced = "race-" + UUID.randomUUID();
        String racedPlan = plan.replace("idempotent study", "raced study");
        List<java.util.concurrent.Future<io.restassured.response.Response>> answers = new ArrayList<>();
        var pool = java.util.concurrent.Executors.newFixedThreadPool(6);
        try {
            for (int i = 0; i < 6; i++) {
                answers.add(pool.submit(() -> given().header("X-Api-Key", OPS).header("Idempotency-Key", raced)
                        .contentType(ContentType.JSON).body(racedPlan).post("/api/v1/federation/projects")));
            }
            List<Integer> codes = new ArrayList<>();
            java.util.Set<String> ids = new java.util.HashSet<>();
            for (var f : answers) {
                io.restassured.response.Response r = f.get(30, TimeUnit.SECONDS);
                codes.add(r.statusCode());
                ids.add(r.path("projectId"));
            }
            assertEquals(1, codes.stream().filter(c -> c == 201).count(), "one created: " + codes);
            assertEquals(5, codes.stream().filter(c -> c == 200).count(), "five repeats: " + codes);
            assertEquals(1, ids.size(), ids.toString());
        } finally {
            pool.shutdownNow();
        }
        assertEquals(1, count("SELECT COUNT(*) FROM fed_project WHERE title = 'raced study'"));

        // the plan's limits: 50 steps, 200,000 characters per definition; nothing stored
        StringBuilder many = new StringBuilder("[");
        for (int i = 0; i < 51; i++) {
            many.append(i == 0 ? "" : ",").append("{\"kind\":\"cohort\",\"definition\":{}}");
        }
        many.append("]");
        String base = "{\"invitedNodes\":[\"peer-b\"],\"title\":\"plan-too-big\",\"steps\":";
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body(base + many + "}")
                .post("/api/v1/federation/projects").then().statusCode(400).body("field", equalTo("steps"));
        String huge = base + "[{\"kind\":\"cohort\",\"definition\":{\"note\":\"" + "x".repeat(200_001) + "\"}}]}";
        // over the HTTP body limit (64K in tests, 1M by default) first: 413
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body(huge).post("/api/v1/federation/projects").then()
                .statusCode(413);
        // under a larger body limit, the definition's own limit
        Projects.InvalidRequest tooLong = org.junit.jupiter.api.Assertions.assertThrows(Projects.InvalidRequest.class,
                () -> projects.create(TestPeer.JSON.readTree(huge), "ops"));
        assertEquals("steps[0].definition", tooLong.field);
        assertEquals(400, tooLong.status);
        assertEquals(0, count("SELECT COUNT(*) FROM fed_project WHERE title = 'plan-too-big'"));
    }

    // ---- central hub ---------------------------------------------------------------------------------------------------

    @Test
    void asTheCentralHubTheNodeRelaysMessagesUnchangedAndInOrder() throws Exception {
        String project = UUID.randomUUID().toString();
        b.offline = true;
        List<String> ids = new ArrayList<>();
        for (int i = 1; i <= 3; i++) {
            ObjectNode s = step(UUID.randomUUID().toString(), i, "cohort", "{\"minValue\":" + i + "}", "{}");
            String wire = a.seal(a.keys, Messages.STEP, "peer-b", project, s);
            ids.add(TestPeer.JSON.readTree(TestPeer.JSON.readTree(wire).path("envelope").asText()).path("id").asText());
            HttpResponse<String> r = a.send(port, wire);
            assertEquals(200, r.statusCode(), r.body());
            if (i == 1) {
                assertTrue(a.send(port, wire).body().contains("\"duplicate\":true"), "a copy is relayed once");
            }
        }
        assertEquals(0, count("SELECT COUNT(*) FROM fed_step WHERE project_id = '" + project + "'"), "relayed, not applied here");
        await().atMost(Duration.ofSeconds(10)).until(() -> count("SELECT MIN(attempts) FROM fed_outbox WHERE project_id = '" + project
                + "' AND destination = 'peer-b' AND status = 'PENDING' AND message_id = '" + ids.get(0) + "'") >= 1);
        b.offline = false;
        await().atMost(Duration.ofSeconds(10)).until(() -> forProject(b, project).size() == 3);
        assertEquals(ids, forProject(b, project).stream().map(m -> m.path("id").asText()).toList(),
                "in order, origin signature intact (verified by peer-b with peer-a's key)");
        // a message for a node nobody registered is refused
        HttpResponse<String> r = a.send(port, a.seal(a.keys, Messages.STEP, "peer-z", project,
                step(UUID.randomUUID().toString(), 4, "cohort", "{}", "{}")));
        assertEquals(400, r.statusCode(), r.body());
        assertTrue(r.body().contains("envelope.to"), r.body());
    }

    private static ObjectNode report(String step, String node, String status, int version) {
        ObjectNode p = TestPeer.JSON.createObjectNode();
        p.put("stepId", step);
        p.put("node", node);
        p.put("status", status);
        p.put("attempts", 1);
        p.put("version", version);
        return p;
    }

    private static List<JsonNode> forProject(TestPeer p, String project) {
        return p.received.stream().filter(m -> m.path("projectId").asText().equals(project)).toList();
    }
}
