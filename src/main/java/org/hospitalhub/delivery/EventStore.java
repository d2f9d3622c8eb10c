package org.hospitalhub.delivery;

import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Function;

import jakarta.enterprise.context.ApplicationScoped;

import org.jboss.logging.Logger;

/**
 * Stores accepted events durably, once each (the {@code eventId} is the key), together with one outbox row per flow
 * that must deliver them, in a single transaction. A sender is acknowledged only after {@link #store} returns.
 */
@ApplicationScoped
public class EventStore {

    private static final Logger LOG = Logger.getLogger(EventStore.class);

    private final Database db;
    private final FlowRegistry flows;
    private final DeliveryMetrics metrics;
    private final Clock clock = Clock.systemUTC();

    public EventStore(Database db, FlowRegistry flows, DeliveryMetrics metrics) {
        this.db = db;
        this.flows = flows;
        this.metrics = metrics;
    }

    public record Stored(List<String> accepted, List<String> duplicates) {
    }

    /**
     * Stores all events or none. Events already stored (same eventId, now or earlier in the same call) are counted
     * as duplicates and not stored again.
     */
    public Stored store(List<Event> events, String via) throws SQLException {
        return store(events, via, flows::flowsFor, null);
    }

    /**
     * Like {@link #store(List, String)}, and runs {@code sameTransaction} (when not null) in the same hub transaction,
     * after the events and outbox rows are written: a poller's high-water mark commits with the events it read, or
     * not at all.
     */
    public Stored store(List<Event> events, String via, Database.SqlWork<?> sameTransaction) throws SQLException {
        return store(events, via, flows::flowsFor, sameTransaction);
    }

    Stored store(List<Event> events, String via, Function<Event, List<Flow>> routing) throws SQLException {
        return store(events, via, routing, null);
    }

    private Stored store(List<Event> events, String via, Function<Event, List<Flow>> routing,
            Database.SqlWork<?> sameTransaction) throws SQLException {
        Instant now = clock.instant();
        List<Event> fresh = new ArrayList<>(events.size());
        List<String> duplicates = new ArrayList<>();
        db.inTransaction(c -> {
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO hub_event (event_id, event_type, source, hospital, "
                    + "event_key, occurred_at, envelope, received_via, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                    + "ON CONFLICT DO NOTHING")) {
                // One statement per event: the update count tells new (1) from duplicate (0), even within one request.
                for (Event e : events) {
                    ins.setString(1, e.eventId());
                    ins.setString(2, e.type());
                    ins.setString(3, e.source());
                    ins.setString(4, e.hospital());
                    ins.setString(5, e.key());
                    ins.setObject(6, e.occurredAt());
                    ins.setString(7, e.envelope());
                    ins.setString(8, via);
                    ins.setObject(9, Database.utc(now));
                    if (ins.executeUpdate() == 1) {
                        fresh.add(e);
                    } else {
                        duplicates.add(e.eventId());
                    }
                }
            }
            try (PreparedStatement out = c.prepareStatement(
                    "INSERT INTO hub_delivery (event_id, flow, status, created_at) VALUES (?, ?, 'PENDING', ?)")) {
                for (Event e : fresh) {
                    List<Flow> targets = routing.apply(e);
                    if (targets.isEmpty()) {
                        LOG.warnf("Event %s of type %s from hospital %s is stored but no flow delivers it",
                                e.eventId(), e.type(), e.hospital());
                    }
                    for (Flow f : targets) {
                        out.setString(1, e.eventId());
                        out.setString(2, f.id());
                        out.setObject(3, Database.utc(now));
                        out.addBatch();
                    }
                }
                out.executeBatch();
            }
            if (sameTransaction != null) {
                sameTransaction.run(c);
            }
            return null;
        });
        Map<String, List<Event>> byFlow = new java.util.HashMap<>();
        for (Event e : fresh) {
            for (Flow f : routing.apply(e)) {
                byFlow.computeIfAbsent(f.id(), k -> new ArrayList<>()).add(e);
            }
        }
        byFlow.forEach((flow, list) -> metrics.received(flow, via, list.size()));
        java.util.Set<String> dup = new java.util.HashSet<>(duplicates);
        for (Event e : events) {
            if (dup.remove(e.eventId())) {
                routing.apply(e).forEach(f -> metrics.duplicates(f.id(), 1));
            }
        }
        return new Stored(events.stream().map(Event::eventId).toList(), duplicates);
    }
}
