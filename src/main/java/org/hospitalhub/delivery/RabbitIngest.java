package org.hospitalhub.delivery;

import java.sql.SQLException;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.stream.Collectors;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.jboss.logging.Logger;

/**
 * RabbitMQ ingest ({@code rabbitmq-ingest} template): each message is one event envelope or a JSON array of them.
 * {@link #accept} validates it and checks its senders; what it refuses the route dead-letters and acknowledges.
 * {@link #store} stores the events with their outbox rows; the route returns (and the broker gets its ack) only after
 * that transaction has committed, and a failure there leaves the message unacknowledged, so it comes again.
 */
@ApplicationScoped
@Named("rabbitIngest")
public class RabbitIngest {

    private static final Logger LOG = Logger.getLogger(RabbitIngest.class);

    /** Exchange property: comma-separated source codes this ingest accepts, or {@code *}. */
    public static final String ALLOWED_SOURCES = "HubAllowedSources";

    private final EventParser parser;
    private final EventStore store;

    public RabbitIngest(EventParser parser, EventStore store) {
        this.parser = parser;
        this.store = store;
    }

    /**
     * The message's events, validated. Throws {@link InvalidEventException} (never retried) when the message is not
     * valid JSON, breaks the envelope or its type's schema, is of an unknown type, or comes from a source this
     * ingest does not accept.
     */
    public List<Event> accept(Exchange exchange) {
        String body = exchange.getMessage().getBody(String.class);
        String ingest = exchange.getProperty("HubFlow", String.class);
        String allowedText = exchange.getProperty(ALLOWED_SOURCES, "", String.class);
        List<Event> events = parser.parseBody(body);
        Set<String> allowed = Arrays.stream(allowedText.split(",")).map(String::strip).filter(s -> !s.isEmpty())
                .collect(Collectors.toUnmodifiableSet());
        if (!allowed.contains("*")) {
            for (int i = 0; i < events.size(); i++) {
                Event e = events.get(i);
                if (!allowed.contains(e.source())) {
                    String field = events.size() == 1 ? "source" : "[" + i + "].source";
                    exchange.getMessage().setHeader("HubEventId", e.eventId());
                    throw new InvalidEventException(field, "allowed-source", field + ": source '" + e.source()
                            + "' may not send to RabbitMQ ingest " + ingest + " (allowed: " + allowedText + ")");
                }
            }
        }
        return events;
    }

    /** Stores the events (duplicates once) with their outbox rows in one transaction. */
    public void store(List<Event> events, Exchange exchange) throws SQLException {
        EventStore.Stored stored = store.store(events, "rabbitmq");
        LOG.debugf("RabbitMQ ingest %s stored %d events (%d duplicates)", exchange.getProperty("HubFlow"),
                events.size(), stored.duplicates().size());
    }
}
