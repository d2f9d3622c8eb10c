package org.hospitalhub.qc;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.List;
import java.util.UUID;

import jakarta.inject.Inject;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.hospitalhub.support.RabbitMqResource;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.springframework.amqp.core.Message;
import org.springframework.amqp.core.MessageDeliveryMode;
import org.springframework.amqp.core.MessageProperties;
import org.springframework.amqp.rabbit.connection.CachingConnectionFactory;
import org.springframework.amqp.rabbit.core.RabbitTemplate;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Clinical events over RabbitMQ, against the real broker: the shipped rabbitmq-ingest (route t-qc-rabbit-ingest of
 * routes-test/qc-flows.camel.yaml, queue hh-test-qc-ingest, which the hub declares) stores each message's events before
 * the ack, once per eventId, and the t-qc flow turns them into tasks; invalid messages and foreign sources are
 * dead-lettered with their reason and acknowledged, nothing else is lost. (RabbitMqResource is not used: it deletes the
 * hh-test-* queues of RabbitMqTest; only its plain client is.)
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class QcRabbitMqTest {

    private static final String EXCHANGE = "hh-test-qc-in";
    private static final String QUEUE = "hh-test-qc-ingest";
    private static CachingConnectionFactory client;
    private static RabbitTemplate rabbit;

    @Inject
    AdjustableQcClock clock;

    Instant t0;

    @BeforeAll
    static void connect() {
        client = RabbitMqResource.connectionFactory();
        rabbit = new RabbitTemplate(client);
    }

    @AfterAll
    static void disconnect() {
        client.destroy();
    }

    @BeforeEach
    void fixClock() {
        t0 = Instant.now().plus(Duration.ofDays(30)).truncatedTo(ChronoUnit.SECONDS);
        clock.set(t0);
    }

    @AfterEach
    void systemClock() {
        clock.useSystem();
    }

    /** Publishes as the HIS would: to the ingest exchange, routing key = the queue, persistent, JSON. */
    private static void publish(String body, String messageId) {
        MessageProperties p = new MessageProperties();
        p.setContentType("application/json");
        p.setDeliveryMode(MessageDeliveryMode.PERSISTENT);
        p.setMessageId(messageId);
        rabbit.send(EXCHANGE, QUEUE, new Message(body.getBytes(StandardCharsets.UTF_8), p));
    }

    private static long depth() {
        return RabbitMqResource.depth(QUEUE);
    }

    @Test
    void clinicalEventsAreStoredOnceBeforeTheAckAndOpenAndCloseTasks() {
        String v = "qc-rmq-" + UUID.randomUUID().toString().substring(0, 8);
        QcEvents e = new QcEvents("qc-test", v, "P-" + v);
        String adm = e.admission(t0, "CARDIO", "DR-R");
        String doc = e.document(t0.plus(Duration.ofHours(3)), "admission-record");
        String consult = e.event(e.id(), ClinicalEvent.CONSULTATION_REQUESTED, t0.plus(Duration.ofHours(4)), "consultationId", "C1",
                "urgency", "routine", "department", "CARDIO", "consultedDepartment", "ICU");
        publish(adm, v + "-e1");
        publish("[" + doc + "," + consult + "]", v + "-batch");
        publish(adm, v + "-e1"); // the HIS resends: the same message id
        publish(doc, v + "-e2"); // and one event of the batch again on its own

        await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(100)).until(() -> Events.count(
                "SELECT COUNT(*) FROM qc_task WHERE hospital = 'qc-test' AND visit_id = ?", v) == 5
                && Events.count("SELECT COUNT(*) FROM hub_delivery WHERE event_id LIKE ? AND flow = 't-qc' AND status = 'DELIVERED'",
                        v + "-e%") == 3);
        assertEquals(3, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ? AND received_via = 'rabbitmq'", v),
                "three events, each stored once although five were published");
        assertEquals(3, Events.count("SELECT COUNT(*) FROM qc_visit_event WHERE visit_id = ?", v), "each applied once");
        assertEquals("COMPLETED_ON_TIME", Events.strings("SELECT status FROM qc_task WHERE visit_id = ? AND rule_id = 'admission-record'",
                v).get(0));
        assertEquals("OPEN", Events.strings("SELECT status FROM qc_task WHERE visit_id = ? AND rule_id = 'consultation-routine'",
                v).get(0));
        assertEquals(t0.plus(Duration.ofHours(52)).toEpochMilli(), Events.count("SELECT CAST(EXTRACT(EPOCH FROM due_at) * 1000 AS BIGINT) "
                + "FROM qc_task WHERE visit_id = ? AND rule_id = 'consultation-routine'", v), "48 h after the request");
        await().atMost(Duration.ofSeconds(10)).until(() -> depth() == 0);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM dead_letter WHERE payload LIKE ?", "%" + v + "%"));
    }

    @Test
    void invalidClinicalEventsAndForeignSourcesAreDeadLetteredWithTheirReasonAndAcked() {
        String v = "qc-rmq-bad-" + UUID.randomUUID().toString().substring(0, 8);
        QcEvents e = new QcEvents("qc-test", v, "P-" + v);
        // no attendingDoctor: qc.admission requires it
        String noDoctor = e.event(e.id(), ClinicalEvent.ADMISSION, t0, "department", "CARDIO");
        String foreign = e.admission(t0, "CARDIO", "DR-R").replace("\"source\":\"his\"", "\"source\":\"lis\"");
        String good = e.admission(t0, "CARDIO", "DR-R");
        publish(noDoctor, v + "-1");
        publish("{\"eventId\":\"" + v + "-broken\",", v + "-2");
        publish(foreign, v + "-3");
        publish(good, v + "-4");

        await().atMost(Duration.ofSeconds(30)).pollInterval(Duration.ofMillis(100)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-qc-rabbit' AND payload LIKE ?", "%" + v + "%") == 3
                && Events.count("SELECT COUNT(*) FROM qc_task WHERE visit_id = ?", v) == 4);
        List<String> reasons = Events.strings("SELECT error_message FROM dead_letter WHERE flow = 't-qc-rabbit' AND payload LIKE ? "
                + "ORDER BY id", "%" + v + "%");
        assertTrue(reasons.get(0).contains("attendingDoctor"), reasons.get(0));
        assertTrue(reasons.get(1).toLowerCase().contains("json"), reasons.get(1));
        assertTrue(reasons.get(2).contains("source 'lis' may not send to RabbitMQ ingest t-qc-rabbit"), reasons.get(2));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ?", v), "only the valid event is stored");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ? AND source = 'lis'", v));
        await().atMost(Duration.ofSeconds(10)).until(() -> depth() == 0);
    }
}
