package org.hospitalhub.delivery;

import java.sql.SQLException;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.apache.camel.ProducerTemplate;
import org.apache.camel.component.kafka.KafkaConstants;
import org.apache.camel.component.kafka.consumer.KafkaManualCommit;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.common.TopicPartition;
import org.jboss.logging.Logger;

import io.quarkus.arc.ClientProxy;

/**
 * Turns a polled Kafka batch (camel-kafka batching mode: a list of record exchanges) into events, and commits its
 * offsets once the batch is delivered or dead-lettered. Kafka is the durable store of these flows: nothing is
 * committed before the sink (or the dead-letter store) has the events, so a crash replays from the last commit.
 */
@ApplicationScoped
@Named("kafkaBatch")
public class KafkaBatch {

    public static final String RECORDS = "HubKafkaRecords";
    /** Events of the batch left to deliver after dedupe (the kafka-source template filters on it). */
    public static final String BATCH_SIZE = "HubBatchSize";
    /** kafka-source's dedupe parameter: repository (hub_processed, the default) or sink. */
    static final String DEDUPE = "HubDedupe";
    public static final String SINK_DEDUPE = "sink";
    /** The last record's commit per partition, noted while the batch is read. */
    private static final String COMMITS = "HubKafkaCommits";
    /** kafka-source's overlap parameter: "true" lets a batch be delivered while the consumer reads the next. */
    static final String OVERLAP = "HubOverlap";
    /** Set by toEvents: hand this batch to the flow's delivery thread (see {@link #handOff}). */
    private static final String HAND_OFF = "HubHandOff";
    /** Set by handOff: the batch's offsets are committed by the next batch, once it is delivered. */
    private static final String HANDED_OFF = "HubHandedOff";
    /** The route a handed-off batch is delivered on, with the flows' error handling (templates.camel.yaml). */
    static final String HANDED_OFF_DELIVERY = "direct:hub-kafka-deliver";

    private static final Logger LOG = Logger.getLogger(KafkaBatch.class);

