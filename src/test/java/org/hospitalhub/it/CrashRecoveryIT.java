package org.hospitalhub.it;

import static org.awaitility.Awaitility.await;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.StringSerializer;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.KafkaBroker;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The packaged hub killed with SIGKILL in the middle of delivering (HTTP ingest -> outbox -> staging table, and
 * Kafka -> staging table), then restarted: every accepted event lands exactly once. And SIGTERM flushes a batch the
 * aggregator still holds. Real PostgreSQL and a real Kafka broker.
 */
class CrashRecoveryIT {

    private static ItDatabase db;
    private static final int PORT = Integer.parseInt(System.getenv().getOrDefault("HUB_IT_PORT", "8095"));
    private static Path work;
    private static HubProcess hub;

    @BeforeAll
    static void setUp() throws Exception {
        db = ItDatabase.fresh("it");
        work = Files.createDirectories(Path.of("target", "crash-it").toAbsolutePath());
        Path routes = Files.createDirectories(work.resolve("routes"));
        Files.writeString(routes.resolve("crash-flows.camel.yaml"), """
                - templatedRoute:
                    routeTemplateRef: outbox-source
                    routeId: c-http-source
                    parameters:
                      - {name: flowId, value: c-http}
                      - {name: types, value: his.charge.created}
                      - {name: completionSize, value: "25"}
                      - {name: completionTimeout, value: "200"}
                      - {name: pollPeriod, value: "50"}
                - templatedRoute:
                    routeTemplateRef: jdbc-sink
                    routeId: c-http-sink
                    parameters:
                      - {name: flowId, value: c-http}
                      - {name: table, value: finance_staging}
                - templatedRoute:
                    routeTemplateRef: kafka-source
                    routeId: c-kafka-source
                    parameters:
                      - {name: flowId, value: c-kafka}
                      - {name: topic, value: crash.stock}
                      - {name: groupId, value: crash-it}
                      - {name: completionSize, value: "25"}
                      - {name: completionTimeout, value: "200"}
                - templatedRoute:
                    routeTemplateRef: jdbc-sink
                    routeId: c-kafka-sink
                    parameters:
                      - {name: flowId, value: c-kafka}
                      - {name: table, value: materials_staging}
                - templatedRoute:
                    routeTemplateRef: outbox-source
                    routeId: c-slow-source
                    parameters:
                      - {name: flowId, value: c-slow}
                      - {name: types, value: finance.voucher.posted}
                      - {name: completionSize, value: "1000"}
                      - {name: completionTimeout, value: "600000"}
                      - {name: pollPeriod, value: "50"}
                - templatedRoute:
                    routeTemplateRef: jdbc-sink
                    routeId: c-slow-sink
                    parameters:
                      - {name: flowId, value: c-slow}
                      - {name: table, value: finance_staging}
                """);
        hub = new HubProcess(PORT, Map.of(
                "QUARKUS_PROFILE", "postgres",
                "HUB_DB_URL", db.url,
                "HUB_DB_USERNAME", "postgres",
                "HUB_KAFKA_BROKERS", KafkaBroker.shared().bootstrapServers(),
                "HUB_ROUTES_DIR", routes.toString(),
                "HUB_AUTH_CLIENTS", "his:source:it-his-key;finance:source:it-fin-key",
                "HUB_LEASE_TTL", "3s",
                "HUB_REDELIVERY_DELAYS", "0s,1s"), work.resolve("hub.log"));
    }

    @AfterAll
    static void tearDown() throws Exception {
        if (hub != null && hub.alive()) {
            hub.kill();
        }
    }

    @Test
    void killedMidBatchThenRestartedDeliversEveryAcceptedEventExactlyOnce() throws Exception {
        int httpEvents = 3000;
        int kafkaEvents = 4000;
        hub.start();
        // Kafka: the topic is full before the hub reads it.
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, KafkaBroker.shared().bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < kafkaEvents; i++) {
                producer.send(new ProducerRecord<>("crash.stock", "M" + (i % 50),
                        Events.stockIssued("crash-k-" + i).replace("\n", "")));
            }
            producer.flush();
        }
        // HTTP: 202 means stored; every one of these must arrive.
        for (int b = 0; b < httpEvents / 500; b++) {
            List<String> evs = new ArrayList<>();
            for (int i = b * 500; i < (b + 1) * 500; i++) {
                evs.add(Events.charge("crash-h-" + i, "P" + (i % 40)));
            }
            var r = hub.post("/api/v1/events", "it-his-key", "[" + String.join(",", evs) + "]");
            assertEquals(202, r.statusCode(), r.body());
        }
        // Kill -9 while both flows are still delivering.
        await().atMost(Duration.ofSeconds(60)).pollInterval(Duration.ofMillis(20)).until(() ->
                db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-h-%'") > 200
                        || db.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'crash-k-%'") > 200);
        hub.kill();
        long httpAtKill = db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-h-%'");
        long kafkaAtKill = db.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'crash-k-%'");
        assertTrue(httpAtKill < httpEvents || kafkaAtKill < kafkaEvents,
                "the kill came mid-delivery (" + httpAtKill + " / " + kafkaAtKill + " delivered)");

        hub.start();
        await().atMost(Duration.ofSeconds(120)).until(() ->
                db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-h-%'") == httpEvents
                        && db.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'crash-k-%'") == kafkaEvents);
        await().atMost(Duration.ofSeconds(30)).until(() -> db.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE flow = 'c-http' AND status = 'DELIVERED'") == httpEvents);
        assertEquals(httpEvents, db.count("SELECT COUNT(DISTINCT event_id) FROM hub_event WHERE event_id LIKE 'crash-h-%'"));
        assertEquals(kafkaEvents, db.count("SELECT COUNT(*) FROM hub_processed WHERE processor_name = 'c-kafka'"));
        assertEquals(0, db.count("SELECT COUNT(*) FROM dead_letter"));
        // A little while later, still exactly once (nothing comes again after the restart settled).
        Thread.sleep(1500);
        assertEquals(httpEvents, db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-h-%'"));
        assertEquals(kafkaEvents, db.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'crash-k-%'"));

        // Graceful shutdown (SIGTERM) flushes the batch the aggregator holds (completionTimeout is 10 minutes).
        List<String> vouchers = new ArrayList<>();
        for (int i = 0; i < 7; i++) {
            vouchers.add(Events.voucher("crash-v-" + i));
        }
        assertEquals(202, hub.post("/api/v1/events", "it-fin-key", "[" + String.join(",", vouchers) + "]").statusCode());
        Thread.sleep(1000); // claimed by the outbox source and waiting in the aggregator
        assertEquals(0, db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-v-%'"));
        hub.stop();
        assertEquals(7, db.count("SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'crash-v-%'"),
                "SIGTERM flushed the pending batch");
        assertEquals(7, db.count("SELECT COUNT(*) FROM hub_delivery WHERE flow = 'c-slow' AND status = 'DELIVERED'"));
    }
}
