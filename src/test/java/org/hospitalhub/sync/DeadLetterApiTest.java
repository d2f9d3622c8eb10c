package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.hamcrest.Matchers.hasSize;
import static org.hamcrest.Matchers.notNullValue;
import static org.hamcrest.Matchers.nullValue;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import jakarta.inject.Inject;

import org.apache.camel.Exchange;
import org.apache.camel.ProducerTemplate;
import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.InvalidEventException;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.hospitalhub.support.TestReceiver;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.restassured.path.json.JsonPath;
import io.restassured.specification.RequestSpecification;

/**
 * The dead-letter REST API: see a parked message with its reason, filter and page the list, replay it once (outbox
 * flows and directly fed flows), refuse to replay what cannot or must not be, discard with a reason, operators only.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class DeadLetterApiTest {

    private static final String API = "/api/v1/dead-letters";
    private static final String OPS = "test-ops-key";

    @Inject
    ProducerTemplate producer;

    @Inject
    EventParser parser;

    @BeforeEach
    void reset() {
        TestReceiver.reset();
    }

    private static RequestSpecification ops() {
        return given().header("X-Api-Key", OPS);
    }

    private static long letterId(String eventId) {
        return Events.count("SELECT MAX(id) FROM dead_letter WHERE event_id = ?", eventId);
    }

    private static long delivered(String eventId) {
        return TestReceiver.BATCHES.stream().flatMap(b -> {
            List<String> ids = new ArrayList<>();
            b.forEach(e -> ids.add(e.get("eventId").asText()));
            return ids.stream();
        }).filter(eventId::equals).count();
    }

    /** An HTTP-sink dead letter on outbox flow t-ledger: the receiver refuses the first call with 400. */
    private long refusedVoucher(String eventId) {
        TestReceiver.failStatus = 400;
        TestReceiver.FAIL_NEXT.set(1);
        given().header("X-Api-Key", "test-fin-key").contentType("application/json").body(Events.voucher(eventId))
                .post("/api/v1/events").then().statusCode(202);
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id = ? AND status = 'OPEN'", eventId) == 1);
        assertEquals(0, TestReceiver.FAIL_NEXT.get(), "the receiver has recovered");
        return letterId(eventId);
    }

    /** Parks a message through the hub's own dead-letter route, as a Kafka-fed flow does. */
    private void park(String flow, Object body, List<Event> batch, Exception error) {
        Exchange ex = producer.send("direct:hub-dead-letter", e -> {
            e.setProperty("HubFlow", flow);
            if (batch != null) {
                e.setProperty("HubBatch", batch);
            }
            e.getMessage().setBody(body);
            e.setProperty(Exchange.EXCEPTION_CAUGHT, error);
        });
        assertNull(ex.getException(), "dead-letter store");
    }

    private long parkEvent(String flow, String envelope, String error) {
        Event e = parser.parseOne(envelope);
        park(flow, List.of(e), List.of(e), new IllegalStateException(error));
        return letterId(e.eventId());
    }

    private static double openGauge(String flow) {
        String text = given().get("/q/metrics").then().statusCode(200).extract().asString();
        Matcher m = Pattern.compile("^hub_delivery_dead_letters_open\\{flow=\"" + Pattern.quote(flow) + "\"[^}]*} (\\S+)$",
                Pattern.MULTILINE).matcher(text);
        assertTrue(m.find(), "gauge hub_delivery_dead_letters_open for " + flow);
        return Double.parseDouble(m.group(1));
    }

    private static long openInDb(String flow) {
        return Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = ? AND status = 'OPEN'", flow);
    }

    @Test
    void onlyOperatorsMaySeeOrTouchDeadLetters() {
        given().get(API).then().statusCode(401).body("error", containsString("missing API key"));
        given().header("X-Api-Key", "test-his-key").get(API).then().statusCode(403)
                .body("error", containsString("operator"));
        given().header("X-Api-Key", "test-his-key").post(API + "/1/replay").then().statusCode(403);
        given().header("X-Api-Key", "test-his-key").contentType("application/json").body("{\"reason\":\"x\"}")
                .post(API + "/1/discard").then().statusCode(403);
        given().header("Authorization", "Bearer " + OPS).get(API).then().statusCode(200);
    }

    @Test
    void refusedBatchIsListedShownThenReplayedExactlyOnce() {
        long id = refusedVoucher("dlq-http-1");

        JsonPath list = ops().queryParam("flow", "t-ledger").queryParam("error", "STATUSCODE: 400").queryParam("status", "open")
                .get(API).then().statusCode(200).extract().jsonPath();
        assertTrue(list.getLong("total") >= 1);
        List<Long> ids = list.getList("items.id", Long.class);
        assertTrue(ids.contains(id), "letter " + id + " in " + ids);
        int at = ids.indexOf(id);
        assertEquals("dlq-http-1", list.getString("items[" + at + "].eventId"));
        assertEquals("finance.voucher.posted", list.getString("items[" + at + "].type"));
        assertTrue(list.getString("items[" + at + "].errorMessage").contains("statusCode: 400"));
        assertTrue(list.getString("items[" + at + "].payloadPreview").length() <= 201, "list payload is cut short");

        ops().get(API + "/" + id).then().statusCode(200)
                .body("eventId", equalTo("dlq-http-1")).body("flow", equalTo("t-ledger"))
                .body("status", equalTo("OPEN")).body("attempts", equalTo(1))
                .body("errorClass", equalTo("org.apache.camel.http.base.HttpOperationFailedException"))
                .body("errorMessage", containsString("statusCode: 400"))
                .body("payload", containsString("\"voucherId\":\"dlq-http-1\""))
                .body("headers", notNullValue()).body("firstFailedAt", notNullValue())
                .body("lastFailedAt", notNullValue()).body("resolution", nullValue());
        assertEquals(0, delivered("dlq-http-1"));
        assertEquals(openInDb("t-ledger"), (long) openGauge("t-ledger"), "open gauge before the replay");

        ops().contentType("application/json").body("{\"reason\":\"ledger API fixed\"}").post(API + "/" + id + "/replay")
                .then().statusCode(200).body("outcome", equalTo("REQUEUED")).body("detail", containsString("reopened"));
        await().atMost(Duration.ofSeconds(10)).until(() -> delivered("dlq-http-1") == 1);
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id = 'dlq-http-1' AND status = 'DELIVERED'") == 1);
        ops().get(API + "/" + id).then().statusCode(200).body("status", equalTo("REPLAYED"))
                .body("replayCount", equalTo(1)).body("resolution.by", equalTo("ops"))
                .body("resolution.reason", equalTo("ledger API fixed")).body("resolution.at", notNullValue());
        assertEquals(openInDb("t-ledger"), (long) openGauge("t-ledger"), "open gauge after the replay");

        ops().post(API + "/" + id + "/replay").then().statusCode(409)
                .body("error", containsString("already REPLAYED by ops"));
        await().during(Duration.ofMillis(1500)).atMost(Duration.ofSeconds(3)).until(() -> delivered("dlq-http-1") == 1);
        ops().queryParam("flow", "t-ledger").queryParam("status", "REPLAYED").get(API).then().statusCode(200)
                .body("items.id", org.hamcrest.Matchers.hasItem((int) id));
    }

    @Test
    void concurrentReplaysOfAnOutboxLetterDeliverOnce() throws Exception {
        long id = refusedVoucher("dlq-race-1");
        List<Integer> statuses = replayConcurrently(id);
        assertEquals(List.of(200, 409), statuses);
        await().atMost(Duration.ofSeconds(10)).until(() -> delivered("dlq-race-1") == 1);
        await().during(Duration.ofMillis(1500)).atMost(Duration.ofSeconds(3)).until(() -> delivered("dlq-race-1") == 1);
    }

    private static List<Integer> replayConcurrently(long id) throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(2);
        try {
            CountDownLatch start = new CountDownLatch(1);
            Callable<Integer> call = () -> {
                start.await();
                return ops().post(API + "/" + id + "/replay").then().extract().statusCode();
            };
            Future<Integer> a = pool.submit(call);
            Future<Integer> b = pool.submit(call);
            start.countDown();
            List<Integer> statuses = new ArrayList<>(List.of(a.get(), b.get()));
            statuses.sort(null);
            return statuses;
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void letterOfADirectlyFedFlowIsDeliveredToItsSinkOnceEvenWhenReplayedTwiceAtOnce() throws Exception {
        long id = parkEvent("t-dlq-direct", Events.stockIssued("dlq-direct-1"), "broker said no");
        ops().get(API + "/" + id).then().statusCode(200).body("type", equalTo("hrp.stock.issued"))
                .body("errorMessage", equalTo("broker said no"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id = 'dlq-direct-1'"), "no outbox row");

        assertEquals(List.of(200, 409), replayConcurrently(id));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id = 'dlq-direct-1'"));
        ops().get(API + "/" + id).then().statusCode(200).body("status", equalTo("REPLAYED"))
                .body("resolution.outcome", containsString("direct:deliver-t-dlq-direct"));
        ops().post(API + "/" + id + "/replay").then().statusCode(409);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id = 'dlq-direct-1'"));
        assertEquals(openInDb("t-dlq-direct"), (long) openGauge("t-dlq-direct"));
    }

    @Test
    void letterOfAnOutboxFlowWithoutOutboxRowIsStoredAndQueued() {
        long id = parkEvent("t-finance", Events.charge("dlq-noq-1", "P9"), "parked elsewhere");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'dlq-noq-1'"));
        ops().post(API + "/" + id + "/replay").then().statusCode(200).body("outcome", equalTo("REQUEUED"))
                .body("detail", containsString("stored and queued"));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'dlq-noq-1'") == 1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'dlq-noq-1' AND received_via = 'replay'"));
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id = 'dlq-noq-1' AND flow = 't-finance' AND status = 'DELIVERED'") == 1);
    }

    @Test
    void replayThatFailsAgainLeavesTheLetterOpenWithTheNewError() {
        long id = parkEvent("t-dlq-broken", Events.stockIssued("dlq-again-1"), "first failure");
        ops().post(API + "/" + id + "/replay").then().statusCode(502)
                .body("error", containsString("no_such_dlq_table")).body("error", containsString("stays OPEN"));
        ops().get(API + "/" + id).then().statusCode(200).body("status", equalTo("OPEN"))
                .body("attempts", equalTo(2)).body("replayCount", equalTo(1))
                .body("errorMessage", containsString("no_such_dlq_table")).body("resolution", nullValue());
        assertEquals(openInDb("t-dlq-broken"), (long) openGauge("t-dlq-broken"));
    }

    @Test
    void invalidMessageCannotBeReplayedAndIsDiscardedOnlyWithAReason() {
        park("t-dlq-direct", "{\"eventId\": \"dlq-raw-1\", broken", null,
                new InvalidEventException("", "json", "malformed JSON at line 1, column 24"));
        long id = Events.count("SELECT MAX(id) FROM dead_letter WHERE payload LIKE '%dlq-raw-1%'");
        ops().get(API + "/" + id).then().statusCode(200).body("type", nullValue())
                .body("errorClass", equalTo(InvalidEventException.class.getName()));

        ops().post(API + "/" + id + "/replay").then().statusCode(422)
                .body("error", containsString("not a valid event")).body("error", containsString("malformed JSON"));
        ops().get(API + "/" + id).then().body("status", equalTo("OPEN"));

        ops().post(API + "/" + id + "/discard").then().statusCode(400).body("field", equalTo("reason"))
                .body("rule", equalTo("required"));
        ops().contentType("application/json").body("{\"reason\": \"  \"}").post(API + "/" + id + "/discard")
                .then().statusCode(400).body("field", equalTo("reason"));
        ops().contentType("application/json").body("{\"reason\": 7}").post(API + "/" + id + "/discard")
                .then().statusCode(400).body("field", equalTo("reason")).body("rule", equalTo("type"));
        ops().get(API + "/" + id).then().body("status", equalTo("OPEN"));

        double before = openGauge("t-dlq-direct");
        ops().contentType("application/json").body("{\"reason\": \"garbage from a test producer\"}")
                .post(API + "/" + id + "/discard").then().statusCode(200).body("status", equalTo("DISCARDED"))
                .body("resolution.by", equalTo("ops")).body("resolution.reason", equalTo("garbage from a test producer"))
                .body("resolution.at", notNullValue()).body("payload", containsString("dlq-raw-1"));
        assertEquals(before - 1, openGauge("t-dlq-direct"));
        assertEquals(openInDb("t-dlq-direct"), (long) openGauge("t-dlq-direct"));

        ops().contentType("application/json").body("{\"reason\": \"again\"}").post(API + "/" + id + "/discard")
                .then().statusCode(409).body("error", containsString("already DISCARDED"));
        ops().post(API + "/" + id + "/replay").then().statusCode(409).body("error", containsString("already DISCARDED"));
    }

    @Test
    void listFiltersAndPages() {
        for (int i = 1; i <= 5; i++) {
            String envelope = i <= 3 ? Events.stockIssued("dlq-page-" + i) : Events.charge("dlq-page-" + i, "P1");
            parkEvent("t-dlq-page", envelope, i % 2 == 0 ? "Timeout talking to HRP" : "Refused by HRP");
        }
        List<Long> all = ops().queryParam("flow", "t-dlq-page").get(API).then().statusCode(200)
                .body("total", equalTo(5)).body("items", hasSize(5)).extract().jsonPath().getList("items.id", Long.class);
        List<Long> sorted = new ArrayList<>(all);
        sorted.sort(java.util.Comparator.reverseOrder());
        assertEquals(sorted, all, "newest first");

        JsonPath p1 = ops().queryParam("flow", "t-dlq-page").queryParam("limit", 2).get(API).then().statusCode(200)
                .body("total", equalTo(5)).body("items", hasSize(2)).extract().jsonPath();
        assertEquals(all.subList(0, 2), p1.getList("items.id", Long.class));
        long cursor = p1.getLong("nextCursor");
        JsonPath p2 = ops().queryParam("flow", "t-dlq-page").queryParam("limit", 2).queryParam("cursor", cursor)
                .get(API).then().statusCode(200).extract().jsonPath();
        assertEquals(all.subList(2, 4), p2.getList("items.id", Long.class));
        ops().queryParam("flow", "t-dlq-page").queryParam("limit", 2).queryParam("offset", 4).get(API).then()
                .statusCode(200).body("items", hasSize(1)).body("items[0].id", equalTo(all.get(4).intValue()))
                .body("nextCursor", nullValue());

        ops().queryParam("flow", "t-dlq-page").queryParam("type", "his.charge.created").get(API).then()
                .body("total", equalTo(2));
        ops().queryParam("flow", "t-dlq-page").queryParam("error", "timeout").get(API).then().body("total", equalTo(2));
        ops().queryParam("flow", "t-dlq-page").queryParam("error", "IllegalState").get(API).then().body("total", equalTo(5));
        ops().queryParam("flow", "t-dlq-page").queryParam("error", "%").get(API).then().body("total", equalTo(0));
        ops().queryParam("flow", "t-dlq-page").queryParam("status", "DISCARDED").get(API).then().body("total", equalTo(0));
        Instant now = Instant.now();
        ops().queryParam("flow", "t-dlq-page").queryParam("from", now.minusSeconds(3600).toString())
                .queryParam("to", now.plusSeconds(3600).toString()).get(API).then().body("total", equalTo(5));
        ops().queryParam("flow", "t-dlq-page").queryParam("from", now.plusSeconds(3600).toString()).get(API).then()
                .body("total", equalTo(0));
        ops().queryParam("flow", "t-dlq-page").queryParam("to", "2020-01-01T00:00:00+08:00").get(API).then()
                .body("total", equalTo(0));
    }

    @Test
    void badParametersAreRefusedNamingThem() {
        ops().queryParam("from", "not-a-date").get(API).then().statusCode(400).body("field", equalTo("from"))
                .body("error", containsString("ISO-8601"));
        ops().queryParam("limit", -1).get(API).then().statusCode(400).body("field", equalTo("limit"));
        ops().queryParam("limit", 501).get(API).then().statusCode(400).body("field", equalTo("limit"))
                .body("error", containsString("1 to 500"));
        ops().queryParam("limit", "ten").get(API).then().statusCode(400).body("field", equalTo("limit"));
        ops().queryParam("status", "LOST").get(API).then().statusCode(400).body("field", equalTo("status"));
        ops().queryParam("offset", 2).queryParam("cursor", 9).get(API).then().statusCode(400).body("field", equalTo("cursor"));
        ops().queryParam("from", "2026-11-22T10:00:00Z").queryParam("to", "2026-11-22T09:00:00Z").get(API).then()
                .statusCode(400).body("field", equalTo("to"));
        ops().queryParam("flw", "t-ledger").get(API).then().statusCode(400).body("field", equalTo("flw"))
                .body("error", containsString("unknown parameter"));
        ops().get(API + "/abc").then().statusCode(400).body("field", equalTo("id"));
        ops().get(API + "/999999999").then().statusCode(404);
        ops().post(API + "/999999999/replay").then().statusCode(404);
        ops().contentType("application/json").body("{\"reason\":\"x\"}").post(API + "/999999999/discard").then().statusCode(404);
    }

    @Test
    void filteredReplayNeedsAFilterAndReplaysTheMatchingOpenLetters() {
        ops().post(API + "/replay").then().statusCode(400).body("field", equalTo("all"));
        ops().queryParam("all", "yes").post(API + "/replay").then().statusCode(400).body("field", equalTo("all"));
        ops().queryParam("flow", "t-dlq-direct").queryParam("status", "REPLAYED").post(API + "/replay").then()
                .statusCode(400).body("field", equalTo("status"));
        ops().queryParam("flow", "t-dlq-direct").queryParam("tpye", "x").post(API + "/replay").then()
                .statusCode(400).body("field", equalTo("tpye"));

        for (int i = 1; i <= 3; i++) {
            parkEvent("t-dlq-direct", Events.stockIssued("dlq-bulk-" + i), "bulk-marker outage");
        }
        park("t-dlq-direct", "not an event (bulk-marker)", null, new IllegalStateException("bulk-marker garbage"));

        JsonPath first = ops().queryParam("flow", "t-dlq-direct").queryParam("error", "bulk-marker").queryParam("limit", 2)
                .post(API + "/replay").then().statusCode(200).extract().jsonPath();
        assertEquals(4, first.getInt("matched"));
        assertEquals(2, first.getInt("processed"));
        assertEquals(2, first.getInt("remaining"));
        assertEquals(2, first.getInt("outcomes.DELIVERED"));

        JsonPath second = ops().queryParam("flow", "t-dlq-direct").queryParam("error", "bulk-marker")
                .post(API + "/replay").then().statusCode(200).extract().jsonPath();
        assertEquals(2, second.getInt("matched"));
        assertEquals(1, second.getInt("outcomes.DELIVERED"));
        assertEquals(1, second.getInt("outcomes.NOT_REPLAYABLE"));
        assertEquals(0, second.getInt("remaining"));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'dlq-bulk-%'"));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'dlq-bulk-%' "
                + "AND status = 'REPLAYED' AND resolved_by = 'ops'"));

        // Only the invalid one is left open; replaying the set again changes nothing.
        ops().queryParam("flow", "t-dlq-direct").queryParam("error", "bulk-marker").post(API + "/replay").then()
                .statusCode(200).body("matched", equalTo(1)).body("outcomes.NOT_REPLAYABLE", equalTo(1));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'dlq-bulk-%'"));
    }
}