    private final EventParser parser;
    private final DeliveryMetrics metrics;
    private final ProducerTemplate producer;
    private final ProcessedEvents processed;
    private final EventStore store;
    /**
     * The batch each consumer handed off and has not settled yet: at most one per consumer, read and written on the
     * consumer's own thread only. Weak keys: a consumer Camel closed and replaced leaves with its entry.
     */
    private final Map<org.apache.kafka.clients.consumer.Consumer<?, ?>, Pending> pending =
            java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());
    private ExecutorService deliveryThreads;

    public KafkaBatch(EventParser parser, DeliveryMetrics metrics, ProducerTemplate producer, ProcessedEvents processed,
            EventStore store) {
        this.parser = ClientProxy.unwrap(parser); // called once per record: skip the proxy's lookup
        this.metrics = metrics;
        this.producer = producer;
        this.processed = processed;
        this.store = store;
    }

    /**
     * kafka-ingest: parses the polled records, dead-letters the invalid ones and those from a source the ingest does
     * not accept, and stores the valid ones in the hub's event store (events + outbox rows, one transaction). Throws
     * if the store fails, so the offsets are not committed and the records come again.
     */
    public void ingest(Exchange exchange, @org.apache.camel.ExchangeProperty("HubAllowedSources") String allowed)
            throws SQLException {
        String ingest = exchange.getProperty("HubFlow", String.class);
        Set<String> sources = allowed == null || allowed.isBlank() || allowed.strip().equals("*") ? null
                : Set.of(allowed.strip().split("\\s*,\\s*"));
        Read read = read(exchange, ingest, sources, false);
        deadLetterInvalid(exchange, ingest, read.invalid());
        EventStore.Stored stored = store.store(read.events(), "kafka");
        metrics.duplicates(ingest, stored.duplicates().size());
    }

    /**
     * Parses the records; invalid ones go to the dead-letter store, duplicates in the batch are dropped. With overlap
     * on, the batch the consumer handed off before is settled first (see {@link #handOff}): the parsing above runs
     * while that batch is still being delivered, everything after it (dead letters, the processed-events lookup, this
     * batch's delivery) once that batch is in the sink and its offsets are committed.
     */
    @SuppressWarnings("unchecked")
    public List<Event> toEvents(Exchange exchange) throws SQLException {
        String flow = exchange.getProperty("HubFlow", String.class);
        Read read = read(exchange, flow, null, true);
        List<Exchange> records = exchange.getProperty(RECORDS, List.class);
        org.apache.kafka.clients.consumer.Consumer<?, ?> consumer = consumerOf(exchange.getProperty(COMMITS, Map.class));
        if (consumer != null && !settle(consumer, records.size())) {
            // the batch before failed and the consumer was rewound to it: this one comes again after it
            exchange.setProperty(COMMITS, Map.of());
            exchange.setProperty(BATCH_SIZE, 0);
            return List.of();
        }
        deadLetterInvalid(exchange, flow, read.invalid());
        List<Event> events = read.events();
        long[] occurred = read.occurredMillis();
        int duplicates = read.repeats();
        // dedupe "sink" (kafka-source; the route check allows it with a jdbc-sink only): the sink's unique event_id drops
        // what was delivered before, and counts it (DeliveryReport)
        boolean repository = !SINK_DEDUPE.equals(exchange.getProperty(DEDUPE, String.class));
        List<Event> fresh = repository ? processed.unseen(flow, events) : events;
        duplicates += events.size() - fresh.size();
        metrics.duplicates(flow, duplicates);
        if (fresh != events) { // some were delivered before: the times of those left
            occurred = fresh.stream().mapToLong(Event::occurredAtMillis).toArray();
        }
        exchange.setProperty(DeadLetterStore.BATCH, fresh);
        exchange.setProperty(DeliveryMetrics.OCCURRED_AT, new DeliveryMetrics.OccurredAt(fresh, occurred));
        exchange.setProperty(JdbcBatchSink.RECORD_PROCESSED, repository);
        exchange.setProperty(BATCH_SIZE, fresh.size());
        // hand off only with at least another batch like this one waiting in the partitions: the next batch then comes
        // at once and commits this one's offsets; the last batch before a quiet spell is delivered and committed here
        exchange.setProperty(HAND_OFF, consumer != null && !fresh.isEmpty()
                && "true".equals(exchange.getProperty(OVERLAP, String.class)) && backlog(consumer) >= records.size());
        return fresh;
    }

    /** A read batch: its events, the repeats left out, the kept events' occurredAt times (delivery only), and the invalid records. */
    private record Read(List<Event> events, int repeats, long[] occurredMillis, List<Invalid> invalid) {
    }

    /** A record that is not a valid event (or came from a source not allowed): dead-lettered once the batch may proceed. */
    private record Invalid(String topic, Object value, InvalidEventException why) {
    }

    /**
     * The batch's records as events, in order: a record that is not a valid event, or (with {@code sources}) comes from
     * a source not in it, is noted for the dead-letter store. Notes the records, the offsets to commit after the batch
     * and its topic on the exchange. With {@code forDelivery}, an event whose eventId came earlier in the batch is left
     * out and counted as a repeat, and the kept events' occurredAt times are noted in order (see
     * {@link DeliveryMetrics.OccurredAt}): both while each event is parsed and still in the processor's cache (passes
     * over the batch afterwards were 4 % and 7 % of a Kafka flow's CPU).
     */
    @SuppressWarnings("unchecked")
    private Read read(Exchange exchange, String flow, Set<String> sources, boolean forDelivery) {
        List<Exchange> records = exchange.getMessage().getBody(List.class);
        exchange.setProperty(RECORDS, records);
        List<Event> events = new ArrayList<>(records.size());
        Set<String> seen = forDelivery ? new HashSet<>(records.size() * 2) : null; // sized once: no rehashing
        long[] occurred = forDelivery ? new long[records.size()] : null;
        List<Invalid> invalid = List.of();
        int repeats = 0;
        for (Exchange r : records) {
            Object value = r.getMessage().getBody();
            try {
                Event e = parse(value);
                if (sources != null && !sources.contains(e.source())) {
                    throw new InvalidEventException(InvalidEventException.Kind.INVALID, "source",
                            "allowedSources", "source '" + e.source() + "' may not send on topic " + topicOf(r));
                }
                if (seen == null || seen.add(e.eventId())) {
                    if (occurred != null) {
                        occurred[events.size()] = e.occurredAtMillis();
                    }
                    events.add(e);
                } else {
                    repeats++;
                }
            } catch (InvalidEventException bad) {
                if (invalid.isEmpty()) {
                    invalid = new ArrayList<>();
                }
                invalid.add(new Invalid(topicOf(r), value, bad));
            }
        }
        exchange.setProperty(COMMITS, lastCommits(records));
        exchange.setProperty(DeadLetterStore.SOURCE_TOPIC, records.isEmpty() ? null : topicOf(records.get(records.size() - 1)));
        metrics.received(flow, "kafka", records.size());
        return new Read(events, repeats, occurred, invalid);
    }

    /** Dead-letters the batch's invalid records (the dead-letter route throws if the store fails: then nothing is committed). */
    private void deadLetterInvalid(Exchange exchange, String flow, List<Invalid> invalid) {
        if (invalid.isEmpty()) {
            return;
        }
        Object topic = exchange.getProperty(DeadLetterStore.SOURCE_TOPIC);
        for (Invalid i : invalid) {
            exchange.setProperty(DeadLetterStore.SOURCE_TOPIC, i.topic());
            deadLetterInvalid(flow, i.topic(), text(i.value()), i.why());
        }
        exchange.setProperty(DeadLetterStore.SOURCE_TOPIC, topic);
    }

    /**
     * kafka-source with overlap: hands the batch, parsed and deduplicated, to the flow's delivery thread, which
     * delivers it through {@value #HANDED_OFF_DELIVERY} (the sink, with the flows' redelivery and dead-letter channel),
     * and returns, so that the consumer reads and parses the next batch meanwhile (on the benchmark's load, the
     * consumer thread waited for PostgreSQL almost half of its time). Nothing else changes:
     * <ul>
     * <li>offsets are still committed only after their batch is delivered (or dead-lettered): this batch's by the next
     * one, on the consumer's thread, before the next one is delivered;</li>
     * <li>one batch at a time per consumer, in order: the next batch is delivered only after this one settled;</li>
     * <li>if this batch fails (its dead-letter store failed too), the next one is not delivered: the consumer is
     * rewound to its last commit, where this batch began, and reads both again, as a failed batch is read again without
     * overlap.</li>
     * </ul>
     * A handed-off batch whose commit is lost (a crash, a rebalance, a stop before the next batch) is read again and
     * dropped as duplicates by the flow's dedupe, as after any commit that did not happen.
     */
    @SuppressWarnings("unchecked")
    public void handOff(Exchange exchange) {
        Map<Object, KafkaManualCommit> commits = exchange.getProperty(COMMITS, Map.class);
        org.apache.kafka.clients.consumer.Consumer<?, ?> consumer = consumerOf(commits);
        Exchange batch = org.apache.camel.builder.ExchangeBuilder.anExchange(exchange.getContext()).build();
        exchange.getProperties().forEach((name, value) -> {
            if (!RECORDS.equals(name) && !COMMITS.equals(name) && !HAND_OFF.equals(name)) {
                batch.setProperty(name, value);
            }
        });
        batch.getMessage().setBody(exchange.getMessage().getBody());
        exchange.setProperty(HANDED_OFF, true); // the onCompletion commit leaves the offsets to the next batch
        CompletableFuture<Exchange> done = CompletableFuture.supplyAsync(
                () -> producer.send(HANDED_OFF_DELIVERY, batch), deliveryThreads(exchange.getContext()));
        String flow = exchange.getProperty("HubFlow", String.class);
        pending.put(consumer, new Pending(done, commits, flow, exchange.getProperty(BATCH_SIZE, 0, Integer.class)));
        metrics.handedOff(flow);
    }

    /**
     * A batch handed off and not settled yet: its delivery, its offsets to commit, its flow and size (for the log).
     * Not its records: a batch in delivery holds only its events, so that two batches read ahead fit in the young
     * generation (holding the records too sent them to the old one, in full collections, in the benchmark).
     */
    private record Pending(CompletableFuture<Exchange> delivery, Map<Object, KafkaManualCommit> commits, String flow,
            int events) {
    }

    /**
     * Waits for the batch the consumer handed off before, if any: delivered (or dead-lettered), its offsets are
     * committed and the method returns true. Failed, the consumer is rewound to its last commit (see {@link #rewind})
     * and the method returns false: that batch and the ones read after it are read again.
     */
    private boolean settle(org.apache.kafka.clients.consumer.Consumer<?, ?> consumer, int readAfter) {
        Pending before = pending.remove(consumer);
        if (before == null) {
            return true;
        }
        Throwable failure;
        try {
            Exchange delivered = before.delivery().get();
            failure = delivered.getException();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt(); // the consumer is stopping: commit nothing, read it again next time
            failure = e;
        } catch (ExecutionException e) {
            failure = e.getCause();
        }
        if (failure == null) {
            commitAll(before.commits().values());
            return true;
        }
        Map<TopicPartition, Long> from = rewind(consumer);
        metrics.rewound(before.flow());
        LOG.warnf("flow %s: a batch of %d events was neither delivered nor dead-lettered (%s); nothing of it or of the "
                + "%d records read after it is committed, and the consumer reads them again from %s", before.flow(),
                before.events(), kind(failure), readAfter, from);
        return false;
    }

    /**
     * Seeks each partition of the consumer back to the offset last asked to be committed for it (where the failed
     * batch began: the batch before it was committed before it was handed off), or, for a partition this consumer has
     * not committed yet, to the group's committed offset, or to its beginning (the templates read from the earliest).
     * As after a restart: what was read since is read again, and what had been delivered of it is dropped as a
     * duplicate by the flow's dedupe.
     */
    private static Map<TopicPartition, Long> rewind(org.apache.kafka.clients.consumer.Consumer<?, ?> consumer) {
        Map<TopicPartition, Long> asked = ASKED.getOrDefault(consumer, Map.of());
        Set<TopicPartition> assigned = consumer.assignment();
        Set<TopicPartition> unknown = new HashSet<>();
        Map<TopicPartition, Long> from = new LinkedHashMap<>();
        for (TopicPartition tp : assigned) {
            Long offset = asked.get(tp);
            if (offset != null) {
                consumer.seek(tp, offset);
                from.put(tp, offset);
            } else {
                unknown.add(tp);
            }
        }
        if (!unknown.isEmpty()) {
            Map<TopicPartition, OffsetAndMetadata> committed = Map.of();
            if (!Thread.currentThread().isInterrupted()) { // stopping: no call to the broker, which would throw
                try {
                    committed = consumer.committed(unknown);
                } catch (RuntimeException e) {
                    LOG.warnf("could not read the group's committed offsets of %s (%s): reading them from their beginning",
                            unknown, e.toString());
                }
            }
            for (TopicPartition tp : unknown) {
                OffsetAndMetadata o = committed.get(tp);
                if (o != null) {
                    consumer.seek(tp, o.offset());
                    from.put(tp, o.offset());
                } else { // nothing known to be delivered: from the start, whatever was delivered is dropped as a duplicate
                    consumer.seekToBeginning(List.of(tp));
                    from.put(tp, 0L);
                }
            }
        }
        return from;
    }

    /** A failure's class and SQLState: the driver's message can quote the rows (patient data). */
    private static String kind(Throwable failure) {
        return failure instanceof SQLException sql ? failure.getClass().getSimpleName() + ", SQLState " + sql.getSQLState()
                : failure.getClass().getName();
    }

    /** Records known to be waiting in the consumer's partitions beyond what it has read (from its last fetch). */
    private static long backlog(org.apache.kafka.clients.consumer.Consumer<?, ?> consumer) {
        long lag = 0;
        for (TopicPartition tp : consumer.assignment()) {
            java.util.OptionalLong l = consumer.currentLag(tp);
            if (l.isPresent()) {
                lag += l.getAsLong();
            }
        }
        return lag;
    }

    /** The Kafka consumer whose batch this is, or null when its commits are not Camel's default ones. */
    private static org.apache.kafka.clients.consumer.Consumer<?, ?> consumerOf(Map<Object, KafkaManualCommit> commits) {
        if (commits != null) {
            for (KafkaManualCommit c : commits.values()) {
                return c instanceof org.apache.camel.component.kafka.consumer.DefaultKafkaManualCommit d ? d.getConsumer() : null;
            }
        }
        return null;
    }

    private synchronized ExecutorService deliveryThreads(org.apache.camel.CamelContext camel) {
        if (deliveryThreads == null) {
            // at most one batch in delivery per consumer: as many threads as consumers with a batch in flight
            deliveryThreads = camel.getExecutorServiceManager().newCachedThreadPool(this, "hub-kafka-delivery");
        }
        return deliveryThreads;
    }

    /** After the sink succeeded: records the batch as processed, before the offsets are committed. */
    @SuppressWarnings("unchecked")
    public void delivered(Exchange exchange) throws SQLException {
        List<Event> batch = exchange.getProperty(DeadLetterStore.BATCH, List.class);
        // RECORD_PROCESSED: toEvents found the flow deduplicating by hub_processed (not by its sink)
        if (batch != null && exchange.getProperty(JdbcBatchSink.RECORD_PROCESSED, false, Boolean.class)
                && !exchange.getProperty(JdbcBatchSink.PROCESSED_RECORDED, false, Boolean.class)) {
            processed.record(exchange.getProperty("HubFlow", String.class), batch);
        }
    }

    /**
     * A record's value: its UTF-8 bytes as the templates read them (valueDeserializer ByteArrayDeserializer, parsed
     * without decoding them into a String first), or text from a consumer configured otherwise.
     */
    private Event parse(Object value) {
        if (value instanceof byte[] utf8) {
            return parser.parseOne(utf8);
        }
        return parser.parseOne(value == null ? null : value.toString());
    }

    /** The value as text, for its dead letter (bytes that are not UTF-8 keep their replacement characters). */
    static String text(Object value) {
        return value instanceof byte[] utf8 ? new String(utf8, java.nio.charset.StandardCharsets.UTF_8)
                : value == null ? null : value.toString();
    }

    void deadLetterInvalid(String flow, String topic, String value, InvalidEventException bad) {
        // Sent through the dead-letter route itself, which throws if the store fails: then nothing is committed.
        Exchange ex = producer.send("direct:hub-dead-letter", e -> {
            e.setProperty("HubFlow", flow);
            e.setProperty(DeadLetterStore.SOURCE_TOPIC, topic);
            e.getMessage().setBody(value);
            e.getMessage().setHeader("HubEventId", eventIdOf(value));
            e.setProperty(Exchange.EXCEPTION_CAUGHT, bad);
        });
        if (ex.getException() != null) {
            throw new IllegalStateException("dead-letter store failed: " + ex.getException().getMessage(), ex.getException());
        }
    }

    /**
     * One asynchronous commit for all partitions of the batch, issued on the consumer's own thread (onCompletion
     * BeforeConsumer) once the batch is in the sink or the dead-letter store. The consumer does not wait for the
     * broker's answer before it polls the next batch: a synchronous commit cost every batch a round trip to the group
     * coordinator (about a tenth of the consumer thread's time in the benchmark). What this gives up is nothing the
     * flow relies on: an offset is still committed only after its records are stored, so a commit that is lost (a crash
     * before the broker has it, a rebalance) means records read again, which the flow's dedupe drops (hub_processed, or
     * the staging table's unique event_id). A commit the broker refuses is superseded by the next batch's, or asked
     * again (see {@link #commitAsync}); Kafka's consumer waits for the commits in flight when it is closed.
     */
    private static void commitAll(java.util.Collection<KafkaManualCommit> commits) {
        if (commits.isEmpty()) {
            return;
        }
        org.apache.kafka.clients.consumer.Consumer<?, ?> consumer = null;
        Map<TopicPartition, OffsetAndMetadata> offsets = new LinkedHashMap<>();
        for (KafkaManualCommit c : commits) {
            if (!(c instanceof org.apache.camel.component.kafka.consumer.DefaultKafkaManualCommit d)
                    || consumer != null && d.getConsumer() != consumer) {
                commits.forEach(KafkaManualCommit::commit); // not the default commit: let Camel do it
                return;
            }
            consumer = d.getConsumer();
            offsets.put(d.getPartition(), new OffsetAndMetadata(d.getRecordOffset() + 1));
        }
        commitAsync(consumer, offsets, 0);
    }

    /** How often a refused commit that nothing superseded is asked again. */
    private static final int COMMIT_RETRIES = 5;
    /**
     * The offset last asked to be committed, per consumer and partition; read and written on each consumer's own thread
     * (the commit callbacks run inside its poll). Weak keys: a consumer Camel closed and replaced leaves with its map.
     */
    private static final Map<org.apache.kafka.clients.consumer.Consumer<?, ?>, Map<TopicPartition, Long>> ASKED =
            java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

    /**
     * Asks for the commit without waiting for the answer. A commit the broker fails with a retriable error (its
     * coordinator moved or was unreachable until the request timed out) is asked again, for the partitions whose
     * offset nothing newer has superseded, up to {@link #COMMIT_RETRIES} times: otherwise, after the last batch before
     * a quiet spell, the group's committed offsets (and the consumer-lag metric and alert) would stay behind records
     * that were delivered long ago. A commit refused for good (the partition was reassigned) is left: whoever reads
     * those records again drops them as duplicates.
     */
    private static void commitAsync(org.apache.kafka.clients.consumer.Consumer<?, ?> consumer,
            Map<TopicPartition, OffsetAndMetadata> offsets, int attempt) {
        Map<TopicPartition, Long> asked = ASKED.computeIfAbsent(consumer, c -> new java.util.HashMap<>());
        offsets.forEach((tp, o) -> asked.put(tp, o.offset()));
        consumer.commitAsync(offsets, (done, error) -> {
            if (error == null) {
                return;
            }
            Map<TopicPartition, OffsetAndMetadata> again = notSuperseded(done, asked);
            boolean retry = error instanceof org.apache.kafka.common.errors.RetriableException && attempt < COMMIT_RETRIES
                    && !again.isEmpty();
            LOG.infof("Kafka offset commit of %s refused (%s); %s", done, error.toString(),
                    retry ? "asking again for " + again.keySet() : "a later commit or the next reader covers it");
            if (retry) {
                commitAsync(consumer, again, attempt + 1);
            }
        });
    }

    /** The failed offsets still the latest asked for their partition (a later batch's commit supersedes the rest). */
    static Map<TopicPartition, OffsetAndMetadata> notSuperseded(Map<TopicPartition, OffsetAndMetadata> failed,
            Map<TopicPartition, Long> asked) {
        Map<TopicPartition, OffsetAndMetadata> again = new LinkedHashMap<>();
        if (failed != null) {
            failed.forEach((tp, o) -> {
                Long latest = asked.get(tp);
                if (latest != null && latest == o.offset()) {
                    again.put(tp, o);
                }
            });
        }
        return again;
    }

    /** The eventId of a record that failed validation, if it has one, so its dead letter can be found by it. */
    static String eventIdOf(String raw) {
        try {
            var node = LENIENT.readTree(raw);
            var id = node == null ? null : node.get("eventId");
            return id != null && id.isTextual() && id.asText().length() <= 200 ? id.asText() : null;
        } catch (Exception notJson) {
            return null;
        }
    }

    private static final com.fasterxml.jackson.databind.ObjectMapper LENIENT = new com.fasterxml.jackson.databind.ObjectMapper();

    private static String topicOf(Exchange record) {
        return record.getMessage().getHeader(KafkaConstants.TOPIC, String.class);
    }

    /**
     * The commit of the last record of each partition in the batch. Read from the end of the batch, and only until
     * every partition assigned to the consumer has been seen: Camel's headers are a case-insensitive TreeMap, and one
     * lookup per record (in a batch of 2,000 from 4 partitions, where a handful of lookups from the end suffice) was
     * 5-7 % of the flow's CPU. A partition the consumer lost since the poll may be missed: its records are not
     * committed here, and whoever reads them again drops them as duplicates.
     */
    static Map<Object, KafkaManualCommit> lastCommits(List<Exchange> records) {
        Map<Object, KafkaManualCommit> commits = new LinkedHashMap<>();
        Set<TopicPartition> assigned = null;
        for (int i = records.size() - 1; i >= 0; i--) {
            org.apache.camel.Message m = records.get(i).getMessage();
            KafkaManualCommit commit = m.getHeader(KafkaConstants.MANUAL_COMMIT, KafkaManualCommit.class);
            if (commit instanceof org.apache.camel.component.kafka.consumer.DefaultKafkaManualCommit d) {
                commits.putIfAbsent(d.getPartition(), commit);
                if (assigned == null) {
                    assigned = d.getConsumer().assignment();
                }
                if (commits.size() >= assigned.size() && commits.keySet().containsAll(assigned)) {
                    break;
                }
            } else if (commit != null) {
                commits.putIfAbsent(m.getHeader(KafkaConstants.TOPIC, String.class) + "/" + m.getHeader(KafkaConstants.PARTITION), commit);
            }
        }
        return commits;
    }

    /**
     * Commits, per partition, the offset after the last record of the batch: the commits noted while the batch was
     * read, or, when reading it failed before the end (the batch was dead-lettered), found again in the records.
     */
    @SuppressWarnings("unchecked")
    public void commit(Exchange exchange) {
        if (exchange.getProperty(HANDED_OFF, false, Boolean.class)) {
            return; // committed by the next batch, once this one is delivered (handOff)
        }
        Map<Object, KafkaManualCommit> commits = exchange.getProperty(COMMITS, Map.class);
        if (commits == null) {
            List<Exchange> records = exchange.getProperty(RECORDS, List.class);
            if (records == null) {
                return;
            }
            commits = lastCommits(records);
        }
        // a batch handed off before and not settled yet (this batch failed before toEvents settled it, and was then
        // dead-lettered): never commit past it; settled now, or, if it failed, the consumer is rewound to it instead
        org.apache.kafka.clients.consumer.Consumer<?, ?> consumer = consumerOf(commits);
        if (consumer != null && !settle(consumer, 0)) {
            return;
        }
        commitAll(commits.values());
    }
}
