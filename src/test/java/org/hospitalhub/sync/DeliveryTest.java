package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.hospitalhub.support.TestReceiver;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** Outbox flows to a JDBC staging table and an HTTP API: batching, order, redelivery, dead letters. */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class DeliveryTest {

    @BeforeEach
    void reset() {
        TestReceiver.reset();
    }

    private static void post(String key, String body) {
        given().header("X-Api-Key", key).contentType("application/json").body(body)
                .post("/api/v1/events").then().statusCode(202);
    }

    @Test
    void fullBatchGoesAtOnceAndARemainderAfterTheTimeout() {
        List<String> evs = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            evs.add(Events.charge("dlv-size-" + i, "P" + (i % 2)));
        }
        post("test-his-key", "[" + String.join(",", evs) + "]");
        // 5 (completionSize) leave as one batch; the other 2 after completionTimeout (1.5 s).
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'dlv-size-%'") == 7);
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-size-%' AND status = 'DELIVERED'") == 7);
        List<String> batches = Events.strings("SELECT COUNT(*)::text FROM finance_staging WHERE event_id LIKE 'dlv-size-%' "
                + "GROUP BY loaded_at ORDER BY MIN(event_id)");
        assertEquals(List.of("5", "2"), batches, "one batch by size, one by timeout");
    }

    @Test
    void httpSinkKeepsOrderAndRetriesThenDelivers() {
        TestReceiver.FAIL_NEXT.set(1); // first attempt fails with 503, the immediate retry succeeds
        post("test-fin-key", "[" + Events.voucher("dlv-ord-1") + "," + Events.voucher("dlv-ord-2") + ","
                + Events.voucher("dlv-ord-3") + "]");
        await().atMost(Duration.ofSeconds(10)).until(() -> TestReceiver.BATCHES.size() == 1);
        var batch = TestReceiver.BATCHES.get(0);
        assertEquals(3, batch.size());
        for (int i = 0; i < 3; i++) {
            assertEquals("dlv-ord-" + (i + 1), batch.get(i).get("eventId").asText());
        }
        assertEquals(2, TestReceiver.CALL_TIMES.size());
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-ord-%' AND status = 'DELIVERED'") == 3);
    }

    @Test
    void batchesOfAFlowReachASlowReceiverOneAtATimeInOrder() {
        // t-ledger: batches of 3, polled every 100 ms. The receiver takes 400 ms per batch, so batches complete while the
        // flow's delivery thread is busy: they must wait for it, not run beside it on the polling thread.
        TestReceiver.delayMillis = 400;
        List<String> sent = new ArrayList<>();
        for (int i = 0; i < 18; i++) {
            String id = "dlv-slow-%02d".formatted(i);
            sent.add(id);
            post("test-fin-key", "[" + Events.voucher(id) + "]");
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-slow-%' AND status = 'DELIVERED'") == 18);
        List<String> received = new ArrayList<>();
        TestReceiver.BATCHES.forEach(b -> b.forEach(e -> received.add(e.get("eventId").asText())));
        assertEquals(sent, received, "delivered once each, in the order stored");
        assertEquals(1, TestReceiver.MAX_ACTIVE.get(), "the receiver saw one batch of the flow at a time");
    }

    @Test
    void aBatchPerPollFlowSendsWhatAPollFoundAndLetsItsNextBatchGrowWhileTheLastOneWaits() throws Exception {
        // t-ledger: batchPerPoll, polled every 100 ms, completionTimeout 60 s (never reached). The receiver takes 1.5 s.
        TestReceiver.delayMillis = 1500;
        post("test-fin-key", "[" + Events.voucher("dlv-pp-1") + "]");
        await().atMost(Duration.ofSeconds(10)).until(() -> TestReceiver.CALL_TIMES.size() == 1);
        // batch 1 is in the receiver: the next poll claims 2 alone, and that batch waits for the delivery thread
        post("test-fin-key", "[" + Events.voucher("dlv-pp-2") + "]");
        Thread.sleep(300);
        // while batch 2 waits, the polls claim nothing: 3 and 4 stay in the store and leave together after it
        post("test-fin-key", "[" + Events.voucher("dlv-pp-3") + "]");
        Thread.sleep(300);
        post("test-fin-key", "[" + Events.voucher("dlv-pp-4") + "]");
        await().atMost(Duration.ofSeconds(20)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-pp-%' AND status = 'DELIVERED'") == 4);
        List<List<String>> batches = new ArrayList<>();
        TestReceiver.BATCHES.forEach(b -> {
            List<String> ids = new ArrayList<>();
            b.forEach(e -> ids.add(e.get("eventId").asText()));
            batches.add(ids);
        });
        assertEquals(List.of(List.of("dlv-pp-1"), List.of("dlv-pp-2"), List.of("dlv-pp-3", "dlv-pp-4")), batches);
    }

    @Test
    void persistentFailureIsRetriedOnScheduleThenDeadLetteredWithItsReason() {
        TestReceiver.FAIL_NEXT.set(100);
        TestReceiver.failStatus = 503;
        post("test-fin-key", "[" + Events.voucher("dlv-dead-1") + "," + Events.voucher("dlv-dead-2") + ","
                + Events.voucher("dlv-dead-3") + "]");
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'dlv-dead-%'") == 3);
        // three attempts: at once, immediately again, then after the (test) delay of 1 s
        assertEquals(3, TestReceiver.CALL_TIMES.size());
        long t0 = TestReceiver.CALL_TIMES.get(0);
        long t1 = TestReceiver.CALL_TIMES.get(1);
        long t2 = TestReceiver.CALL_TIMES.get(2);
        assertTrue(t1 - t0 < 900, "second attempt immediate, was " + (t1 - t0) + " ms");
        assertTrue(t2 - t1 >= 900, "third attempt after the delay, was " + (t2 - t1) + " ms");
        assertEquals(3, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'dlv-dead-%' "
                + "AND flow = 't-ledger' AND attempts = 3 AND status = 'OPEN' AND error_message LIKE '%503%'"));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-dead-%' AND status = 'DEAD'"));
        assertEquals(0, TestReceiver.BATCHES.size());
    }

    @Test
    void clientErrorIsNotRetried() {
        TestReceiver.FAIL_NEXT.set(100);
        TestReceiver.failStatus = 400;
        post("test-fin-key", Events.voucher("dlv-400-1"));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id = 'dlv-400-1'") == 1);
        assertEquals(1, TestReceiver.CALL_TIMES.size(), "HTTP 400 goes to the dead-letter channel at once");
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'dlv-400-1' AND attempts = 1 "
                + "AND error_message LIKE '%400%'"));
    }

    @Test
    void sinkThatCanNeverWorkDeadLettersAtOnce() {
        post("test-hrp-key", "[" + Events.stockIssued("dlv-broken-1") + "," + Events.stockIssued("dlv-broken-2") + "]");
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'dlv-broken-%' AND flow = 't-broken'") == 2);
        assertEquals(2, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'dlv-broken-%' "
                + "AND error_message LIKE '%no_such_staging_table%'"));
    }

    @Test
    void anEventCommittedAfterALaterOneIsDeliveredWithoutWaitingForTheRescan() throws Exception {
        post("test-his-key", "[" + Events.charge("dlv-late-a", "P1") + "]");
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'dlv-late-a'") == 1);
        try (Connection slow = PostgresResource.connect()) {
            // an ingest transaction that takes its row ids first and commits last
            slow.setAutoCommit(false);
            try (PreparedStatement ev = slow.prepareStatement("INSERT INTO hub_event (event_id, event_type, source, hospital, "
                    + "event_key, occurred_at, envelope, received_via, received_at) SELECT 'dlv-late-b', event_type, source, "
                    + "hospital, event_key, occurred_at, REPLACE(envelope, 'dlv-late-a', 'dlv-late-b'), received_via, now() "
                    + "FROM hub_event WHERE event_id = 'dlv-late-a'");
                    PreparedStatement dl = slow.prepareStatement("INSERT INTO hub_delivery (event_id, flow, status, created_at) "
                            + "SELECT 'dlv-late-b', flow, 'PENDING', now() FROM hub_delivery WHERE event_id = 'dlv-late-a'")) {
                assertEquals(1, ev.executeUpdate());
                assertTrue(dl.executeUpdate() >= 1);
            }
            post("test-his-key", "[" + Events.charge("dlv-late-c", "P1") + "]");
            await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                    "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'dlv-late-c'") == 1);
            assertTrue(Events.count("SELECT MIN(id) FROM hub_delivery WHERE event_id = 'dlv-late-c'")
                    > Events.count("SELECT MAX(id) FROM hub_delivery WHERE event_id = 'dlv-late-b'"),
                    "the late row lies behind the cursor, which passed dlv-late-c");
            slow.commit();
        }
        // picked up by the late-commit check (every 200 ms over the last 5 s), long before the 30 s rescan
        await().atMost(Duration.ofSeconds(6)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'dlv-late-b'") == 1);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'dlv-late-%' AND status <> 'DELIVERED'"));
    }
}
