package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.hamcrest.Matchers.hasItems;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** HTTP ingest against the real PostgreSQL: what is accepted is stored once; what is refused stores nothing. */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class IngestTest {

    private static final String HIS = "test-his-key";

    private static long stored(String id) {
        return Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = ?", id);
    }

    @Test
    void acceptedEventIsStoredOnceEvenWhenPostedTwice() {
        String ev = Events.charge("ing-dup-1", "P1");
        for (int i = 0; i < 2; i++) {
            given().header("X-Api-Key", HIS).contentType("application/json").body(ev)
                    .post("/api/v1/events").then().statusCode(202).body("accepted", hasItems("ing-dup-1"));
        }
        assertEquals(1, stored("ing-dup-1"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id = ?", "ing-dup-1"));
    }

    @Test
    void concurrentRequestsShareCommitsAndAnEventSentTwiceAtOnceIsStoredOnce() throws Exception {
        // 40 senders post one event each at the same moment; ten of the events are sent by two senders each.
        int senders = 40;
        java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(senders);
        java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
        List<java.util.concurrent.Future<io.restassured.response.Response>> answers = new java.util.ArrayList<>();
        try {
            for (int i = 0; i < senders; i++) {
                String id = "ing-grp-" + (i < 20 ? i % 10 : i);
                answers.add(pool.submit(() -> {
                    go.await();
                    return given().header("X-Api-Key", HIS).contentType("application/json").body(Events.charge(id, "P1"))
                            .post("/api/v1/events");
                }));
            }
            go.countDown();
            int duplicates = 0;
            for (var a : answers) {
                io.restassured.response.Response r = a.get(30, java.util.concurrent.TimeUnit.SECONDS);
                assertEquals(202, r.statusCode(), r.asString());
                duplicates += r.jsonPath().getList("duplicates").size();
            }
            assertEquals(10, duplicates, "each of the ten events sent twice is new for one sender, a duplicate for the other");
        } finally {
            pool.shutdownNow();
        }
        assertEquals(30, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'ing-grp-%'"));
        assertEquals(30, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'ing-grp-%'"));
        // requests stored in one group transaction share its time: fewer commits than requests
        long commits = Events.count("SELECT COUNT(DISTINCT received_at) FROM hub_event WHERE event_id LIKE 'ing-grp-%'");
        assertTrue(commits < 30, "40 requests in " + commits + " commits");
    }

    @Test
    void arrayWithOneBadEventStoresNothing() {
        String body = "[" + Events.charge("ing-arr-1", "P1") + ","
                + Events.charge("ing-arr-2", "P2").replace("\"amount\":12.5", "\"amount\":\"free\"") + "]";
        given().header("X-Api-Key", HIS).contentType("application/json").body(body)
                .post("/api/v1/events").then().statusCode(400)
                .body("field", equalTo("[1].payload.amount")).body("rule", equalTo("type"));
        assertEquals(0, stored("ing-arr-1"));
        assertEquals(0, stored("ing-arr-2"));
    }

    @Test
    void malformedJsonMissingIdWrongTypesAndUnknownTypeAreRefusedClearly() {
        given().header("X-Api-Key", HIS).contentType("application/json").body("{\"eventId\": \"x\",")
                .post("/api/v1/events").then().statusCode(400).body("rule", equalTo("json"))
                .body("error", containsString("malformed JSON"));
        given().header("X-Api-Key", HIS).contentType("application/json")
                .body(Events.charge("ing-x", "P1").replace("\"eventId\":\"ing-x\",", ""))
                .post("/api/v1/events").then().statusCode(400).body("field", equalTo("eventId"))
                .body("rule", equalTo("required"));
        given().header("X-Api-Key", HIS).contentType("application/json")
                .body(Events.charge("ing-y", "P1").replace("\"hospital\":\"test\"", "\"hospital\":7"))
                .post("/api/v1/events").then().statusCode(400).body("field", equalTo("hospital"))
                .body("error", containsString("must be a string"));
        given().header("X-Api-Key", HIS).contentType("application/json")
                .body(Events.charge("ing-z", "P1").replace("his.charge.created", "his.charge.invented"))
                .post("/api/v1/events").then().statusCode(422).body("field", equalTo("type"))
                .body("error", containsString("unknown event type 'his.charge.invented'"));
        given().header("X-Api-Key", HIS).contentType("application/json")
                .body(Events.charge("ing-w", "P1").replace("2026-11-22T08:00:00+08:00", "yesterday"))
                .post("/api/v1/events").then().statusCode(400).body("field", equalTo("occurredAt"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('x', 'ing-x', 'ing-y', 'ing-z', 'ing-w')"));
    }

    @Test
    void hugeBodyGets413() {
        String big = Events.charge("ing-big", "P1")
                .replace("\"department\":\"ICU\"", "\"department\":\"" + "x".repeat(70_000) + "\"");
        given().header("X-Api-Key", HIS).contentType("application/json").body(big)
                .post("/api/v1/events").then().statusCode(413).body("field", equalTo("body"))
                .body("error", containsString("at most 65536 (64K, hub.ingest.max-body-size) are accepted"));
        assertEquals(0, stored("ing-big"));
    }

    @Test
    void aWrongPathMethodOrMediaTypeIsAnsweredInTheApisErrorShape() {
        given().header("X-Api-Key", HIS).contentType("text/plain").body(Events.charge("ing-415", "P1"))
                .post("/api/v1/events").then().statusCode(415).contentType("application/json").body("field", equalTo("Content-Type"))
                .body("error", containsString("is not accepted by POST /api/v1/events; send application/json"));
        given().header("X-Api-Key", HIS).delete("/api/v1/events").then().statusCode(405).contentType("application/json")
                .body("field", equalTo("method")).body("error", containsString("method DELETE is not allowed on /api/v1/events"));
        given().header("X-Api-Key", "test-ops-key").get("/api/v1/no-such-thing").then().statusCode(404).contentType("application/json")
                .body("field", equalTo("path")).body("error", containsString("no resource at GET /api/v1/no-such-thing"));
        given().header("X-Api-Key", "test-ops-key").accept("image/png").get("/api/v1/dead-letters").then().statusCode(406)
                .contentType("application/json").body("field", equalTo("Accept")).body("error", containsString("image/png"));
        assertEquals(0, stored("ing-415"));
    }

    @Test
    void callersMustAuthenticateAndMaySendOnlyAsThemselves() {
        String ev = Events.charge("ing-auth-1", "P1");
        given().contentType("application/json").body(ev).post("/api/v1/events").then().statusCode(401);
        given().header("X-Api-Key", "wrong").contentType("application/json").body(ev).post("/api/v1/events")
                .then().statusCode(401).body("error", equalTo("unknown API key"));
        given().header("X-Api-Key", "test-hrp-key").contentType("application/json").body(ev).post("/api/v1/events")
                .then().statusCode(403).body("field", equalTo("source"));
        assertEquals(0, stored("ing-auth-1"));
    }

    @Test
    void xmlEventIsValidatedAndStored() {
        String xml = """
                <event xmlns="urn:hospitalhub:event:1">
                  <eventId>ing-xml-1</eventId><type>his.charge.refunded</type><source>his</source>
                  <hospital>test</hospital><key>P9</key><occurredAt>2026-11-22T08:00:00+08:00</occurredAt>
                  <payload><chargeId>C9</chargeId><patientId>P9</patientId><amount>3.50</amount><reason>duplicate charge</reason></payload>
                </event>""";
        given().header("X-Api-Key", HIS).contentType("application/xml").body(xml)
                .post("/api/v1/events").then().statusCode(202).body("accepted", hasItems("ing-xml-1"));
        assertEquals(1, stored("ing-xml-1"));
    }

    @Test
    void xmlWithAnExternalEntityIsRefusedAndNothingIsRead() {
        String xxe = """
                <?xml version="1.0"?>
                <!DOCTYPE event [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
                <event xmlns="urn:hospitalhub:event:1">
                  <eventId>ing-xxe-1</eventId><type>his.charge.refunded</type><source>his</source>
                  <hospital>test</hospital><occurredAt>2026-11-22T08:00:00+08:00</occurredAt>
                  <payload><chargeId>C9</chargeId><patientId>&xxe;</patientId><amount>1</amount><reason>r</reason></payload>
                </event>""";
        given().header("X-Api-Key", HIS).contentType("application/xml").body(xxe)
                .post("/api/v1/events").then().statusCode(400)
                .body("error", containsString("DOCTYPE declarations (and so external entities) are not allowed"));
        assertEquals(0, stored("ing-xxe-1"));
    }
}
