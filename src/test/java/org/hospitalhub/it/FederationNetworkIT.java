package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.net.http.HttpResponse;
import java.security.KeyPairGenerator;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.UUID;

import org.hospitalhub.it.FederationNodes.Node;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Research federation across three packaged hubs (separate JVMs, one PostgreSQL database each, HTTP on 127.0.0.1):
 * {@code north} initiates a study, {@code hub} is the central hub node every message goes through and also holds
 * data, {@code south} is offline while the study starts. Covers: messages held for the offline node and delivered when
 * it returns (here by a relay that delivers them out of order and twice: executed in the initiator's order, once);
 * resend on demand; forged, replayed and expired messages rejected; a slow node not delaying the others; an execution
 * that fails and succeeds on the automatic retry without leftover results; a node killed (SIGKILL) in the middle of a
 * step runs it again after its restart; statuses and results reported back through the central hub; small cells
 * suppressed; pooled statistics (north's pooled endpoint) equal to the union of the nodes' per-person values. Steps are
 * executed by the real data side (StudyExecutor on each node's synthetic OMOP CDM schema).
 */
class FederationNetworkIT {

    private static FederationNodes net;
    private static Node north;
    private static Node hub;
    private static Node south;

    @BeforeAll
    static void startNetwork() throws Exception {
        net = new FederationNodes("federation-it", List.of("north", "hub", "south"));
        north = net.node("north");
        hub = net.node("hub");
        south = net.node("south");
        net.create(Map.of("hub", List.of("north")), "hub",
                Map.of("hub", Map.of("HUB_FEDERATION_STEPS_RETRY_DELAY", "3s")));
        net.start("north", "hub", "south");
        FederationStudy.load(north, hub, south);
    }

    @AfterAll
    static void stopNetwork() throws Exception {
        if (net != null) {
            net.close();
        }
    }

    private static JsonNode stepView(Node n, String project, String step) throws Exception {
        return n.get("/api/v1/federation/projects/" + project + "/steps/" + step);
    }

    /** The status north (the initiator) sees for a step on a node. */
    private static String statusAtNorth(String project, String step, String node) throws Exception {
        for (JsonNode e : stepView(north, project, step).path("nodes")) {
            if (e.path("nodeId").asText().equals(node)) {
                return e.path("status").asText();
            }
        }
        return "NONE";
    }

    private static void awaitAtNorth(String project, String step, String node, String status, int seconds) {
        await().atMost(Duration.ofSeconds(seconds)).pollInterval(Duration.ofMillis(100))
                .until(() -> statusAtNorth(project, step, node).equals(status));
    }

    private static String addStep(String project, String kind, String definition, String dependsOn) throws Exception {
        return north.post("/api/v1/federation/projects/" + project + "/steps", "{\"kind\":\"" + kind + "\",\"definition\":"
                + definition + ",\"dependsOn\":" + dependsOn + "}", 201).path("stepId").asText();
    }

    static long count(Node n, String sql) throws Exception {
        try (Connection c = DriverManager.getConnection(n.db.url, "postgres", ""); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    @Test
    void aStudyAcrossThreeNodesThroughTheCentralHub() throws Exception {
        // ---- south is offline while the study starts -------------------------------------------------------------
        south.process.stop(); // SIGTERM: a graceful shutdown
        String project = north.post("/api/v1/federation/projects", """
                {"title":"HbA1c in type 2 diabetes","invitedNodes":["north","hub","south"],"sharingLevel":"aggregate-only"}
                """, 201).path("projectId").asText();
        String cohort = addStep(project, "cohort", FederationStudy.COHORT, "{}");
        String variables = addStep(project, "variables", FederationStudy.VARIABLES, "{\"cohort\":\"" + cohort + "\"}");
        String analysis = addStep(project, "analysis", FederationStudy.ANALYSIS,
                "{\"cohort\":\"" + cohort + "\",\"variables\":\"" + variables + "\"}");
        List<String> steps = List.of(cohort, variables, analysis);
        for (String s : steps) {
            awaitAtNorth(project, s, "north", FederationStudy.DONE, 60);
            awaitAtNorth(project, s, "hub", FederationStudy.DONE, 60);
        }
        assertEquals("ACCEPTED", hub.get("/api/v1/federation/projects/" + project).path("project").path("localStatus").asText(),
                "hub accepts north's projects automatically");
        // north sent everything for south to the central hub, which holds it: invitation and three steps
        await().atMost(Duration.ofSeconds(10)).until(() -> count(north, "SELECT COUNT(*) FROM fed_outbox WHERE destination = 'south' "
                + "AND status = 'ACKED'") == 4);
        JsonNode held = hub.get("/api/v1/federation/outbox?destination=south&status=PENDING");
        assertEquals(4, held.size(), held.toString());
        assertTrue(held.get(0).path("lastError").asText().contains("unreachable"), held.toString());
        assertEquals(List.of("invitation", "step", "step", "step"), types(held), held.toString());

        // ---- south returns: the central hub delivers what it held, in order ---------------------------------------
        south.process.start();
        await().atMost(Duration.ofSeconds(20)).until(() -> count(hub, "SELECT COUNT(*) FROM fed_outbox WHERE destination = 'south' "
                + "AND status = 'PENDING'") == 0);
        assertEquals(List.of("invitation", "step", "step", "step"), receivedTypes(south, project), "south received them in order");
        assertEquals("INVITED", south.get("/api/v1/federation/projects/" + project).path("project").path("localStatus").asText());
        assertEquals(0, count(south, "SELECT COUNT(*) FROM fed_execution WHERE status <> 'QUEUED'"), "nothing runs before accepting");
        south.post("/api/v1/federation/projects/" + project + "/accept", null, 200);
        for (String s : steps) {
            awaitAtNorth(project, s, "south", FederationStudy.DONE, 60);
        }
        assertEquals(steps, startOrder(south, project), "south ran the steps in the initiator's order, each once");

        // ---- a partition between hub and south; a misbehaving path delivers backwards and twice; an execution
        //      fails on hub and succeeds on the automatic retry ------------------------------------------------------
        FederationStudy.breakData(hub);
        pointSouthAt(hub, south, "http://127.0.0.1:9"); // through the hub's API: applies at once (a change in the database
        // alone, as another replica's, would apply within hub.federation.peers.cache-ttl)
        String cohort2 = addStep(project, "cohort", FederationStudy.COHORT2, "{}");
        String analysis2 = addStep(project, "variables", FederationStudy.VARIABLES2, "{\"cohort\":\"" + cohort2 + "\"}");
        await().atMost(Duration.ofSeconds(30)).until(() -> count(hub, "SELECT COUNT(*) FROM fed_execution WHERE step_id = '"
                + cohort2 + "' AND node_id = 'hub' AND status = 'FAILED' AND retryable") == 1);
        FederationStudy.repairData(hub);
        awaitAtNorth(project, analysis2, "north", FederationStudy.DONE, 30);
        awaitAtNorth(project, analysis2, "hub", FederationStudy.DONE, 30);
        assertEquals(2, count(hub, "SELECT attempts FROM fed_execution WHERE step_id = '" + cohort2 + "' AND node_id = 'hub'"),
                "failed once, succeeded on the automatic retry");
        await().atMost(Duration.ofSeconds(10)).until(() -> count(north, "SELECT COUNT(*) FROM fed_inbox WHERE origin = 'hub' "
                + "AND message_type = 'step-status' AND message LIKE '%" + cohort2 + "%' AND message LIKE '%\"status\":\"FAILED\"%'") == 1);
        await().atMost(Duration.ofSeconds(10)).until(() -> count(hub, "SELECT COUNT(*) FROM fed_outbox WHERE destination = 'south' "
                + "AND status = 'PENDING'") == 2 && count(hub, "SELECT MAX(attempts) FROM fed_outbox WHERE destination = 'south' "
                + "AND status = 'PENDING'") > 0); // held by the partition
        List<String> wires = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(hub.db.url, "postgres", ""); Statement s = c.createStatement();
                ResultSet rs = s.executeQuery("SELECT message FROM fed_outbox WHERE destination = 'south' AND status = 'PENDING' ORDER BY id")) {
            while (rs.next()) {
                // north's steps relayed by the hub, as north signed them (a message of the hub's own would be stored
                // unsigned, signed by its sender when it goes out)
                JsonNode stored = FederationNodes.JSON.readTree(rs.getString(1));
                assertEquals("north", FederationNodes.JSON.readTree(stored.path("envelope").asText()).path("origin").asText());
                wires.add(rs.getString(1));
            }
        }
        Collections.reverse(wires);
        for (String wire : wires) {
            HttpResponse<String> first = south.transmit(hub, wire);
            assertEquals(200, first.statusCode(), first.body());
            assertTrue(first.body().contains("\"duplicate\":false"), first.body());
            HttpResponse<String> again = south.transmit(hub, wire);
            assertEquals(200, again.statusCode(), again.body());
            assertTrue(again.body().contains("\"duplicate\":true"), again.body());
        }
        awaitAtNorth(project, analysis2, "south", FederationStudy.DONE, 30);
        pointSouthAt(hub, south, south.url());
        hub.post("/api/v1/federation/outbox/resend", "{\"destination\":\"south\"}", 200);
        await().atMost(Duration.ofSeconds(10)).until(() -> count(hub, "SELECT COUNT(*) FROM fed_outbox WHERE destination = 'south' "
                + "AND status = 'PENDING'") == 0);
        List<String> all = List.of(cohort, variables, analysis, cohort2, analysis2);
        assertEquals(all, startOrder(south, project), "initiator's order and once each, whatever the delivery order");

        // ---- forged, replayed and expired messages are rejected ------------------------------------------------------
        String stale = FederationNodes.JSON.createObjectNode().put("stepId", analysis).put("node", "south").put("status", "RUNNING")
                .put("attempts", 1).put("version", 1).toString();
        String envelope = FederationNodes.JSON.createObjectNode().put("id", UUID.randomUUID().toString()).put("type", "step-status")
                .put("origin", "south").put("to", "north").put("projectId", project).put("createdAt", java.time.Instant.now().toString())
                .set("payload", FederationNodes.JSON.readTree(stale)).toString();
        String genuine = FederationNodes.JSON.createObjectNode().put("envelope", envelope)
                .put("signature", FederationNodes.sign(south.keys.getPrivate(), "hub-federation-message-v1\n" + envelope)).toString();
        var forger = KeyPairGenerator.getInstance("Ed25519").generateKeyPair();
        assertEquals(401, north.transmit("hub", forger.getPrivate(), UUID.randomUUID().toString(), System.currentTimeMillis(), genuine)
                .statusCode(), "forged: not signed with hub's key");
        String nonce = UUID.randomUUID().toString();
        long now = System.currentTimeMillis();
        assertEquals(200, north.transmit("hub", hub.keys.getPrivate(), nonce, now, genuine).statusCode());
        HttpResponse<String> replay = north.transmit("hub", hub.keys.getPrivate(), nonce, now, genuine);
        assertEquals(409, replay.statusCode(), replay.body());
        assertEquals(401, north.transmit("hub", hub.keys.getPrivate(), UUID.randomUUID().toString(), now - 600_000, genuine)
                .statusCode(), "expired");
        assertEquals(FederationStudy.DONE, statusAtNorth(project, analysis, "south"), "the stale report changed nothing");
        JsonNode rejections = north.get("/api/v1/federation/rejections?limit=3");
        assertEquals(List.of(401, 409, 401), List.of(rejections.get(0).path("status").asInt(), rejections.get(1).path("status").asInt(),
                rejections.get(2).path("status").asInt()), "expired, replayed, forged (newest first): " + rejections);
        assertTrue(rejections.get(0).path("reason").asText().contains("expired"), rejections.toString());
        assertTrue(rejections.get(1).path("reason").asText().contains("replayed"), rejections.toString());
        assertTrue(rejections.get(2).path("reason").asText().contains("signature does not verify"), rejections.toString());

        // ---- a slow node delays nobody ----------------------------------------------------------------------------
        String cohort3;
        try (Connection lock = FederationStudy.slowDown(south)) {
            cohort3 = addStep(project, "cohort", FederationStudy.COHORT3, "{}");
            awaitAtNorth(project, cohort3, "north", FederationStudy.DONE, 30);
            awaitAtNorth(project, cohort3, "hub", FederationStudy.DONE, 30);
            awaitAtNorth(project, cohort3, "south", "RUNNING", 10); // its query waits on the lock, the others are done
            assertEquals("RUNNING", count(south, "SELECT COUNT(*) FROM fed_execution WHERE step_id = '" + cohort3
                    + "' AND status = 'RUNNING'") == 1 ? "RUNNING" : "not running", "south is still busy");
            // south crashes in the middle of the long query; after the restart it runs the step again from scratch
            south.process.kill();
            lock.commit();
            south.process.start();
            awaitAtNorth(project, cohort3, "south", FederationStudy.DONE, 30);
            assertEquals(2, count(south, "SELECT attempts FROM fed_execution WHERE step_id = '" + cohort3 + "'"),
                    "interrupted by the crash, run again after the restart");
        }

        // ---- results: small cells suppressed, pooled statistics equal the union's ----------------------------------
        FederationStudy.results(north, hub, south, project, variables, analysis, cohort2, cohort3);
    }

    /** Steps of the project in the order this node started them; each must have run exactly once. */
    private static List<String> startOrder(Node n, String project) throws Exception {
        List<String> started = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(n.db.url, "postgres", ""); PreparedStatement q = c.prepareStatement(
                "SELECT step_id, attempts FROM fed_execution WHERE project_id = ? AND node_id = ? ORDER BY started_at")) {
            q.setString(1, project);
            q.setString(2, n.id);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    started.add(rs.getString(1));
                    assertEquals(1, rs.getInt(2), "step " + rs.getString(1) + " ran once on " + n.id);
                }
            }
        }
        return started;
    }

    /** Message types a node received for a project, in the order received. */
    private static List<String> receivedTypes(Node n, String project) throws Exception {
        List<String> types = new ArrayList<>();
        try (Connection c = DriverManager.getConnection(n.db.url, "postgres", ""); PreparedStatement q = c.prepareStatement(
                "SELECT message_type FROM fed_inbox WHERE project_id = ? ORDER BY received_at, message_id")) {
            q.setString(1, project);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    types.add(rs.getString(1));
                }
            }
        }
        return types;
    }

    private static List<String> types(JsonNode outbox) {
        List<String> t = new ArrayList<>();
        outbox.forEach(m -> t.add(m.path("type").asText()));
        return t;
    }

    /** The hub's entry for south pointed at {@code baseUrl} through the hub's operator API (key and auto-accept kept). */
    private static void pointSouthAt(Node hub, Node south, String baseUrl) throws Exception {
        boolean auto = false;
        for (JsonNode n : hub.get("/api/v1/federation/nodes")) {
            if ("south".equals(n.path("nodeId").asText())) {
                auto = n.path("autoAccept").asBoolean();
            }
        }
        HttpResponse<String> r = hub.call("PUT", "/api/v1/federation/nodes/south", "{\"baseUrl\":\"" + baseUrl
                + "\",\"publicKey\":\"" + south.publicKey() + "\",\"autoAccept\":" + auto + "}");
        assertEquals(200, r.statusCode(), r.body());
    }
}
