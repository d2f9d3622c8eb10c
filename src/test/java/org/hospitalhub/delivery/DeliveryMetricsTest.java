package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;
import java.util.List;
import java.util.concurrent.TimeUnit;

import org.junit.jupiter.api.Test;

import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;

/** The end-to-end delay of delivered events (delivered minus occurredAt), whatever the offset the source wrote. */
class DeliveryMetricsTest {

    private static Event at(String id, OffsetDateTime occurredAt) {
        return new Event(id, "his.charge.created", "his", "demo", "P1", occurredAt, occurredAt.toString(), true, "{}", null, null);
    }

    @Test
    void theDelayIsDeliveredMinusOccurredAtAndAClockAheadCountsAsNone() {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        Instant now = Instant.parse("2026-12-04T06:00:00.750Z");
        new DeliveryMetrics(registry).delivered("f", List.of(
                at("a", OffsetDateTime.ofInstant(now.minusMillis(2_500), ZoneOffset.ofHours(8))), // Beijing time, 2.5 s before
                at("b", OffsetDateTime.ofInstant(now.minusMillis(40), ZoneOffset.UTC)),
                at("c", OffsetDateTime.ofInstant(now.plusSeconds(3), ZoneOffset.ofHours(8)))), now); // the source's clock is ahead
        Timer delay = registry.get("hub.delivery.end.to.end.delay").tag("flow", "f").timer();
        assertEquals(3, delay.count());
        assertEquals(2_540, delay.totalTime(TimeUnit.MILLISECONDS), 1e-6);
        assertEquals(2_500, delay.max(TimeUnit.MILLISECONDS), 1e-6);
        assertEquals(3, registry.get("hub.delivery.delivered").tag("flow", "f").counter().count(), 1e-9);
    }

    @Test
    void aBatchsNotedTimesAreUsedOnlyForThatBatch() {
        Instant t = Instant.now().minusSeconds(3_600);
        List<Event> batch = List.of(at("a", OffsetDateTime.ofInstant(t, ZoneOffset.ofHours(8))),
                at("b", OffsetDateTime.ofInstant(t.minusMillis(500), ZoneOffset.UTC)));
        // noted as the batch was parsed (the array may be longer than the batch: records that were left out)
        Timer noted = report(batch, new DeliveryMetrics.OccurredAt(batch,
                new long[] {t.toEpochMilli(), t.toEpochMilli() - 500, 0}));
        // noted for another list (a batch replaced since): the events themselves are read
        Timer stale = report(batch, new DeliveryMetrics.OccurredAt(new java.util.ArrayList<>(batch), new long[] {0, 0}));
        for (Timer delay : List.of(noted, stale)) {
            assertEquals(2, delay.count());
            double hourAndHalf = 3_600_500;
            assertEquals(hourAndHalf, delay.max(TimeUnit.MILLISECONDS), 60_000);
            assertEquals(3_600_000 + hourAndHalf, delay.totalTime(TimeUnit.MILLISECONDS), 120_000);
        }
    }

    private static Timer report(List<Event> batch, DeliveryMetrics.OccurredAt noted) {
        SimpleMeterRegistry registry = new SimpleMeterRegistry();
        var exchange = new org.apache.camel.support.DefaultExchange(new org.apache.camel.impl.DefaultCamelContext());
        exchange.setProperty("HubFlow", "f");
        exchange.setProperty(DeadLetterStore.BATCH, batch);
        exchange.setProperty(DeliveryMetrics.OCCURRED_AT, noted);
        new DeliveryReport(new DeliveryMetrics(registry)).delivered(exchange);
        return registry.get("hub.delivery.end.to.end.delay").tag("flow", "f").timer();
    }
}
