package org.hospitalhub.delivery;

import java.sql.Array;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.spi.IdempotentRepository;

/**
 * The persistent idempotent-consumer repository of the hub, table {@code hub_processed} (processor_name = flow,
 * message_id = eventId), shared by all replicas through the hub database. Flows that do not go through the hub's own
 * event store (Kafka sources) filter each batch against it and record the batch once it is delivered, so an event
 * that comes again (producer retry, replay, redelivery after a crash) is counted as a duplicate and not applied again.
 * Batch-oriented methods serve the batch routes; {@link #forProcessor(String)} gives a Camel
 * {@link IdempotentRepository} for the {@code idempotentConsumer} EIP in per-message routes.
 */
@ApplicationScoped
@Named("processedEvents")
public class ProcessedEvents {

    private final Database db;

    private static final String UNSEEN_PORTABLE =
            "SELECT message_id FROM hub_processed WHERE processor_name = ? AND message_id = ANY(?)";
    /**
     * PostgreSQL: one primary-key probe per id, whatever the statistics. With {@code message_id = ANY(?)} the planner,
     * before hub_processed has been analyzed (it grows fast under load, faster than autovacuum analyzes it), reads all
     * the flow's rows and filters them, and a generic plan cached while the table was small does the same: each batch
     * then costs time proportional to the table (the benchmark measured 2 s per 2,000-event batch at 60,000 rows, and
     * 220 ms vs 11 ms for this form at 1,000,000 rows). The LIMIT keeps the lateral subquery from being turned into a
     * join, so the plan stays a nested loop over the batch's ids with an index-only probe each.
     */
    private static final String UNSEEN_POSTGRES = "SELECT u.id FROM unnest(?::varchar[]) AS u(id), LATERAL "
            + "(SELECT 1 FROM hub_processed p WHERE p.processor_name = ? AND p.message_id = u.id LIMIT 1) AS hit";

    public ProcessedEvents(Database db) {
        this.db = db;
    }

    /** The events of the batch not yet processed by the flow, in their order. */
    public List<Event> unseen(String flow, List<Event> events) throws SQLException {
        if (events.isEmpty()) {
            return events;
        }
        Set<String> seen = new HashSet<>();
        boolean postgres = db.isPostgres();
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement(postgres ? UNSEEN_POSTGRES : UNSEEN_PORTABLE)) {
            Array ids = c.createArrayOf("varchar", events.stream().map(Event::eventId).toArray(String[]::new));
            q.setArray(postgres ? 1 : 2, ids);
            q.setString(postgres ? 2 : 1, flow);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    seen.add(rs.getString(1));
                }
            }
        }
        if (seen.isEmpty()) {
            return events;
        }
        List<Event> fresh = new ArrayList<>(events.size() - seen.size());
        for (Event e : events) {
            if (!seen.contains(e.eventId())) {
                fresh.add(e);
            }
        }
        return fresh;
    }

    /** Records the delivered batch for the flow (already recorded ids are ignored). */
    public void record(String flow, List<Event> events) throws SQLException {
        if (events.isEmpty()) {
            return;
        }
        db.inTransaction(c -> {
            insert(c, flow, events.stream().map(Event::eventId).toList());
            return null;
        });
    }

    void insert(Connection c, String flow, List<String> ids) throws SQLException {
        Instant now = Instant.now();
        if (db.isPostgres()) {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO hub_processed (processor_name, message_id, created_at) "
                    + "SELECT ?, u, ? FROM unnest(?::varchar[]) AS u ON CONFLICT DO NOTHING")) {
                ps.setString(1, flow);
                ps.setObject(2, Database.utc(now));
                ps.setArray(3, c.createArrayOf("varchar", ids.toArray(String[]::new)));
                ps.executeUpdate();
            }
        } else {
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO hub_processed (processor_name, message_id, created_at) "
                    + "VALUES (?, ?, ?) ON CONFLICT DO NOTHING")) {
                for (String id : ids) {
                    ps.setString(1, flow);
                    ps.setString(2, id);
                    ps.setObject(3, Database.utc(now));
                    ps.addBatch();
                }
                ps.executeBatch();
            }
        }
    }

    /** A Camel idempotent repository over the same table, for one processor (flow) name. */
    public IdempotentRepository forProcessor(String processor) {
        return new Repository(processor);
    }

    private final class Repository extends org.apache.camel.support.service.ServiceSupport implements IdempotentRepository {
        private final String processor;

        Repository(String processor) {
            this.processor = processor;
        }

        @Override
        public boolean add(String key) {
            try {
                return db.inTransaction(c -> {
                    try (PreparedStatement ps = c.prepareStatement("INSERT INTO hub_processed (processor_name, message_id, "
                            + "created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING")) {
                        ps.setString(1, processor);
                        ps.setString(2, key);
                        ps.setObject(3, Database.utc(Instant.now()));
                        return ps.executeUpdate() == 1;
                    }
                });
            } catch (SQLException e) {
                throw new IllegalStateException("idempotent repository unavailable: " + e.getMessage(), e);
            }
        }

        @Override
        public boolean contains(String key) {
            try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                    "SELECT 1 FROM hub_processed WHERE processor_name = ? AND message_id = ?")) {
                q.setString(1, processor);
                q.setString(2, key);
                try (ResultSet rs = q.executeQuery()) {
                    return rs.next();
                }
            } catch (SQLException e) {
                throw new IllegalStateException("idempotent repository unavailable: " + e.getMessage(), e);
            }
        }

        @Override
        public boolean remove(String key) {
            try {
                return db.inTransaction(c -> {
                    try (PreparedStatement ps = c.prepareStatement(
                            "DELETE FROM hub_processed WHERE processor_name = ? AND message_id = ?")) {
                        ps.setString(1, processor);
                        ps.setString(2, key);
                        return ps.executeUpdate() == 1;
                    }
                });
            } catch (SQLException e) {
                throw new IllegalStateException("idempotent repository unavailable: " + e.getMessage(), e);
            }
        }

        @Override
        public boolean confirm(String key) {
            return true;
        }

        @Override
        public void clear() {
            throw new UnsupportedOperationException("the hub's processed-events table is never cleared wholesale");
        }
    }
}
