package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.Test;

import io.quarkus.test.junit.QuarkusTest;
import io.quarkus.test.junit.QuarkusTestProfile;
import io.quarkus.test.junit.TestProfile;
import io.restassured.response.Response;

/**
 * HTTP ingest when the database stalls: the group-commit writer holds one request, one more may wait, and the next
 * is answered at once with 503 {@code ingest-busy} and Retry-After, storing nothing. When the database answers again
 * the held requests are stored and answered 202, and the refused one, sent again, is accepted.
 */
@QuarkusTest
@TestProfile(IngestBusyTest.OneWaiting.class)
class IngestBusyTest {

    public static class OneWaiting implements QuarkusTestProfile {
        @Override
        public Map<String, String> getConfigOverrides() {
            return Map.of("hub.ingest.group-commit.max-events", "1", "hub.ingest.group-commit.max-waiting", "1");
        }
    }

    private static Response post(String id) {
        return given().header("X-Api-Key", "test-his-key").contentType("application/json").body(Events.charge(id, "P1"))
                .post("/api/v1/events");
    }

    @Test
    void aStalledDatabaseFillsTheQueueAndTheNextRequestIsRefusedWith503() throws Exception {
        ExecutorService senders = Executors.newFixedThreadPool(3);
        List<Future<Response>> held = new ArrayList<>();
        try (Connection lock = PostgresResource.connect()) {
            lock.setAutoCommit(false);
            try (Statement s = lock.createStatement()) {
                s.execute("LOCK TABLE hub_event IN EXCLUSIVE MODE"); // the writer's insert waits for this transaction
            }
            held.add(senders.submit(() -> post("busy-1")));
            await("busy-1 in the writer, its insert waiting for the lock", () -> Events.count("SELECT COUNT(*) FROM "
                    + "pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'INSERT INTO hub_event%'") == 1);
            held.add(senders.submit(() -> post("busy-2")));
            await("busy-2 queued behind it", () -> waiting() == 1);

            // answered at once, not held until the database answers (a broken bound would make this time out)
            Response refused = senders.submit(() -> post("busy-3")).get(10, TimeUnit.SECONDS);
            assertEquals(503, refused.statusCode(), refused.asString());
            assertEquals("1", refused.header("Retry-After"));
            assertEquals("ingest-busy", refused.jsonPath().getString("rule"));
            assertTrue(refused.jsonPath().getString("error").contains("nothing of this request was stored"),
                    refused.asString());
            lock.rollback(); // the database answers again
        }
        try {
            for (Future<Response> f : held) {
                Response r = f.get(30, TimeUnit.SECONDS);
                assertEquals(202, r.statusCode(), r.asString());
            }
        } finally {
            senders.shutdownNow();
        }
        assertEquals(2, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('busy-1', 'busy-2')"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'busy-3'"));
        post("busy-3").then().statusCode(202);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'busy-3'"));
    }

    private static void await(String what, java.util.function.BooleanSupplier done) throws InterruptedException {
        long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
        while (!done.getAsBoolean()) {
            if (System.nanoTime() > until) {
                throw new AssertionError("never: " + what);
            }
            Thread.sleep(20);
        }
    }

    /** The ingest's queue as the platform team sees it: the gauge on /q/metrics. */
    private static long waiting() {
        return io.restassured.RestAssured.get("/q/metrics").then().statusCode(200).extract().asString().lines()
                .filter(l -> l.startsWith("hub_ingest_waiting_requests"))
                .mapToLong(l -> (long) Double.parseDouble(l.substring(l.lastIndexOf(' ') + 1))).sum();
    }
}
