package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.sql.Connection;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.hospitalhub.support.RabbitMqResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageDeliveryMode;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

import com.fasterxml.jackson.databind.ObjectMapper;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * RabbitMQ transport against the real broker and PostgreSQL: ingest (store before ack, dead letters, allowed
 * sources), the sink (confirms, message id, routing key, order), and a broker outage.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
@QuarkusTestResource(RabbitMqResource.class)
class RabbitMqTest {

    private static final ObjectMapper MAPPER = new ObjectMapper();
    private static CachingConnectionFactory client;
    private static RabbitTemplate rabbit;

    @BeforeAll
    static void connect() {
        client = RabbitMqResource.connectionFactory();
        rabbit = new RabbitTemplate(client);
    }

    @AfterAll
    static void disconnect() {
        client.destroy();
    }

    /** Publishes as a source system would: to the ingest exchange, JSON, persistent. */
    private static void publish(String body) {
        MessageProperties p = new MessageProperties();
        p.setContentType("application/json");
        p.setDeliveryMode(MessageDeliveryMode.PERSISTENT);
        rabbit.send(RabbitMqResource.INGEST_EXCHANGE, RabbitMqResource.INGEST_QUEUE,
                new Message(body.getBytes(StandardCharsets.UTF_8), p));
    }

    private static void postEvents(String apiKey, String body) {
        given().header("X-Api-Key", apiKey).contentType("application/json").body(body)
                .post("/api/v1/events").then().statusCode(202);
    }

    static String refund(String eventId, String key) {
        return """
                {"eventId":"%s","type":"his.charge.refunded","source":"his","hospital":"rmq","key":"%s",
                 "occurredAt":"2026-11-22T09:00:00+08:00",
                 "payload":{"chargeId":"C-%s","patientId":"P1","amount":3.5,"reason":"duplicate charge"}}
                """.formatted(eventId, key, eventId);
    }

    static String stockReceived(String eventId) {
        return """
                {"eventId":"%s","type":"hrp.stock.received","source":"hrp","hospital":"rmq","key":"M9",
                 "occurredAt":"2026-11-22T09:00:00+08:00",
                 "payload":{"receiptId":"%s","materialId":"M9","warehouse":"W1","supplier":"S1","quantity":4,"unit":"box"}}
                """.formatted(eventId, eventId);
    }

    private static long stored(String likeId) {
        return Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE ?", likeId);
    }

    /** Receives everything on a queue until it stays empty for a moment, or n messages. */
    private static List<Message> receive(String queue, int n) {
        List<Message> got = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 15_000;
        while (got.size() < n && System.currentTimeMillis() < deadline) {
            Message m = rabbit.receive(queue, 1000);
            if (m != null) {
                got.add(m);
            }
        }
        return got;
    }

    private static String eventIdOf(Message m) throws Exception {
        return MAPPER.readTree(new String(m.getBody(), StandardCharsets.UTF_8)).get("eventId").asText();
    }

