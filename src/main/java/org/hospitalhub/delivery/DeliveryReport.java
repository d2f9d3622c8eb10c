package org.hospitalhub.delivery;

import java.time.Instant;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;

/** Records a delivered batch in the metrics: delivered, duplicates the sink ignored, batch size, end-to-end delay. */
@ApplicationScoped
@Named("deliveryReport")
public class DeliveryReport {

    private final DeliveryMetrics metrics;

    public DeliveryReport(DeliveryMetrics metrics) {
        this.metrics = metrics;
    }

    @SuppressWarnings("unchecked")
    public void delivered(Exchange exchange) {
        String flow = exchange.getProperty("HubFlow", String.class);
        List<Event> batch = exchange.getProperty(DeadLetterStore.BATCH, List.class);
        if (batch == null || batch.isEmpty()) {
            return;
        }
        int duplicates = exchange.getMessage().getHeader(JdbcBatchSink.DUPLICATES, 0, Integer.class);
        metrics.duplicates(flow, duplicates);
        var noted = exchange.getProperty(DeliveryMetrics.OCCURRED_AT, DeliveryMetrics.OccurredAt.class);
        if (noted != null && noted.batch() == batch) {
            metrics.delivered(flow, noted.millis(), batch.size(), Instant.now());
        } else {
            metrics.delivered(flow, batch, Instant.now());
        }
    }
}
