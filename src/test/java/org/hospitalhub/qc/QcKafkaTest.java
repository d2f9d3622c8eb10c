package org.hospitalhub.qc;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.KafkaBroker;
import org.hospitalhub.support.KafkaResource;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Clinical events from a Kafka topic (the kafka-ingest template of the test hospital, topic hh.ingest) reach the task
 * engine like HTTP ones: stored once, then delivered by the t-qc flow; a record sent twice is applied once.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
@QuarkusTestResource(KafkaResource.class)
class QcKafkaTest {

    @Test
    void clinicalEventsFromKafkaOpenAndCloseTasksOnce() throws Exception {
        String v = "kafka-" + UUID.randomUUID().toString().substring(0, 8);
        QcEvents e = new QcEvents("qc-test", v, "P-" + v);
        Instant t = Instant.now().plus(Duration.ofDays(30));
        String adm = e.admission(t, "CARDIO", "DR-K");
        String doc = e.document(t.plus(Duration.ofHours(2)), "admission-record");
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, KafkaBroker.shared().bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (String record : List.of(adm, doc, adm)) {
                producer.send(new ProducerRecord<>("hh.ingest", v, record)).get(10, TimeUnit.SECONDS);
            }
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> Events.count("SELECT COUNT(*) FROM qc_task WHERE visit_id = ?", v) == 4
                && Events.count("SELECT COUNT(*) FROM qc_task WHERE visit_id = ? AND status = 'COMPLETED_ON_TIME'", v) == 1);
        assertEquals("COMPLETED_ON_TIME", Events.strings("SELECT status FROM qc_task WHERE visit_id = ? AND rule_id = 'admission-record'",
                v).get(0));
        assertEquals(2, Events.count("SELECT COUNT(*) FROM qc_visit_event WHERE visit_id = ?", v), "the repeated record applied once");
        assertEquals(2, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_key = ? AND received_via LIKE '%kafka%'", v));
    }
}
