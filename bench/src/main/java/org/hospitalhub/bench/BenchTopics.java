package org.hospitalhub.bench;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.SplittableRandom;
import java.util.concurrent.ExecutionException;
import java.util.function.BooleanSupplier;
import java.util.stream.Collectors;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.record.TimestampType;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/** The benchmark's topics: creating them, loading them, and watching consumer groups catch up. */
final class BenchTopics implements AutoCloseable {

    static final String LOAD = "bench.charges";

    private final String brokers;
    private final Admin admin;

    BenchTopics(String brokers) {
        this.brokers = brokers;
        Properties p = new Properties();
        p.setProperty(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        this.admin = Admin.create(p);
    }

    /** The load topic (CreateTime) and one steady-phase topic per system with LogAppendTime timestamps. */
    void create(int partitions, List<String> steadyTopics) throws ExecutionException, InterruptedException {
        List<NewTopic> topics = new ArrayList<>();
        topics.add(new NewTopic(LOAD, partitions, (short) 1));
        for (String t : steadyTopics) {
            // the record timestamp is the broker's append time: when the event became available to the consumer
            topics.add(new NewTopic(t, partitions, (short) 1).configs(Map.of("message.timestamp.type", "LogAppendTime")));
        }
        admin.createTopics(topics).all().get();
    }

    /** Result of the preload: records written, distinct eventIds among them, mean value size. */
    record Loaded(long records, long unique, long resends, double meanBytes, double seconds) {
    }

    /**
     * Writes n records of the load data set: every 20th record (5%) re-sends an earlier event with the same key and
     * bytes (half of them a recent one, as a producer retry would, half any earlier one, as a replay would).
     */
    Loaded preload(ChargeEvents events, long n) {
        long start = System.nanoTime();
        long unique = 0;
        long resends = 0;
        long bytes = 0;
        SplittableRandom r = new SplittableRandom(20261122L);
        try (KafkaProducer<String, String> producer = producer(20, 512 * 1024)) {
            for (long i = 0; i < n; i++) {
                long index;
                if (i % 20 == 19 && unique > 0) {
                    index = r.nextBoolean() ? Math.max(0, unique - 1 - r.nextInt(1000)) : r.nextLong(unique);
                    resends++;
                } else {
                    index = unique++;
                }
                String value = events.load(index);
                bytes += ChargeEvents.bytes(value).length;
                producer.send(new ProducerRecord<>(LOAD, events.patient(index), value), (md, e) -> {
                    if (e != null) {
                        System.err.println("preload send failed: " + e);
                        System.exit(3);
                    }
                });
            }
            producer.flush();
        }
        return new Loaded(n, unique, resends, (double) bytes / Math.max(1, n), (System.nanoTime() - start) / 1e9);
    }

    /** Result of a fixed-rate run: records sent and the rate actually achieved. */
    record Steady(long records, double seconds) {
        double rate() {
            return records / seconds;
        }
    }

    /** Sends rate events per second, steadily (every millisecond what is due), for the given time. */
    Steady produceSteadily(ChargeEvents events, String topic, int rate, int seconds) {
        long total = (long) rate * seconds;
        long sent = 0;
        long start = System.nanoTime();
        try (KafkaProducer<String, String> producer = producer(1, 64 * 1024)) {
            while (sent < total) {
                long due = Math.min(total, (System.nanoTime() - start) * rate / 1_000_000_000L);
                while (sent < due) {
                    producer.send(new ProducerRecord<>(topic, events.patient(sent), events.steady(sent)));
                    sent++;
                }
                Bench.sleep(1);
            }
            producer.flush();
        }
        return new Steady(sent, (System.nanoTime() - start) / 1e9);
    }

    Map<TopicPartition, Long> endOffsets(String topic) throws ExecutionException, InterruptedException {
        var partitions = admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions();
        Map<TopicPartition, OffsetSpec> spec = new HashMap<>();
        partitions.forEach(p -> spec.put(new TopicPartition(topic, p.partition()), OffsetSpec.latest()));
        return admin.listOffsets(spec).all().get().entrySet().stream()
                .collect(Collectors.toMap(Map.Entry::getKey, e -> e.getValue().offset()));
    }

    /** Committed offsets of the group (0 for a partition without a commit). */
    Map<TopicPartition, Long> committed(String group) throws ExecutionException, InterruptedException {
        Map<TopicPartition, OffsetAndMetadata> m = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        Map<TopicPartition, Long> out = new HashMap<>();
        m.forEach((tp, o) -> out.put(tp, o == null ? 0L : o.offset()));
        return out;
    }

    /**
     * When a consumer group finished: {@code done} = System.nanoTime() when the group's committed offsets were first
     * seen at the end of every partition; {@code at10} / {@code at90} when 10 % / 90 % of the records were first seen
     * committed (for the rate without start-up and tail).
     */
    record Progress(long done, long at10, long at90, long records) {
        double middleRate() {
            return at90 > at10 ? 0.8 * records / ((at90 - at10) / 1e9) : Double.NaN;
        }
    }

    /**
     * Waits until the group has committed the end offset of every partition (so every record, the last one
     * included, has been written to PostgreSQL and acknowledged), polling every 50 ms. Throws if it does not happen in
     * time or the consumer died.
     */
    Progress awaitCommitted(String group, Map<TopicPartition, Long> end, Duration timeout, BooleanSupplier alive)
            throws ExecutionException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        long total = end.values().stream().mapToLong(Long::longValue).sum();
        long lastReport = System.nanoTime();
        long at10 = 0;
        long at90 = 0;
        while (true) {
            Map<TopicPartition, Long> c = committed(group);
            long done = 0;
            boolean all = true;
            for (var e : end.entrySet()) {
                long at = c.getOrDefault(e.getKey(), 0L);
                done += Math.min(at, e.getValue());
                all &= at >= e.getValue();
            }
            long now = System.nanoTime();
            if (at10 == 0 && done >= total / 10) {
                at10 = now;
            }
            if (at90 == 0 && done >= total * 9 / 10) {
                at90 = now;
            }
            if (all) {
                return new Progress(now, at10, at90, total);
            }
            if (!alive.getAsBoolean()) {
                throw new IllegalStateException("the consumer of group " + group + " stopped before it was done ("
                        + done + " of " + total + " records committed)");
            }
            if (now > deadline) {
                throw new IllegalStateException("group " + group + " did not finish within " + timeout + " ("
                        + done + " of " + total + " records committed)");
            }
            if (now - lastReport > 5_000_000_000L) {
                System.out.printf("    ... %s: %,d of %,d records committed%n", group, done, total);
                lastReport = now;
            }
            Thread.sleep(50);
        }
    }

