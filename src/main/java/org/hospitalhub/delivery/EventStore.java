package org.hospitalhub.delivery;

import java.sql.PreparedStatement;
import java.sql.SQLException;
import java.time.Clock;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.function.Function;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
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

    private final GroupCommitter<Request, Stored> writer;

    public EventStore(Database db, FlowRegistry flows, DeliveryMetrics metrics,
            @ConfigProperty(name = "hub.ingest.group-commit.max-events", defaultValue = "1000") int groupEvents,
            @ConfigProperty(name = "hub.ingest.group-commit.max-waiting", defaultValue = "10000") int groupWaiting) {
        this.db = db;
        this.flows = flows;
        this.metrics = metrics;
        this.writer = new GroupCommitter<>("hub-ingest-store", groupEvents, groupWaiting, r -> r.events().size(), this::storeAll);
        metrics.ingestQueue(writer);
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
        return write(List.of(new Request(events, via)), routing, sameTransaction).get(0);
    }

    /** Stores an event once (a second insert of its eventId changes nothing): bound by {@link #bindEvent}. */
    static final String INSERT_EVENT = "INSERT INTO hub_event (event_id, event_type, source, hospital, event_key, "
            + "occurred_at, envelope, received_via, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

    static void bindEvent(PreparedStatement ins, Event e, String via, Instant now) throws SQLException {
        ins.setString(1, e.eventId());
        ins.setString(2, e.type());
        ins.setString(3, e.source());
        ins.setString(4, e.hospital());
        ins.setString(5, e.key());
        ins.setObject(6, e.occurredAt());
        ins.setString(7, e.envelope());
        ins.setString(8, via);
        ins.setObject(9, Database.utc(now));
    }

    /** One sender's events, stored all or none. */
    public record Request(List<Event> events, String via) {
    }

    /**
     * Stores the request through the ingest's group commit (see {@link GroupCommitter}): completes with what
     * {@link #store(List, String)} returns once the request is committed, together with the other requests waiting
     * at that moment, exceptionally when it could not be stored (nothing of it is then stored), with
     * {@link GroupCommitter.Busy} when too many requests are waiting.
     */
    public CompletableFuture<Stored> storeGrouped(List<Event> events, String via) {
        return writer.submit(new Request(events, via));
    }

    /** Stores each request all or none, in one transaction; a request whose event is stored already counts it a duplicate. */
    List<Stored> storeAll(List<Request> group) throws SQLException {
        return write(group, flows::flowsFor, null);
    }

    private List<Stored> write(List<Request> group, Function<Event, List<Flow>> routing, Database.SqlWork<?> sameTransaction)
            throws SQLException {
        Instant now = clock.instant();
        List<List<Event>> fresh = new ArrayList<>(group.size());
        List<List<Event>> duplicates = new ArrayList<>(group.size());
        List<Map<String, Integer>> received = new ArrayList<>(group.size()); // per request: new events per flow
        db.inTransaction(c -> {
            fresh.clear();
            duplicates.clear();
            received.clear();
            try (PreparedStatement ins = c.prepareStatement(INSERT_EVENT)) {
                for (Request r : group) {
                    for (Event e : r.events()) {
                        bindEvent(ins, e, r.via(), now);
                        ins.addBatch();
                    }
                }
                // One statement per event in one round trip: its update count tells new (1) from duplicate (0), even
                // for the same eventId twice in one request or group (the first one counts).
                int[] counts = ins.executeBatch();
                int i = 0;
                for (Request r : group) {
                    List<Event> f = new ArrayList<>(r.events().size());
                    List<Event> d = new ArrayList<>();
                    for (Event e : r.events()) {
                        int n = counts[i++];
                        if (n == 1) {
                            f.add(e);
                        } else if (n == 0) {
                            d.add(e);
                        } else {
                            throw new SQLException("the JDBC driver did not report whether event " + e.eventId() + " was new "
                                    + "(update count " + n + "); do not set reWriteBatchedInserts on the hub's datasource");
                        }
                    }
                    fresh.add(f);
                    duplicates.add(d);
                }
            }
            try (PreparedStatement out = c.prepareStatement(
                    "INSERT INTO hub_delivery (event_id, flow, status, created_at) VALUES (?, ?, 'PENDING', ?)")) {
                boolean any = false;
                for (List<Event> f : fresh) {
                    Map<String, Integer> byFlow = new HashMap<>();
                    received.add(byFlow);
                    for (Event e : f) {
                        List<Flow> targets = routing.apply(e);
                        if (targets.isEmpty()) {
                            LOG.warnf("Event %s of type %s from hospital %s is stored but no flow delivers it",
                                    e.eventId(), e.type(), e.hospital());
                        }
                        for (Flow fl : targets) {
                            byFlow.merge(fl.id(), 1, Integer::sum);
                            out.setString(1, e.eventId());
                            out.setString(2, fl.id());
                            out.setObject(3, Database.utc(now));
                            out.addBatch();
                            any = true;
                        }
                    }
                }
                if (any) {
                    out.executeBatch();
                }
            }
            if (sameTransaction != null) {
                sameTransaction.run(c);
            }
            return null;
        });
        List<Stored> results = new ArrayList<>(group.size());
        for (int g = 0; g < group.size(); g++) {
            Request r = group.get(g);
            received.get(g).forEach((flow, n) -> metrics.received(flow, r.via(), n));
            duplicates.get(g).forEach(e -> routing.apply(e).forEach(f -> metrics.duplicates(f.id(), 1)));
            results.add(new Stored(r.events().stream().map(Event::eventId).toList(),
                    duplicates.get(g).stream().map(Event::eventId).toList()));
        }
        return results;
    }

    @PreDestroy
    void stop() {
        writer.close();
    }
}
