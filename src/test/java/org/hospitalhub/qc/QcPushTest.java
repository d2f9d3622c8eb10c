package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.function.Predicate;

import jakarta.inject.Inject;

import org.eclipse.microprofile.config.ConfigProvider;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.vertx.core.Vertx;
import io.vertx.core.http.UpgradeRejectedException;
import io.vertx.core.http.WebSocket;
import io.vertx.core.http.WebSocketClient;
import io.vertx.core.http.WebSocketConnectOptions;

/**
 * WebSocket push of qc task events (/ws/qc/tasks) through a real Vert.x WebSocket client: live events after a posted
 * admission, the missed ones replayed from the cursor after a reconnect, refusals without a valid key or with the
 * wrong role.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class QcPushTest {

    private static final ObjectMapper JSON = new ObjectMapper();

    @Inject
    Vertx vertx;

    private final List<WebSocket> open = new ArrayList<>();
    private WebSocketClient client;

    @AfterEach
    void closeAll() {
        open.forEach(ws -> ws.close());
        if (client != null) {
            client.close();
        }
    }

    private record Conn(WebSocket ws, BlockingQueue<JsonNode> messages) {
    }

    private Conn connect(String query, String headerKey) throws Exception {
        if (client == null) {
            client = vertx.createWebSocketClient();
        }
        int port = ConfigProvider.getConfig().getValue("quarkus.http.test-port", Integer.class);
        WebSocketConnectOptions o = new WebSocketConnectOptions().setHost("127.0.0.1").setPort(port)
                .setURI(TaskPushSocket.PATH + "?" + query);
        if (headerKey != null) {
            o.addHeader("X-Api-Key", headerKey);
        }
        BlockingQueue<JsonNode> q = new LinkedBlockingQueue<>();
        // the handler is set on the event loop as the connection completes: a message the hub sends at once
        // (ready) cannot arrive before it
        WebSocket ws = client.connect(o).onSuccess(w -> w.textMessageHandler(t -> {
            try {
                q.add(JSON.readTree(t));
            } catch (Exception e) {
                throw new IllegalStateException(e);
            }
        })).toCompletionStage().toCompletableFuture()
                .get(10, TimeUnit.SECONDS);
        open.add(ws);
        return new Conn(ws, q);
    }

    /** Messages until one matches (inclusive), failing after 10 s. */
    private static List<JsonNode> until(Conn c, Predicate<JsonNode> last) throws InterruptedException {
        List<JsonNode> out = new ArrayList<>();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(10);
        while (true) {
            JsonNode m = c.messages().poll(Math.max(1, end - System.nanoTime()), TimeUnit.NANOSECONDS);
            assertNotNull(m, "no message matching within 10 s; got " + out);
            out.add(m);
            if (last.test(m)) {
                return out;
            }
        }
    }

    private static Predicate<JsonNode> ready() {
        return m -> m.path("type").asText().equals("ready");
    }

    private static Predicate<JsonNode> event(String kind, String documentType) {
        return m -> m.path("kind").asText().equals(kind) && m.path("documentType").asText().equals(documentType);
    }

    private static QcEvents visit(String name) {
        String v = name + "-" + UUID.randomUUID().toString().substring(0, 8);
        return new QcEvents("qc-push", v, "P-" + v);
    }

    @Test
    void pushesLiveThenReplaysWhatAReconnectingClientMissed() throws Exception {
        String doctor = "DR-P-" + UUID.randomUUID().toString().substring(0, 6);
        QcEvents v = visit("push");
        QcEvents other = visit("other");
        Conn c = connect("doctor=" + doctor, QcEvents.OPS);
        assertEquals("ready", until(c, ready()).get(0).path("type").asText());

        Instant t = Instant.now();
        other.post(other.admission(t, "CARDIO", "DR-SOMEONE-ELSE"));
        v.post(v.admission(t, "CARDIO", doctor));
        List<JsonNode> got = until(c, event("CREATED", "progress-note"));
        Set<String> created = Set.of("admission-record", "first-progress-note", "attending-round-note", "progress-note");
        for (JsonNode m : got) {
            assertEquals("task-event", m.path("type").asText());
            assertEquals(v.visit(), m.path("visitId").asText(), "only this doctor's tasks: " + m);
            assertEquals("CREATED", m.path("kind").asText());
            assertEquals("OPEN", m.path("status").asText());
            assertTrue(created.contains(m.path("documentType").asText()), m.toString());
            assertEquals("/api/v1/qc/tasks/" + m.path("taskId").asLong(), m.path("task").asText());
            assertTrue(m.path("recipients").toString().contains("doctor:" + doctor));
            assertNotNull(Instant.parse(m.path("dueAt").asText()));
        }
        assertEquals(4, got.size(), "four tasks opened by the admission: " + got);
        long cursor = got.get(got.size() - 1).path("id").asLong();
        assertTrue(cursor > got.get(0).path("id").asLong(), "ids grow");

        c.ws().close().toCompletionStage().toCompletableFuture().get(5, TimeUnit.SECONDS);
        // changes while the client is away
        v.post(v.document(t.plusSeconds(60), "admission-record"));
        v.post(v.document(t.plusSeconds(120), "first-progress-note"));

        Conn again = connect("doctor=" + doctor + "&cursor=" + cursor, QcEvents.OPS);
        List<JsonNode> missed = until(again, ready());
        assertEquals(3, missed.size(), "two missed events, then ready: " + missed);
        assertTrue(event("COMPLETED", "admission-record").test(missed.get(0)), missed.get(0).toString());
        assertEquals("COMPLETED_ON_TIME", missed.get(0).path("status").asText());
        assertTrue(event("COMPLETED", "first-progress-note").test(missed.get(1)), missed.get(1).toString());
        assertTrue(missed.get(0).path("id").asLong() > cursor && missed.get(1).path("id").asLong() > missed.get(0).path("id").asLong());
        assertTrue(missed.get(2).path("cursor").asLong() >= missed.get(1).path("id").asLong());

        // then live again
        v.post(v.document(t.plusSeconds(180), "attending-round-note"));
        JsonNode live = until(again, event("COMPLETED", "attending-round-note")).get(0);
        assertTrue(live.path("id").asLong() > missed.get(1).path("id").asLong());
        assertNull(again.messages().poll(300, TimeUnit.MILLISECONDS), "nothing else for this doctor");
    }

    @Test
    void aDepartmentReceivesItsTasksAndTheOnesItIsAskedToAnswer() throws Exception {
        String ward = "W" + UUID.randomUUID().toString().substring(0, 6);
        String consulted = "C" + UUID.randomUUID().toString().substring(0, 6);
        Conn wardTasks = connect("department=" + ward, QcEvents.OPS);
        Conn consultedTasks = connect("department=" + consulted, QcEvents.OPS);
        until(wardTasks, ready());
        until(consultedTasks, ready());
        QcEvents v = visit("dept");
        Instant t = Instant.now();
        v.post(v.admission(t, ward, "DR-W1"), v.event(v.id(), ClinicalEvent.CONSULTATION_REQUESTED, t.plusSeconds(60),
                "consultationId", "C1", "urgency", "emergency", "department", ward, "consultedDepartment", consulted));
        // the consulted department answers the emergency consultation (recipient department:<consultedDepartment>)
        JsonNode consult = until(consultedTasks, event("CREATED", "consultation-record")).get(0);
        assertEquals(consulted, consult.path("department").asText());
        assertEquals("[\"department:" + consulted + "\"]", consult.path("recipients").toString());
        assertNull(consultedTasks.messages().poll(300, TimeUnit.MILLISECONDS), "none of the ward's tasks: ");
        // the ward gets the four tasks of the admission, not the consultation
        List<JsonNode> got = until(wardTasks, event("CREATED", "progress-note"));
        assertEquals(4, got.size(), got.toString());
        got.forEach(m -> assertEquals(ward, m.path("department").asText()));
        assertNull(wardTasks.messages().poll(300, TimeUnit.MILLISECONDS), "not the consulted department's task");
    }

    @Test
    void aDoctorKeyReceivesItsOwnTasksOnlyAndTheKeyMayBeAQueryParameter() throws Exception {
        Conn c = connect("key=test-doctor-key", null);
        until(c, ready());
        QcEvents mine = visit("mine");
        QcEvents theirs = visit("theirs");
        Instant t = Instant.now();
        theirs.post(theirs.admission(t, "ICU", "DR-OTHER"));
        mine.post(mine.admission(t, "ICU", "DR-BOARD"));
        List<JsonNode> got = until(c, event("CREATED", "progress-note"));
        assertEquals(4, got.size(), got.toString());
        got.forEach(m -> assertEquals(mine.visit(), m.path("visitId").asText()));
    }

    @Test
    void refusesWithoutAValidKeyOrTheRightRole() {
        assertEquals(401, refused("doctor=DR-X", null));
        assertEquals(401, refused("doctor=DR-X&key=wrong-key", null));
        assertEquals(403, refused("doctor=DR-X", QcEvents.SOURCE_KEY), "a source system may not subscribe");
        assertEquals(403, refused("doctor=DR-X&key=test-doctor-key", null), "a doctor may not read another doctor's tasks");
        assertEquals(403, refused("department=ICU&key=test-doctor-key", null));
        assertEquals(400, refused("doctor=DR-X&cursor=abc", QcEvents.OPS));
        // a doctor key opens the push only, not the REST API (not even ingest)
        given().header("X-Api-Key", "test-doctor-key").contentType("application/json").body("[]").post("/api/v1/events")
                .then().statusCode(403);
        given().header("X-Api-Key", "test-doctor-key").get("/api/v1/qc/tasks?doctor=DR-BOARD").then().statusCode(403);
    }

    private int refused(String query, String headerKey) {
        ExecutionException e = assertThrows(ExecutionException.class, () -> connect(query, headerKey));
        return assertInstanceOf(UpgradeRejectedException.class, e.getCause(), e.toString()).getStatus();
    }
}
