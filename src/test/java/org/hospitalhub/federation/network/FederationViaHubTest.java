package org.hospitalhub.federation.network;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.sql.Connection;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.restassured.http.ContentType;

/**
 * An initiator whose messages go through a central hub node ({@code hub.federation.relay-node} is another node,
 * played by the test over real HTTP on 127.0.0.1): the hub passes a node's messages on in the order it stores them, so
 * a study's steps do not travel ahead of the invitation or step before them, as they may on a direct link
 * ({@link FederationNetworkTest}). Sent ahead, a step could be stored by the hub, and passed on, before its invitation.
 */
@QuarkusTest
@TestProfile(FederationViaHubTest.ThroughAHub.class)
@QuarkusTestResource(PostgresResource.class)
class FederationViaHubTest {

    private static final String OPS = "test-ops-key";
    private static final String HUB = "peer-hub";
    private static TestPeer hub;
    private static TestPeer c;

    /** The node of {@link FederationTestProfile}, its messages to other nodes going through {@value #HUB}. */
    public static class ThroughAHub implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            Map<String, String> config = new HashMap<>(new FederationTestProfile().getConfigOverrides());
            config.put("hub.federation.relay-node", HUB);
            return config;
        }
    }

    @BeforeAll
    static void peers() throws Exception {
        int base = Integer.parseInt(System.getenv().getOrDefault("HUB_TEST_PORT", "8081"));
        hub = new TestPeer(HUB, base + 3);
        c = new TestPeer("peer-c", base + 4);
    }

    @AfterAll
    static void stopPeers() {
        hub.close();
        c.close();
    }

    private static void register(TestPeer p) {
        given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                .body("{\"baseUrl\":\"" + p.baseUrl() + "\",\"publicKey\":\"" + p.publicKey() + "\",\"autoAccept\":false}")
                .put("/api/v1/federation/nodes/" + p.nodeId).then().statusCode(200);
    }

    @Test
    void aStepDoesNotOvertakeTheInvitationBeforeItOnItsWayThroughTheCentralHub() throws Exception {
        String key = given().header("X-Api-Key", OPS).get("/api/v1/federation/node").then().statusCode(200)
                .extract().path("publicKey");
        hub.hubKey = NodeKeys.publicKey(key);
        TestPeer.KNOWN.put(FederationTestProfile.NODE, hub.hubKey);
        register(hub);
        register(c);
        CountDownLatch invitationAnswered = new CountDownLatch(1);
        hub.hold = new TestPeer.Hold(Messages.INVITATION, invitationAnswered);
        try {
            String project = given().header("X-Api-Key", OPS).contentType(ContentType.JSON)
                    .body("{\"title\":\"through the hub\",\"invitedNodes\":[\"peer-c\"],\"sharingLevel\":\"aggregate-only\"}")
                    .post("/api/v1/federation/projects").then().statusCode(201).extract().path("projectId");
            await().atMost(Duration.ofSeconds(10)).until(() -> forProject(project).size() == 1); // its answer held
            String s1 = postStep(project, "{\"kind\":\"cohort\",\"definition\":{\"minValue\":1}}");
            String s2 = postStep(project, "{\"kind\":\"variables\",\"definition\":{},\"dependsOn\":{\"cohort\":\"" + s1 + "\"}}");
            // while the hub has not acknowledged the invitation, the steps wait for it
            await("no step reaches the hub before it acknowledges the invitation").during(Duration.ofMillis(1500))
                    .atMost(Duration.ofSeconds(3)).until(() -> forProject(project).size() == 1);
            assertEquals(2L, count("SELECT COUNT(*) FROM fed_outbox WHERE project_id = '" + project
                    + "' AND message_type = 'step' AND status = 'PENDING'"));
            invitationAnswered.countDown();
            await().atMost(Duration.ofSeconds(10)).until(() -> count("SELECT COUNT(*) FROM fed_outbox WHERE project_id = '"
                    + project + "' AND status = 'ACKED'") == 3);
            await().during(Duration.ofMillis(300)).atMost(Duration.ofSeconds(2)).until(() -> forProject(project).size() == 3);
            List<JsonNode> received = forProject(project);
            assertEquals(List.of("invitation", "step", "step"), received.stream().map(m -> m.path("type").asText()).toList());
            assertEquals(List.of(s1, s2), received.stream().skip(1).map(m -> m.path("payload").path("stepId").asText()).toList());
            assertEquals(List.of("peer-c", "peer-c", "peer-c"), received.stream().map(m -> m.path("to").asText()).toList(),
                    "addressed to peer-c, sent to the hub");
        } finally {
            hub.hold = null;
            invitationAnswered.countDown();
        }
    }

    private static String postStep(String project, String body) {
        return given().header("X-Api-Key", OPS).contentType(ContentType.JSON).body(body)
                .post("/api/v1/federation/projects/" + project + "/steps").then().statusCode(201).extract().path("stepId");
    }

    private static List<JsonNode> forProject(String project) {
        return hub.received.stream().filter(m -> m.path("projectId").asText().equals(project)).toList();
    }

    private static long count(String sql) throws SQLException {
        try (Connection conn = PostgresResource.connect(); Statement s = conn.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }
}
