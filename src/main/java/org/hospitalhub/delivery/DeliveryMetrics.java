package org.hospitalhub.delivery;

import java.time.Duration;
import java.time.Instant;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.enterprise.context.ApplicationScoped;

import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;

/**
 * Per-flow delivery meters, exposed by Prometheus at /q/metrics as hub_delivery_*: received, delivered, duplicates,
 * redeliveries, dead letters, batch size, end-to-end delay (delivered minus occurredAt), backlog, consumer lag.
 */
@ApplicationScoped
public class DeliveryMetrics {

    private final MeterRegistry registry;
    private final Map<String, AtomicLong> gauges = new ConcurrentHashMap<>();
    private final AtomicLong deadLetterStoreFailuresSinceSuccess = new AtomicLong();
    private volatile Instant lastDeadLetterStoreFailure;

    public DeliveryMetrics(MeterRegistry registry) {
        this.registry = registry;
    }

    public void received(String flow, String via, int n) {
        Counter.builder("hub.delivery.received").description("Events accepted (stored or consumed)")
                .tags("flow", flow, "via", via).register(registry).increment(n);
    }

    public void duplicates(String flow, int n) {
        if (n > 0) {
            Counter.builder("hub.delivery.duplicates").description("Events seen again and not applied again")
                    .tag("flow", flow).register(registry).increment(n);
        }
    }

    /** A flow's delivery meters, registered once (a builder's register looks the meter up and runs the filters). */
    private record Delivered(Counter events, DistributionSummary batchSize, Timer delay) {
    }

    private final Map<String, Delivered> delivered = new ConcurrentHashMap<>();

    /**
     * The occurredAt times (epoch milliseconds) of a batch's events, noted as the events were parsed (exchange property
     * {@link #OCCURRED_AT}): the delay metric then reads an array instead of every event again once the batch is
     * delivered, when the events are no longer in the processor's cache (3-4 % of a Kafka flow's CPU).
     */
    public record OccurredAt(List<Event> batch, long[] millis) {
    }

    public static final String OCCURRED_AT = "HubOccurredAt";

    public void delivered(String flow, Collection<Event> events, Instant now) {
        long[] millis = new long[events.size()];
        int i = 0;
        for (Event e : events) {
            millis[i++] = e.occurredAtMillis();
        }
        delivered(flow, millis, i, now);
    }

    /** A delivered batch of {@code n} events, whose occurredAt times are the first {@code n} of {@code occurredMillis}. */
    public void delivered(String flow, long[] occurredMillis, int n, Instant now) {
        Delivered m = delivered.computeIfAbsent(flow, f -> new Delivered(
                Counter.builder("hub.delivery.delivered").description("Events delivered to the receiving system")
                        .tag("flow", f).register(registry),
                DistributionSummary.builder("hub.delivery.batch.size").baseUnit("events")
                        .description("Events per delivered batch").tag("flow", f).register(registry),
                Timer.builder("hub.delivery.end.to.end.delay").description("Delivered time minus the event's occurredAt")
                        .publishPercentileHistogram().minimumExpectedValue(Duration.ofMillis(5))
                        .maximumExpectedValue(Duration.ofHours(1)).tag("flow", f).register(registry)));
        m.events().increment(n);
        m.batchSize().record(n);
        Timer delay = m.delay();
        long nowMs = now.toEpochMilli(); // per event: plain arithmetic, no Instant or Duration made
        for (int i = 0; i < n; i++) {
            delay.record(Math.max(0, nowMs - occurredMillis[i]), TimeUnit.MILLISECONDS);
        }
    }

    public void redelivery(String flow) {
        Counter.builder("hub.delivery.redeliveries").description("Delivery attempts after a failure")
                .tag("flow", flow).register(registry).increment();
    }

    /** kafka-source overlap: a batch handed to the delivery thread while the consumer reads the next. */
    public void handedOff(String flow) {
        Counter.builder("hub.kafka.batches.handed.off")
                .description("Kafka batches delivered on the flow's delivery thread while the consumer read the next")
                .tag("flow", flow).register(registry).increment();
    }

    /** kafka-source overlap: a handed-off batch failed (dead-letter store included) and the consumer was rewound to it. */
    public void rewound(String flow) {
        Counter.builder("hub.kafka.rewinds")
                .description("Kafka consumers rewound to a handed-off batch that was neither delivered nor dead-lettered")
                .tag("flow", flow).register(registry).increment();
    }

    public void deadLettered(String flow, String reason, int n) {
        Counter.builder("hub.delivery.dead.letters").description("Messages parked in the dead-letter store")
                .tags("flow", flow, "reason", reason).register(registry).increment(n);
    }

    public void deadLetterStoreFailed() {
        Counter.builder("hub.delivery.dead.letter.store.failures")
                .description("Dead letters that could not be stored (the message was not acknowledged)")
                .register(registry).increment();
        deadLetterStoreFailuresSinceSuccess.incrementAndGet();
        lastDeadLetterStoreFailure = Instant.now();
    }

    public void deadLetterStoreSucceeded() {
        deadLetterStoreFailuresSinceSuccess.set(0);
    }

    /** Failures of the dead-letter store since it last worked, for the readiness check. */
    public long deadLetterStoreFailuresSinceSuccess() {
        return deadLetterStoreFailuresSinceSuccess.get();
    }

    public Instant lastDeadLetterStoreFailure() {
        return lastDeadLetterStoreFailure;
    }

    public void gauge(String name, String flow, long value, String description) {
        gauges.computeIfAbsent(name + "|" + flow, k -> {
            AtomicLong holder = new AtomicLong();
            Gauge.builder(name, holder, AtomicLong::get).description(description).tag("flow", flow).register(registry);
            return holder;
        }).set(value);
    }

    /** HTTP ingest requests queued for the group commit; at its capacity ingest answers 503 ingest-busy. */
    public void ingestQueue(GroupCommitter<?, ?> writer) {
        Gauge.builder("hub.ingest.waiting.requests", writer, GroupCommitter::waiting)
                .description("HTTP ingest requests waiting to be stored (group commit; 503 ingest-busy when full)")
                .register(registry);
    }

    public void backlog(String flow, long pending) {
        gauge("hub.delivery.backlog.events", flow, pending, "Events stored and not yet delivered");
    }

    public void openDeadLetters(String flow, long open) {
        gauge("hub.delivery.dead.letters.open", flow, open, "Dead letters neither replayed nor discarded");
    }

    public void consumerLag(String flow, long lag) {
        gauge("hub.delivery.consumer.lag.records", flow, lag, "Records on the source topic not yet consumed");
    }
}