    @Test
    void ingestStoresEachEventOnceBeforeTheAckAndAnOutboxFlowDeliversIt() {
        publish("[" + Events.charge("rmq-in-1", "P1") + "," + Events.charge("rmq-in-2", "P2") + "]");
        publish(Events.charge("rmq-in-3", "P1"));
        publish(Events.charge("rmq-in-1", "P1")); // the same event again

        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'rmq-in-%'") == 3);
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id LIKE 'rmq-in-%' "
                + "AND received_via = 'rabbitmq'"));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'rmq-in-%' AND flow = 't-finance'"));
        await().atMost(Duration.ofSeconds(10)).until(() -> RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 0);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM dead_letter WHERE payload LIKE '%rmq-in-%'"));
    }

    @Test
    void invalidMessagesAndForeignSourcesAreDeadLetteredOnceAndAcked() {
        publish("{\"eventId\":\"rmq-bad-json\",");
        publish(Events.charge("rmq-bad-schema", "P1").replace("\"amount\":12.5", "\"amount\":\"free\""));
        publish(Events.charge("rmq-bad-type", "P1").replace("his.charge.created", "his.charge.teleported"));
        publish(stockReceived("rmq-bad-source")); // valid, but source hrp may not publish on this queue

        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-rabbit-in' AND payload LIKE '%rmq-bad-%'") == 4);
        Map<String, String> reasons = new LinkedHashMap<>();
        for (String id : List.of("rmq-bad-json", "rmq-bad-schema", "rmq-bad-type", "rmq-bad-source")) {
            List<String> r = Events.strings("SELECT error_message FROM dead_letter WHERE flow = 't-rabbit-in' "
                    + "AND payload LIKE ?", "%" + id + "%");
            assertEquals(1, r.size(), id);
            reasons.put(id, r.get(0));
        }
        assertTrue(reasons.get("rmq-bad-json").contains("malformed JSON"), reasons.toString());
        assertTrue(reasons.get("rmq-bad-schema").contains("payload.amount"), reasons.toString());
        assertTrue(reasons.get("rmq-bad-type").contains("unknown event type 'his.charge.teleported'"), reasons.toString());
        assertTrue(reasons.get("rmq-bad-source").contains("source 'hrp' may not send"), reasons.toString());
        assertEquals(List.of("rmq-bad-source"), Events.strings(
                "SELECT event_id FROM dead_letter WHERE flow = 't-rabbit-in' AND payload LIKE '%rmq-bad-source%'"));
        // acked, not looping: the queue drains and no further dead letters appear
        await().atMost(Duration.ofSeconds(10)).until(() -> RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 0);
        await().during(Duration.ofSeconds(1)).atMost(Duration.ofSeconds(2)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-rabbit-in' AND payload LIKE '%rmq-bad-%'") == 4);
        assertEquals(0, stored("rmq-bad-%"));
    }

    @Test
    void messageWhoseStoreFailsStaysOnTheQueueUntilTheStoreWorks() throws Exception {
        // The hub's database refuses this one event (a real failed INSERT, as with a database outage).
        sql("ALTER TABLE hub_event ADD CONSTRAINT hh_test_hold CHECK (event_id NOT LIKE 'rmq-hold-%')");
        try {
            publish(Events.charge("rmq-hold-1", "P7"));
            // retried and requeued, never acked, never dead-lettered
            // (rabbitmqctl takes a second or more per call on a loaded machine: generous bound around the 2 s window)
            await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(12)).until(() ->
                    RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 1 && stored("rmq-hold-%") == 0
                            && Events.count("SELECT COUNT(*) FROM dead_letter WHERE payload LIKE '%rmq-hold-%'") == 0);
        } finally {
            sql("ALTER TABLE hub_event DROP CONSTRAINT IF EXISTS hh_test_hold");
        }
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'rmq-hold-1'") == 1);
        assertEquals(1, stored("rmq-hold-%"));
        await().atMost(Duration.ofSeconds(10)).until(() -> RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 0);
    }

    @Test
    void invalidMessageStaysOnTheQueueWhileTheDeadLetterStoreFails() throws Exception {
        sql("ALTER TABLE dead_letter ADD CONSTRAINT hh_test_dl_hold CHECK (payload NOT LIKE '%rmq-dlfail-%')");
        try {
            publish(Events.charge("rmq-dlfail-1", "P1").replace("\"amount\":12.5", "\"amount\":-1"));
            await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(12)).until(() ->
                    RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 1
                            && Events.count("SELECT COUNT(*) FROM dead_letter WHERE payload LIKE '%rmq-dlfail-%'") == 0);
            // the failing dead-letter store is visible: readiness DOWN naming it, and the failure metric
            given().get("/q/health/ready").then().statusCode(503)
                    .body("checks.find { it.name == 'hub-delivery' }.data.'dead-letter-store'", containsString("DOWN"));
            given().get("/q/metrics").then().body(containsString("hub_delivery_dead_letter_store_failures_total"));
        } finally {
            sql("ALTER TABLE dead_letter DROP CONSTRAINT IF EXISTS hh_test_dl_hold");
        }
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count("SELECT COUNT(*) FROM dead_letter "
                + "WHERE flow = 't-rabbit-in' AND payload LIKE '%rmq-dlfail-1%' AND error_message LIKE '%payload.amount%'") == 1);
        await().atMost(Duration.ofSeconds(10)).until(() -> RabbitMqResource.depth(RabbitMqResource.INGEST_QUEUE) == 0);
        assertEquals(0, stored("rmq-dlfail-%"));
    }

    @Test
    void sinkPublishesEachEventConfirmedWithItsIdKeyAndRoutingKeyInOrderPerKey() throws Exception {
        String[] keys = { "O1", "O2", "O1", "O1", "O2" };
        List<String> evs = new ArrayList<>();
        for (int i = 0; i < keys.length; i++) {
            evs.add(refund("rmq-out-" + (i + 1), keys[i]));
        }
        postEvents("test-his-key", "[" + String.join(",", evs) + "]");

        List<Message> got = receive(RabbitMqResource.ORDER_QUEUE, 5);
        assertEquals(5, got.size());
        Map<String, List<String>> perKey = new LinkedHashMap<>();
        for (Message m : got) {
            MessageProperties p = m.getMessageProperties();
            String id = eventIdOf(m);
            assertEquals(id, p.getMessageId());
            String key = (String) p.getHeaders().get("hub-key");
            assertNotNull(key, "hub-key header");
            assertEquals("his.charge.refunded." + key, p.getReceivedRoutingKey());
            assertEquals(MessageDeliveryMode.PERSISTENT, p.getReceivedDeliveryMode());
            assertEquals("his.charge.refunded", p.getType());
            assertEquals("application/json", p.getContentType());
            perKey.computeIfAbsent(key, k -> new ArrayList<>()).add(id);
        }
        assertEquals(List.of("rmq-out-1", "rmq-out-3", "rmq-out-4"), perKey.get("O1"));
        assertEquals(List.of("rmq-out-2", "rmq-out-5"), perKey.get("O2"));
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count("SELECT COUNT(*) FROM hub_delivery "
                + "WHERE event_id LIKE 'rmq-out-%' AND flow = 't-rabbit-out' AND status = 'DELIVERED'") == 5);
    }

    @Test
    void brokerNackFailsTheBatchWhichIsRetriedThenDeadLettered() {
        postEvents("test-hrp-key", stockReceived("rmq-nack-1"));
        await().atMost(Duration.ofSeconds(20)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE event_id = 'rmq-nack-1' AND flow = 't-rabbit-full'") == 1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'rmq-nack-1' AND attempts = 3 "
                + "AND error_message LIKE '%RabbitMQ did not confirm event rmq-nack-1 on exchange hh-test-out%'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id = 'rmq-nack-1' AND flow = 't-rabbit-full' AND status = 'DEAD'"));
    }

    @Test
    void brokerOutageTurnsReadinessDownThenEverythingRecoversWithoutLoss() throws Exception {
        // (only the rabbitmq check is asserted when UP: other checks are not this test's business)
        given().get("/q/health/ready").then().body("checks.find { it.name == 'rabbitmq' }.status", equalTo("UP"));
        RabbitMqResource.rabbitmqctl(60, "stop_app");
        try {
            await().atMost(Duration.ofSeconds(15)).untilAsserted(() -> given().get("/q/health/ready").then()
                    .statusCode(503)
                    .body("checks.find { it.name == 'rabbitmq' }.status", equalTo("DOWN"))
                    .body("checks.find { it.name == 'rabbitmq' }.data.error", containsString("RabbitMQ broker")));
            // accepted over HTTP while the broker is down: the sink fails and is redelivered until it is back
            postEvents("test-his-key", "[" + refund("rmq-outage-1", "OUT") + "," + refund("rmq-outage-2", "OUT") + "]");
            // the flow's own redelivery (test: up to 40 tries, 1 s apart) rides out the outage: nothing dead-lettered
            await().during(Duration.ofSeconds(2)).atMost(Duration.ofSeconds(4)).until(() -> Events.count(
                    "SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE 'rmq-outage-%' AND flow = 't-rabbit-out' AND status = 'PENDING'") == 2);
        } finally {
            RabbitMqResource.rabbitmqctl(90, "start_app");
        }
        await().atMost(Duration.ofSeconds(20)).untilAsserted(() -> given().get("/q/health/ready").then()
                .body("checks.find { it.name == 'rabbitmq' }.status", equalTo("UP")));

        List<Message> got = receive(RabbitMqResource.OUTAGE_QUEUE, 2);
        List<String> ids = new ArrayList<>();
        for (Message m : got) {
            ids.add(eventIdOf(m));
        }
        assertEquals(List.of("rmq-outage-1", "rmq-outage-2"), ids.subList(0, Math.min(2, ids.size())));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count("SELECT COUNT(*) FROM hub_delivery "
                + "WHERE event_id LIKE 'rmq-outage-%' AND flow = 't-rabbit-out' AND status = 'DELIVERED'") == 2);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id LIKE 'rmq-outage-%'"));

        // the ingest consumer is back too
        publish(Events.charge("rmq-after-1", "P9"));
        await().atMost(Duration.ofSeconds(30)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id = 'rmq-after-1'") == 1);
    }

    private static void sql(String statement) throws SQLException {
        try (Connection c = PostgresResource.connect(); Statement s = c.createStatement()) {
            s.execute(statement);
        }
    }
}