    /** Waits until every partition of the group's topic is assigned to a member (the consumer is ready). */
    void awaitGroupStable(String group, Duration timeout) throws ExecutionException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (System.nanoTime() < deadline) {
            org.apache.kafka.clients.admin.ConsumerGroupDescription d;
            try {
                d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
            } catch (ExecutionException e) {
                if (!(e.getCause() instanceof org.apache.kafka.common.errors.GroupIdNotFoundException)) {
                    throw e;
                }
                Thread.sleep(100); // its consumers have not joined yet (a raw baseline just started in its own JVM)
                continue;
            }
            int assigned = d.members().stream().mapToInt(m -> m.assignment().topicPartitions().size()).sum();
            if (assigned > 0 && assigned == partitionsOf(d.members())) {
                return;
            }
            Thread.sleep(100);
        }
        throw new IllegalStateException("group " + group + " got no partitions within " + timeout);
    }

    private int partitionsOf(java.util.Collection<org.apache.kafka.clients.admin.MemberDescription> members)
            throws ExecutionException, InterruptedException {
        var topics = members.stream().flatMap(m -> m.assignment().topicPartitions().stream())
                .map(TopicPartition::topic).distinct().toList();
        int n = 0;
        for (var t : admin.describeTopics(topics).allTopicNames().get().values()) {
            n += t.partitions().size();
        }
        return n;
    }

    /** eventId -> broker append time (ms) of every record of a steady-phase topic. */
    Map<String, Long> appendTimes(String topic) throws ExecutionException, InterruptedException {
        Map<TopicPartition, Long> end = endOffsets(topic);
        Map<String, Long> out = new HashMap<>();
        try (KafkaConsumer<String, String> c = reader()) {
            c.assign(end.keySet());
            c.seekToBeginning(end.keySet());
            while (end.entrySet().stream().anyMatch(e -> c.position(e.getKey()) < e.getValue())) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    if (r.timestampType() != TimestampType.LOG_APPEND_TIME) {
                        throw new IllegalStateException(topic + " does not carry broker append times");
                    }
                    out.put(ChargeEvents.eventIdOf(r.value()), r.timestamp());
                }
            }
        }
        return out;
    }

    /** The first n record values of the load topic, in the order a consumer receives them. */
    List<String> sample(int n) throws ExecutionException, InterruptedException {
        Map<TopicPartition, Long> end = endOffsets(LOAD);
        List<String> out = new ArrayList<>(n);
        try (KafkaConsumer<String, String> c = reader()) {
            c.assign(end.keySet());
            c.seekToBeginning(end.keySet());
            while (out.size() < n && end.entrySet().stream().anyMatch(e -> c.position(e.getKey()) < e.getValue())) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500))) {
                    if (out.size() < n) {
                        out.add(r.value());
                    }
                }
            }
        }
        return out;
    }

    Properties consumerProperties(String group, int maxPollRecords) {
        Properties p = new Properties();
        p.setProperty(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.setProperty(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.setProperty(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.setProperty(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.setProperty(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, Integer.toString(maxPollRecords));
        p.setProperty(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.setProperty(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    private KafkaConsumer<String, String> reader() {
        Properties p = consumerProperties("bench-reader", 5000);
        p.remove(ConsumerConfig.GROUP_ID_CONFIG);
        return new KafkaConsumer<>(p);
    }

    private KafkaProducer<String, String> producer(int lingerMs, int batchSize) {
        Properties p = new Properties();
        p.setProperty(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
        p.setProperty(ProducerConfig.ACKS_CONFIG, "all");
        p.setProperty(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(lingerMs));
        p.setProperty(ProducerConfig.BATCH_SIZE_CONFIG, Integer.toString(batchSize));
        p.setProperty(ProducerConfig.BUFFER_MEMORY_CONFIG, Integer.toString(128 * 1024 * 1024));
        p.setProperty(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.setProperty(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return new KafkaProducer<>(p);
    }

    @Override
    public void close() {
        admin.close(Duration.ofSeconds(5));
    }
}
