package org.hospitalhub.bench;

import java.sql.Connection;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.atomic.AtomicReference;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.errors.WakeupException;

/**
 * The raw baseline: what a hand-written consumer with the same guarantees does, and nothing more. A plain
 * KafkaConsumer (auto-commit off, max.poll.records = the hub's batch size), Jackson to read the envelope fields, the
 * batch's duplicates dropped, one unnest INSERT ... ON CONFLICT DO NOTHING per batch in one transaction (the hub's
 * statement), then commitAsync of the offsets (as the hub does, asking again when a refused commit has no later one
 * after it): a crash replays from the last commit that reached the broker, and nothing is applied twice.
 * No schema validation, no processed-events table, no metrics, no Camel.
 */
final class RawBaseline implements AutoCloseable {

    private final List<Thread> threads = new ArrayList<>();
    private final List<KafkaConsumer<String, String>> consumers = new ArrayList<>();
    private final AtomicReference<Throwable> failure = new AtomicReference<>();
    private volatile boolean stopping;

    RawBaseline(BenchTopics topics, Pg pg, String db, String group, String topic, String table, int threads,
            int batchSize, int pollMs) {
        for (int t = 0; t < threads; t++) {
            KafkaConsumer<String, String> consumer = new KafkaConsumer<>(topics.consumerProperties(group, batchSize));
            consumers.add(consumer);
            Thread th = new Thread(() -> run(consumer, pg, db, topic, table, pollMs), "raw-" + group + "-" + t);
            th.setDaemon(true);
            this.threads.add(th);
        }
    }

    void start() {
        threads.forEach(Thread::start);
    }

    boolean alive() {
        return failure.get() == null && threads.stream().allMatch(Thread::isAlive);
    }

    Throwable failure() {
        return failure.get();
    }

    private void run(KafkaConsumer<String, String> consumer, Pg pg, String db, String topic, String table, int pollMs) {
        ObjectMapper json = new ObjectMapper();
        try (Connection c = pg.connect(db)) {
            c.setAutoCommit(false);
            consumer.subscribe(List.of(topic));
            boolean[] refused = {false}; // set by a commit callback (on this thread, inside poll)
            while (!stopping) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(pollMs));
                if (records.isEmpty()) {
                    if (refused[0]) {
                        // a refused commit (a request that timed out) with no batch after it: ask again, as the hub does,
                        // or the group's offsets would stay behind rows inserted long ago
                        refused[0] = false;
                        consumer.commitAsync((done, error) -> refused[0] |= error != null);
                    }
                    continue;
                }
                int n = records.count();
                String[][] cols = new String[7][n];
                Set<String> seen = new HashSet<>();
                int k = 0;
                for (ConsumerRecord<String, String> r : records) {
                    JsonNode e = json.readTree(r.value());
                    String id = e.get("eventId").asText();
                    if (!seen.add(id)) {
                        continue;
                    }
                    cols[0][k] = id;
                    cols[1][k] = e.get("type").asText();
                    cols[2][k] = e.get("source").asText();
                    cols[3][k] = e.get("hospital").asText();
                    cols[4][k] = e.hasNonNull("key") ? e.get("key").asText() : null;
                    cols[5][k] = e.get("occurredAt").asText();
                    cols[6][k] = e.get("payload").toString();
                    k++;
                }
                if (k < n) {
                    for (int i = 0; i < 7; i++) {
                        cols[i] = java.util.Arrays.copyOf(cols[i], k);
                    }
                }
                Pg.insertUnnest(c, table, cols);
                c.commit();
                // as the hub commits: after the insert, without waiting for the broker; a later commit supersedes a refused one
                consumer.commitAsync((done, error) -> refused[0] |= error != null);
            }
        } catch (WakeupException stopped) {
            // close() woke the consumer up
        } catch (Throwable t) {
            if (!stopping) {
                failure.set(t);
                t.printStackTrace();
            }
        } finally {
            consumer.close(Duration.ofSeconds(5));
        }
    }

    @Override
    public void close() throws InterruptedException {
        stopping = true;
        for (KafkaConsumer<String, String> c : consumers) {
            try {
                c.wakeup();
            } catch (RuntimeException alreadyClosed) {
                // its thread has ended
            }
        }
        for (Thread t : threads) {
            t.join(15_000);
        }
    }
}
