package org.hospitalhub.sync;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.KafkaBroker;
import org.hospitalhub.support.KafkaResource;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/** Kafka in and out, against a real KRaft broker: batching consumer, dedupe, commit after delivery, outage. */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
@QuarkusTestResource(KafkaResource.class)
class KafkaTest {

    private static String refund(String eventId, String patient, int seq) {
        return """
                {"eventId":"%s","type":"his.charge.refunded","source":"his","hospital":"kfk","key":"%s",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C-%s","patientId":"%s","amount":%d,"reason":"seq %d"}}
                """.formatted(eventId, patient, eventId, patient, seq, seq).replace("\n", "");
    }

    private static KafkaProducer<String, String> producer() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, KafkaBroker.shared().bootstrapServers());
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        return new KafkaProducer<>(p, new StringSerializer(), new StringSerializer());
    }

    private static void send(String topic, List<String[]> keyValues) throws Exception {
        try (KafkaProducer<String, String> producer = producer()) {
            for (String[] kv : keyValues) {
                producer.send(new ProducerRecord<>(topic, kv[0], kv[1])).get(10, TimeUnit.SECONDS);
            }
        }
    }

    /** Reads the topic from the start until {@code expected} records containing {@code marker} are in (max 20 s). */
    private static List<ConsumerRecord<String, String>> readAll(String topic, String marker, int expected) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, KafkaBroker.shared().bootstrapServers());
        p.put(ConsumerConfig.GROUP_ID_CONFIG, "hh-test-reader-" + System.nanoTime());
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        List<ConsumerRecord<String, String>> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            c.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 20_000;
            while (out.size() < expected && System.currentTimeMillis() < deadline) {
                c.poll(Duration.ofMillis(300)).forEach(r -> {
                    if (r.value() != null && r.value().contains(marker)) {
                        out.add(r);
                    }
                });
            }
        }
        return out;
    }

    private static long lag(String group, String topic) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", KafkaBroker.shared().bootstrapServers());
        try (Admin admin = Admin.create(p)) {
            var committed = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(10, TimeUnit.SECONDS);
            var parts = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS).get(topic).partitions();
            Map<TopicPartition, OffsetSpec> latest = new java.util.HashMap<>();
            parts.forEach(pi -> latest.put(new TopicPartition(topic, pi.partition()), OffsetSpec.latest()));
            long lag = 0;
            for (var e : admin.listOffsets(latest).all().get(10, TimeUnit.SECONDS).entrySet()) {
                var c = committed.get(e.getKey());
                lag += e.getValue().offset() - (c == null ? 0 : c.offset());
            }
            return lag;
        }
    }

    /** The value of one Prometheus series at /q/metrics, 0 if absent. */
    private static double metric(String series) {
        String body = given().get("/q/metrics").then().statusCode(200).extract().asString();
        for (String line : body.split("\n")) {
            if (line.startsWith(series + " ")) {
                return Double.parseDouble(line.substring(series.length() + 1).trim());
            }
        }
        return 0;
    }

    @Test
    void kafkaSourceDeliversOnceDedupesAndCommitsAfterTheSink() throws Exception {
        List<String[]> records = new ArrayList<>();
        for (int i = 0; i < 30; i++) {
            String id = "kfs-" + i;
            records.add(new String[] {"M" + (i % 3), Events.stockIssued(id).replace("\n", "")});
        }
        records.add(new String[] {"M0", Events.stockIssued("kfs-3").replace("\n", "")}); // duplicate in the stream
        records.add(new String[] {"M9", "{\"eventId\":\"kfs-bad\",\"type\":\"hrp.stock.issued\"}"}); // invalid
        send("hh.charges", records);

        await().atMost(Duration.ofSeconds(30)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'kfs-%'") == 30);
        await().atMost(Duration.ofSeconds(15)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka' AND event_id = 'kfs-bad'") == 1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka' AND event_id = 'kfs-bad' "
                + "AND error_message LIKE '%source is required%'"), "the dead letter names the missing field");
        await().atMost(Duration.ofSeconds(15)).until(() -> lag("hh-test-source", "hh.charges") == 0);
        assertEquals(30, Events.count("SELECT COUNT(*) FROM hub_processed WHERE processor_name = 't-kafka' "
                + "AND message_id LIKE 'kfs-%'"));
        // The invalid record also went to <topic>.dlq, as it was.
        List<ConsumerRecord<String, String>> dlq = readAll("hh.charges.dlq", "kfs-bad", 1);
        assertTrue(dlq.stream().anyMatch(r -> r.value().contains("kfs-bad")), "invalid record on hh.charges.dlq");

        // The same events again (a producer retry, a replayed topic): counted as duplicates, not applied again.
        double delivered = metric("hub_delivery_delivered_total{flow=\"t-kafka\"}");
        send("hh.charges", records.subList(0, 5));
        await().atMost(Duration.ofSeconds(15)).until(() -> lag("hh-test-source", "hh.charges") == 0);
        assertEquals(30, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'kfs-%'"));
        assertEquals(delivered, metric("hub_delivery_delivered_total{flow=\"t-kafka\"}"),
                "the processed-events check filtered the replayed events out before the sink");
        given().get("/q/metrics").then().statusCode(200)
                .body(containsString("hub_delivery_duplicates_total{flow=\"t-kafka\"}"))
                .body(containsString("hub_delivery_consumer_lag_records{flow=\"t-kafka\"}"));
    }

    @Test
    void aSinkDedupedKafkaSourceLeavesDuplicatesToTheStagingTablesKey() throws Exception {
        List<String[]> records = new ArrayList<>();
        for (int i = 0; i < 20; i++) {
            records.add(new String[] {"M" + (i % 3), Events.stockIssued("ksd-" + i).replace("\n", "")});
        }
        records.add(new String[] {"M0", Events.stockIssued("ksd-3").replace("\n", "")}); // duplicate in the stream
        // a payload laid out with whitespace, Chinese text, an escaped quote and a character outside the BMP: the row
        // holds it exactly as sent without the whitespace between its tokens
        records.set(7, new String[] {"M1", Events.stockIssued("ksd-7").replace("\"warehouse\":\"W1\"",
                "\n  \"warehouse\" :\t\"中心库 \\\"B\\\" 😀\" ")});
        double duplicates = metric("hub_delivery_duplicates_total{flow=\"t-kafka-sd\"}");
        send("hh.charges.sd", records);
        await().atMost(Duration.ofSeconds(30)).until(() -> lag("hh-test-sd", "hh.charges.sd") == 0);
        assertEquals(20, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'ksd-%'"));
        assertEquals(List.of("{\"issueId\":\"ksd-7\",\"materialId\":\"M1\",\"warehouse\":\"中心库 \\\"B\\\" 😀\","
                + "\"department\":\"ICU\",\"quantity\":2,\"unit\":\"box\"}"),
                Events.strings("SELECT payload FROM materials_staging WHERE event_id = 'ksd-7'"));

        send("hh.charges.sd", records.subList(0, 5)); // a replayed topic: the sink's unique event_id drops them
        await().atMost(Duration.ofSeconds(15)).until(() -> lag("hh-test-sd", "hh.charges.sd") == 0);
        assertEquals(20, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'ksd-%'"));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_processed WHERE processor_name = 't-kafka-sd'"),
                "no processed-events records for a sink-deduped flow");
        assertEquals(duplicates + 6, metric("hub_delivery_duplicates_total{flow=\"t-kafka-sd\"}"),
                "the duplicate in the stream and the five replayed ones counted");
    }

    @Test
    void kafkaIngestStoresBeforeCommitAndOutboxFlowsDeliver() throws Exception {
        send("hh.ingest", List.<String[]>of(
                new String[] {"P1", Events.charge("kfi-1", "P1").replace("\n", "")},
                new String[] {"P1", Events.charge("kfi-2", "P1").replace("\n", "")},
                new String[] {"P1", Events.charge("kfi-1", "P1").replace("\n", "")},
                new String[] {"V", Events.voucher("kfi-fin-1").replace("\n", "")})); // source finance: not allowed here
        await().atMost(Duration.ofSeconds(20)).until(() -> Events.count(
                "SELECT COUNT(*) FROM finance_staging WHERE event_id LIKE 'kfi-%'") == 2);
        assertEquals(2, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id IN ('kfi-1', 'kfi-2')"));
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count(
                "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka-in' AND event_id = 'kfi-fin-1'") == 1);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM hub_event WHERE event_id = 'kfi-fin-1'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = 'kfi-fin-1' "
                + "AND error_message LIKE '%source ''finance'' may not send%'"));
        await().atMost(Duration.ofSeconds(15)).until(() -> lag("hh-test-ingest", "hh.ingest") == 0);
    }

    @Test
    void kafkaSinkPublishesOneTopicPerTypeKeyedAndInOrder() {
        List<String> evs = new ArrayList<>();
        for (int i = 0; i < 12; i++) {
            evs.add(refund("kfo-" + i, "P" + (i % 2), i));
        }
        given().header("X-Api-Key", "test-his-key").contentType("application/json").body("[" + String.join(",", evs) + "]")
                .post("/api/v1/events").then().statusCode(202);
        List<ConsumerRecord<String, String>> got = readAll("hh.out.his.charge.refunded", "\"kfo-", 12);
        assertEquals(12, got.size());
        for (String patient : List.of("P0", "P1")) {
            List<ConsumerRecord<String, String>> mine = got.stream().filter(r -> patient.equals(r.key())).toList();
            assertEquals(6, mine.size());
            assertEquals(1, mine.stream().map(ConsumerRecord::partition).distinct().count(), "one key, one partition");
            int last = -1;
            for (ConsumerRecord<String, String> r : mine) {
                int seq = Integer.parseInt(r.value().replaceAll(".*\"reason\":\"seq (\\d+)\".*", "$1"));
                assertTrue(seq > last, "in order per key: " + seq + " after " + last);
                last = seq;
                assertEquals(new String(r.headers().lastHeader("hub-event-id").value()), "kfo-" + seq);
            }
        }
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count(
                "SELECT COUNT(*) FROM hub_delivery WHERE flow = 't-kafka-out' AND event_id LIKE 'kfo-%' AND status = 'DELIVERED'") == 12);
    }

    @Test
    void brokerOutageMakesTheHubUnreadyAndNothingIsLost() throws Exception {
        KafkaBroker broker = KafkaBroker.shared();
        await().atMost(Duration.ofSeconds(10)).until(() -> given().get("/q/health/ready").statusCode() == 200);
        broker.stop();
        try {
            await().atMost(Duration.ofSeconds(20)).until(() -> given().get("/q/health/ready").statusCode() == 503);
            given().get("/q/health/ready").then().body(containsString("kafka"));
            // Accepted while the broker is down: stored in the outbox, delivered when it is back.
            List<String> evs = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                evs.add(refund("kfx-" + i, "P7", i));
            }
            given().header("X-Api-Key", "test-his-key").contentType("application/json")
                    .body("[" + String.join(",", evs) + "]").post("/api/v1/events").then().statusCode(202);
        } finally {
            broker.start();
        }
        await().atMost(Duration.ofSeconds(30)).until(() -> given().get("/q/health/ready").statusCode() == 200);
        List<ConsumerRecord<String, String>> got = readAll("hh.out.his.charge.refunded", "\"kfx-", 5);
        assertEquals(5, got.stream().map(ConsumerRecord::value).distinct().count());
        send("hh.charges", List.<String[]>of(new String[] {"M1", Events.stockIssued("kfx-after").replace("\n", "")}));
        await().atMost(Duration.ofSeconds(30)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id = 'kfx-after'") == 1);
    }

    @jakarta.inject.Inject
    org.apache.camel.CamelContext camel;

    /** Sends the records in one go, without waiting for each (a producer's backlog, unlike {@link #send}). */
    private static void sendAll(String topic, List<String[]> keyValues) throws Exception {
        try (KafkaProducer<String, String> producer = producer()) {
            List<java.util.concurrent.Future<?>> sent = new ArrayList<>();
            for (String[] kv : keyValues) {
                sent.add(producer.send(new ProducerRecord<>(topic, kv[0], kv[1])));
            }
            for (var f : sent) {
                f.get(10, TimeUnit.SECONDS);
            }
        }
    }

    /**
     * A backlog waiting when the consumer starts (here: the route stopped while the records came): each batch is
     * delivered on the delivery thread while the consumer reads the next (overlap), and still exactly once. Events sent
     * again a batch later are recognised as delivered, which needs the batch before to be delivered and recorded before
     * the next one is looked up in hub_processed.
     */
    @Test
    void aBacklogIsDeliveredWhileTheNextBatchIsReadOnceAndCommitted() throws Exception {
        List<String[]> records = new ArrayList<>();
        for (int i = 0; i < 600; i++) {
            records.add(new String[] {"M" + (i % 3), Events.stockIssued("kov-" + i).replace("\n", "")});
        }
        for (int i = 580; i >= 0; i -= 20) { // 30 events once more, 60 records (a batch or so) after they first came
            records.add(Math.min(records.size(), i + 60), new String[] {"M" + (i % 3), Events.stockIssued("kov-" + i).replace("\n", "")});
        }
        double delivered = metric("hub_delivery_delivered_total{flow=\"t-kafka\"}");
        double duplicates = metric("hub_delivery_duplicates_total{flow=\"t-kafka\"}");
        double handedOff = metric("hub_kafka_batches_handed_off_total{flow=\"t-kafka\"}");
        camel.getRouteController().stopRoute("t-kafka-source");
        try {
            sendAll("hh.charges", records);
        } finally {
            camel.getRouteController().startRoute("t-kafka-source");
        }
        await().atMost(Duration.ofSeconds(60)).until(() -> lag("hh-test-source", "hh.charges") == 0);
        assertEquals(600, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'kov-%'"));
        assertEquals(600, Events.count("SELECT COUNT(*) FROM hub_processed WHERE processor_name = 't-kafka' "
                + "AND message_id LIKE 'kov-%'"));
        assertEquals(delivered + 600, metric("hub_delivery_delivered_total{flow=\"t-kafka\"}"),
                "each event handed to the sink once: none sent again was delivered again");
        assertEquals(duplicates + 30, metric("hub_delivery_duplicates_total{flow=\"t-kafka\"}"));
        assertTrue(metric("hub_kafka_batches_handed_off_total{flow=\"t-kafka\"}") >= handedOff + 3,
                "batches of the backlog were handed off");
    }

    /**
     * A handed-off batch that is neither delivered nor dead-lettered (the staging table refuses one row, and the
     * dead-letter store refuses it too): nothing after it is committed or delivered past it, the consumer is rewound to
     * it, and once the dead-letter store takes the row again everything lands, once.
     */
    @Test
    void aHandedOffBatchThatFailsRewindsTheConsumerAndNothingIsLost() throws Exception {
        List<String[]> records = new ArrayList<>();
        for (int i = 0; i < 400; i++) {
            records.add(new String[] {"M" + (i % 3), Events.stockIssued("krw-" + i).replace("\n", "")});
        }
        double rewinds = metric("hub_kafka_rewinds_total{flow=\"t-kafka-sd\"}");
        sql("ALTER TABLE materials_staging ADD CONSTRAINT t_refuse_krw CHECK (event_id <> 'krw-150') NOT VALID");
        sql("ALTER TABLE dead_letter ADD CONSTRAINT t_refuse_krw CHECK (event_id IS DISTINCT FROM 'krw-150') NOT VALID");
        try {
            camel.getRouteController().stopRoute("t-kafka-sd-source");
            try {
                sendAll("hh.charges.sd", records);
            } finally {
                camel.getRouteController().startRoute("t-kafka-sd-source");
            }
            await().atMost(Duration.ofSeconds(60)).until(() -> metric("hub_kafka_rewinds_total{flow=\"t-kafka-sd\"}") >= rewinds + 2);
            assertTrue(lag("hh-test-sd", "hh.charges.sd") > 0, "nothing committed past the failing batch");
        } finally {
            sql("ALTER TABLE dead_letter DROP CONSTRAINT t_refuse_krw");
        }
        await().atMost(Duration.ofSeconds(60)).until(() -> lag("hh-test-sd", "hh.charges.sd") == 0);
        sql("ALTER TABLE materials_staging DROP CONSTRAINT t_refuse_krw");
        assertEquals(399, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'krw-%'"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka-sd' AND event_id = 'krw-150' "
                + "AND error_message LIKE '%t_refuse_krw%'"), "the refused row parked once, with the reason");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka-sd' AND event_id = 'krw-150' "
                + "AND (error_message LIKE '%ICU%' OR error_message LIKE '%Failing row%')"),
                "the reason does not quote the row (logServerErrorDetail=false): it is logged too");
    }

    private static void sql(String statement) throws Exception {
        try (var c = PostgresResource.connect(); var st = c.createStatement()) {
            st.execute(statement);
        }
    }

    /**
     * A batch that fails before its events are read out of the records (here the processed-events lookup: its table is
     * gone) is dead-lettered record by record, each with its own text and eventId, so that it can be replayed; not as one
     * letter holding the batch's Java description, which would lose the records once the offsets are committed.
     */
    @Test
    void aBatchFailingBeforeItsEventsAreReadIsDeadLetteredRecordByRecordAndReplays() throws Exception {
        List<String[]> records = List.of(
                new String[] {"M1", Events.stockIssued("kbf-1").replace("\n", "")},
                new String[] {"M2", Events.stockIssued("kbf-2").replace("\n", "")});
        sql("ALTER TABLE hub_processed RENAME TO hub_processed_away");
        try {
            send("hh.charges", records);
            await().atMost(Duration.ofSeconds(30)).until(() -> Events.count(
                    "SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka' AND event_id IN ('kbf-1', 'kbf-2')") == 2);
        } finally {
            sql("ALTER TABLE hub_processed_away RENAME TO hub_processed");
        }
        for (String id : List.of("kbf-1", "kbf-2")) {
            assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka' AND event_id = ? "
                    + "AND payload LIKE ? AND error_message LIKE '%hub_processed%'", id, "{\"eventId\":\"" + id + "\"%"),
                    "the record as it came, with the reason");
        }
        assertEquals(0, Events.count("SELECT COUNT(*) FROM dead_letter WHERE flow = 't-kafka' AND event_id IS NULL"),
                "no letter without its event");
        await().atMost(Duration.ofSeconds(15)).until(() -> lag("hh-test-source", "hh.charges") == 0);
        assertEquals(0, Events.count("SELECT COUNT(*) FROM materials_staging WHERE event_id LIKE 'kbf-%'"));

        for (String id : Events.strings("SELECT CAST(id AS VARCHAR) FROM dead_letter WHERE flow = 't-kafka' "
                + "AND event_id IN ('kbf-1', 'kbf-2')")) {
            given().header("X-Api-Key", "test-ops-key").post("/api/v1/dead-letters/" + id + "/replay").then().statusCode(200);
        }
        await().atMost(Duration.ofSeconds(20)).until(() -> Events.count(
                "SELECT COUNT(*) FROM materials_staging WHERE event_id IN ('kbf-1', 'kbf-2')") == 2);
    }
}
