package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.hamcrest.Matchers.hasItems;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.LegacyService;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.restassured.response.Response;

/**
 * The gray switch: a HIS calls the gateway instead of its legacy web service (support/LegacyService) and each caller
 * is served in legacy, shadow or async mode as configured under %test.hub.gray.* (flow t-gray: legacy, canary 50 %,
 * hospital g-legacy pinned to legacy, g-shadow shadow, g-async async, g-all canary 100 %).
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class GraySwitchTest {

    private static final Map<String, String> KEYS = Map.of("his", "test-his-key", "hrp", "test-hrp-key",
            "finance", "test-fin-key");
    private static final String OPS = "test-ops-key";

    @BeforeEach
    void reset() {
        LegacyService.reset();
    }

    static String refund(String eventId, String source, String hospital) {
        return """
                {"eventId":"%s","type":"his.charge.refunded","source":"%s","hospital":"%s","key":"P1",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C-%s","patientId":"P1","amount":3.5,"reason":"duplicate charge"}}
                """.formatted(eventId, source, hospital, eventId);
    }

    private static Response post(String flow, String source, String body) {
        return given().header("X-Api-Key", KEYS.get(source)).contentType("application/json").body(body)
                .post("/api/v1/gateway/" + flow);
    }

    private static long stored(String id) {
        return Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = ?", id);
    }

    /** The value of a counter in /q/metrics with the given labels, 0 when it does not exist yet. */
    private static double metric(String name, String... labels) {
        String text = given().get("/q/metrics").then().statusCode(200).extract().asString();
        for (String line : text.split("\n")) {
            if (!line.startsWith(name + "{")) {
                continue;
            }
            boolean all = true;
            for (String l : labels) {
                all &= line.contains(l);
            }
            if (all) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return 0;
    }

    @Test
    void legacyModeForwardsTheRequestUnchangedAndStoresNothing() {
        String xml = """
                <event xmlns="urn:hospitalhub:event:1">
                  <eventId>gray-leg-1</eventId><type>his.charge.refunded</type><source>his</source>
                  <hospital>g-legacy</hospital><occurredAt>2026-11-22T08:00:00+08:00</occurredAt>
                  <payload><chargeId>C9</chargeId><patientId>P9</patientId><amount>3.50</amount><reason>退费</reason></payload>
                </event>""";
        byte[] bytes = xml.getBytes(StandardCharsets.UTF_8);
        LegacyService.status = 201;
        LegacyService.answer = "<ack><code>0</code><msg>收到</msg></ack>";
        double before = metric("hub_gray_requests_total", "flow=\"t-gray\"", "mode=\"legacy\"");
        Response r = given().header("X-Api-Key", "test-his-key").header("SOAPAction", "urn:refund")
                .contentType("text/xml; charset=UTF-8").body(bytes).post("/api/v1/gateway/t-gray");
        r.then().statusCode(201).header(GatewayResource.MODE_HEADER, "legacy")
                .header("Content-Type", containsString("text/xml"));
        assertEquals("<ack><code>0</code><msg>收到</msg></ack>", new String(r.asByteArray(), StandardCharsets.UTF_8));

        assertEquals(1, LegacyService.CALLS.size());
        LegacyService.Call call = LegacyService.CALLS.get(0);
        assertArrayEquals(bytes, call.body(), "the body reaches the legacy service byte for byte");
        assertEquals("text/xml; charset=UTF-8", call.contentType());
        assertEquals("urn:refund", call.soapAction());
        assertNull(call.apiKey(), "the hub's API key is not passed on");
        assertNull(call.authorization());
        assertEquals(0, stored("gray-leg-1"));
        assertEquals(before + 1, metric("hub_gray_requests_total", "flow=\"t-gray\"", "mode=\"legacy\""));

        // An event the hub would refuse is still the legacy service's business in legacy mode: its answer comes back.
        LegacyService.reset();
        LegacyService.status = 400;
        LegacyService.answer = "{\"code\":\"E17\",\"msg\":\"amount\"}";
        LegacyService.answerType = "application/json";
        post("t-gray", "his", refund("gray-leg-2", "his", "g-legacy").replace("\"amount\":3.5", "\"amount\":\"free\""))
                .then().statusCode(400).header(GatewayResource.MODE_HEADER, "legacy")
                .body(equalTo("{\"code\":\"E17\",\"msg\":\"amount\"}"));
        assertEquals(1, LegacyService.callsWith("gray-leg-2").size());
        assertEquals(0, stored("gray-leg-2"));
    }

    @Test
    void asyncModeStoresAnswers202AndTheFlowDeliversTheEvent() {
        post("t-gray", "his", refund("gray-async-1", "his", "g-async")).then().statusCode(202)
                .header(GatewayResource.MODE_HEADER, "async").body("accepted", hasItems("gray-async-1"));
        assertEquals(0, LegacyService.CALLS.size(), "async mode no longer calls the legacy service");
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'gray-async-1' "
                + "AND received_via = 'gateway'"));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'gray-async-1' AND hospital = 'g-async'") == 1);

        // The same validation as /api/v1/events, plus: the flow must deliver the event.
        post("t-gray", "his", refund("gray-async-2", "his", "g-async").replace("\"amount\":3.5", "\"amount\":\"free\""))
                .then().statusCode(400).body("field", equalTo("payload.amount")).body("rule", equalTo("type"));
        post("t-gray", "his", refund("gray-async-3", "his", "g-async").replace("\"source\":\"his\"", "\"source\":\"hrp\""))
                .then().statusCode(403).body("rule", equalTo("source-is-caller"));
        post("t-gray", "his", Events.charge("gray-async-4", "P1").replace("\"hospital\":\"test\"", "\"hospital\":\"g-async\""))
                .then().statusCode(422).body("rule", equalTo("flow-takes-event"))
                .body("error", containsString("flow t-gray does not deliver events of type his.charge.created"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('gray-async-2', 'gray-async-3', 'gray-async-4')"));
        assertEquals(0, LegacyService.CALLS.size());
    }

    @Test
    void shadowReturnsTheLegacyAnswerStoresTheEventAndCountsLegacyRejections() {
        LegacyService.status = 500;
        LegacyService.answer = "<fault>HRP database unavailable</fault>";
        double before = metric("hub_gray_mismatches_total", "flow=\"t-gray\"", "reason=\"legacy-rejected\"");
        post("t-gray", "his", refund("gray-sh-1", "his", "g-shadow")).then().statusCode(500)
                .header(GatewayResource.MODE_HEADER, "shadow").body(equalTo("<fault>HRP database unavailable</fault>"));
        assertEquals(1, LegacyService.callsWith("gray-sh-1").size());
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'gray-sh-1' "
                + "AND received_via = 'gateway-shadow'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM gray_mismatch WHERE event_id = 'gray-sh-1' AND flow = 't-gray' "
                + "AND reason = 'legacy-rejected' AND legacy_status = 500 AND hub_outcome = 'accepted' "
                + "AND hospital = 'g-shadow' AND source = 'his' AND recorded_at IS NOT NULL"));
        assertEquals(before + 1, metric("hub_gray_mismatches_total", "flow=\"t-gray\"", "reason=\"legacy-rejected\""));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'gray-sh-1'") == 1);

        // Operators read the mismatches for reconciliation; sources may not.
        given().header("X-Api-Key", OPS).get("/api/v1/gateway/t-gray/mismatches?limit=10").then().statusCode(200)
                .body("find { it.eventId == 'gray-sh-1' }.reason", equalTo("legacy-rejected"))
                .body("find { it.eventId == 'gray-sh-1' }.legacyStatus", equalTo(500));
        given().header("X-Api-Key", "test-his-key").get("/api/v1/gateway/t-gray/mismatches").then().statusCode(403);
    }

    @Test
    void shadowCountsAHubRejectionWhenLegacyAcceptsAnInvalidEvent() {
        double before = metric("hub_gray_mismatches_total", "flow=\"t-gray\"", "reason=\"hub-rejected\"");
        post("t-gray", "his", refund("gray-sh-2", "his", "g-shadow").replace("\"amount\":3.5", "\"amount\":\"free\""))
                .then().statusCode(200).header(GatewayResource.MODE_HEADER, "shadow").body(containsString("<code>0</code>"));
        assertEquals(1, LegacyService.callsWith("gray-sh-2").size());
        assertEquals(0, stored("gray-sh-2"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM gray_mismatch WHERE event_id = 'gray-sh-2' "
                + "AND reason = 'hub-rejected' AND legacy_status = 200 AND hub_outcome = 'rejected' "
                + "AND hub_detail LIKE '400 payload.amount (type)%'"));
        assertEquals(before + 1, metric("hub_gray_mismatches_total", "flow=\"t-gray\"", "reason=\"hub-rejected\""));
    }

    @Test
    void shadowWhereBothAgreeRecordsNoMismatch() {
        post("t-gray", "his", refund("gray-sh-3", "his", "g-shadow")).then().statusCode(200)
                .header(GatewayResource.MODE_HEADER, "shadow");
        assertEquals(1, stored("gray-sh-3"));
        LegacyService.status = 422;
        post("t-gray", "his", refund("gray-sh-4", "his", "g-shadow").replace(",\"reason\":\"duplicate charge\"", ""))
                .then().statusCode(422);
        assertEquals(0, stored("gray-sh-4"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM gray_mismatch WHERE event_id IN ('gray-sh-3', 'gray-sh-4')"));
    }

    @Test
    void canaryOfFiftyPercentSplitsCallersDeterministically() {
        Map<String, String> modeOf = new HashMap<>();
        int n = 0;
        for (int h = 1; h <= 10; h++) {
            for (String source : List.of("his", "hrp")) {
                String hospital = "c%02d".formatted(h);
                String caller = hospital + "/" + source;
                String expected = GrayFlow.bucket(hospital, source) < 50 ? "async" : "legacy";
                for (int i = 0; i < 2; i++) {
                    String id = "gray-can-" + (n++);
                    Response r = post("t-gray", source, refund(id, source, hospital));
                    String mode = r.getHeader(GatewayResource.MODE_HEADER);
                    String first = modeOf.putIfAbsent(caller, mode);
                    assertEquals(first == null ? mode : first, mode, caller + " always gets the same mode");
                    assertEquals(expected, mode, caller + " has bucket " + GrayFlow.bucket(hospital, source));
                    if (mode.equals("async")) {
                        assertEquals(202, r.statusCode());
                        assertEquals(1, stored(id));
                        assertEquals(0, LegacyService.callsWith(id).size());
                    } else {
                        assertEquals(200, r.statusCode());
                        assertEquals(0, stored(id));
                        assertEquals(1, LegacyService.callsWith(id).size());
                    }
                }
            }
        }
        long async = modeOf.values().stream().filter("async"::equals).count();
        assertTrue(async >= 5 && async <= 15, "about half of 20 callers moved, was " + async + ": " + modeOf);
    }

    @Test
    void hospitalOverrideWinsOverTheFlowAndItsCanary() {
        assertTrue(GrayFlow.bucket("g-legacy", "hrp") < 50, "precondition: the flow's canary alone would move this caller");
        post("t-gray", "hrp", refund("gray-ovr-1", "hrp", "g-legacy")).then().statusCode(200)
                .header(GatewayResource.MODE_HEADER, "legacy");
        assertEquals(0, stored("gray-ovr-1"));
        // g-all: canary 100 % for every caller of that hospital, whatever their bucket.
        int i = 0;
        for (String source : List.of("his", "hrp", "finance")) {
            String id = "gray-ovr-all-" + (i++);
            post("t-gray", source, refund(id, source, "g-all")).then().statusCode(202)
                    .header(GatewayResource.MODE_HEADER, "async");
            assertEquals(1, stored(id));
        }
        assertEquals(0, LegacyService.callsWith("gray-ovr-all-").size());

        given().header("X-Api-Key", OPS).get("/api/v1/gateway/t-gray/config?hospital=g-legacy&source=hrp").then()
                .statusCode(200).body("mode", equalTo("legacy")).body("canaryPercent", equalTo(50))
                .body("outboxFlowRunning", equalTo(true)).body("hospitals.g-async.mode", equalTo("async"))
                .body("caller.mode", equalTo("legacy")).body("caller.reason", containsString("hospital g-legacy"));
        given().header("X-Api-Key", OPS).get("/api/v1/gateway").then().statusCode(200)
                .body("flow", hasItems("t-gray", "t-gray-down", "t-gray-slow"));
    }

    @Test
    void legacyDownGives502AndASlowLegacyGives504() {
        double before = metric("hub_gray_legacy_failures_total", "flow=\"t-gray-down\"", "reason=\"unreachable\"");
        post("t-gray-down", "his", refund("gray-down-1", "his", "g-legacy")).then().statusCode(502)
                .header(GatewayResource.MODE_HEADER, "legacy").body("rule", equalTo("legacy-unreachable"))
                .body("error", containsString("legacy endpoint of flow t-gray-down (http://127.0.0.1:1/legacy/charges) "
                        + "could not be reached"));
        assertEquals(before + 1, metric("hub_gray_legacy_failures_total", "flow=\"t-gray-down\"", "reason=\"unreachable\""));

        LegacyService.delayMillis = 1500;
        long t0 = System.nanoTime();
        post("t-gray-slow", "his", refund("gray-slow-1", "his", "g-legacy")).then().statusCode(504)
                .body("rule", equalTo("legacy-timeout")).body("error", containsString("did not answer within"));
        long ms = (System.nanoTime() - t0) / 1_000_000;
        assertTrue(ms < 1400, "the gateway gives up after the response timeout (300 ms), took " + ms + " ms");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('gray-down-1', 'gray-slow-1')"));
    }

    @Test
    void unknownFlowIs404AndTheViewsNeedTheOperatorRole() {
        post("no-such-flow", "his", refund("gray-404", "his", "g-legacy")).then().statusCode(404)
                .body("error", containsString("hub.gray.no-such-flow.mode"));
        given().contentType("application/json").body(refund("gray-401", "his", "g-legacy"))
                .post("/api/v1/gateway/t-gray").then().statusCode(401);
        given().header("X-Api-Key", "test-his-key").get("/api/v1/gateway/t-gray/config").then().statusCode(403);
        given().header("X-Api-Key", OPS).get("/api/v1/gateway/no-such-flow/config").then().statusCode(404);
        assertEquals(0, LegacyService.CALLS.size());
    }
}
