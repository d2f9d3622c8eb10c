package org.hospitalhub.delivery;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.EnumMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.apache.camel.CamelContext;
import org.apache.camel.Endpoint;
import org.apache.camel.Exchange;
import org.apache.camel.ProducerTemplate;
import org.apache.camel.Route;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.TextNode;

import io.quarkus.runtime.StartupEvent;

/**
 * The parked messages of table {@code dead_letter}, for operators: list and show them, replay them into their flow,
 * or discard them with a reason. A letter leaves OPEN once (REPLAYED or DISCARDED, with who, when and why): the
 * change is a conditional update under a row lock, so a replay asked twice, even at the same moment, applies once.
 * <p>
 * Replay re-injects the event where it failed:
 * <ul>
 * <li>an outbox flow with the event's outbox row: the row goes DEAD to PENDING in the transaction that marks the letter
 * REPLAYED, and the flow reads its outbox again ({@link Outbox#rescan});</li>
 * <li>an outbox flow without a row (the letter came from elsewhere): the event is stored and a PENDING row created,
 * in the same transaction;</li>
 * <li>any other flow (Kafka-sourced): the event is sent as a batch of one to {@code direct:deliver-<flow>} and the
 * letter is marked REPLAYED only if the sink took it (the letter's row stays locked meanwhile). A failure leaves the
 * letter OPEN with the new error and one more attempt.</li>
 * </ul>
 * A letter whose payload is not a valid event cannot be replayed.
 */
@ApplicationScoped
public class DeadLetters {

    private static final Logger LOG = Logger.getLogger(DeadLetters.class);
    static final int PREVIEW = 200;
    static final int ERROR_PREVIEW = 500;

    private final Database db;
    private final Outbox outbox;
    private final FlowRegistry flows;
    private final EventParser parser;
    private final DeadLetterStore store;
    private final DeliveryMetrics metrics;
    private final CamelContext camel;
    private final ProducerTemplate producer;
    private final ObjectMapper mapper;

    public DeadLetters(Database db, Outbox outbox, FlowRegistry flows, EventParser parser, DeadLetterStore store,
            DeliveryMetrics metrics, CamelContext camel, ProducerTemplate producer, ObjectMapper mapper) {
        this.db = db;
        this.outbox = outbox;
        this.flows = flows;
        this.parser = parser;
        this.store = store;
        this.metrics = metrics;
        this.camel = camel;
        this.producer = producer;
        this.mapper = mapper;
    }

    public enum Status {
        OPEN,
        REPLAYED,
        DISCARDED
    }

    /** What a replay or discard did with one letter. */
    public enum Outcome {
        /** Back on the flow's outbox; the flow delivers it in its next batches. */
        REQUEUED,
        /** Sent to the flow's sink directly, which took it. */
        DELIVERED,
        /** Sent to the flow's sink directly, which failed again: the letter stays OPEN. */
        FAILED,
        /** The letter holds no valid event, or its flow no longer exists. */
        NOT_REPLAYABLE,
        /** Discarded with a reason, kept for audit. */
        DISCARDED,
        /** Already replayed or discarded (or the event was already delivered). */
        CONFLICT,
        NOT_FOUND
    }

    /** List filters; null means "any". {@code from} inclusive, {@code to} exclusive, both on last_failed_at. */
    public record Filter(String flow, String type, String error, Status status, Instant from, Instant to) {

        public boolean narrows() {
            return flow != null || type != null || error != null || from != null || to != null;
        }

        Filter open() {
            return new Filter(flow, type, error, Status.OPEN, from, to);
        }
    }

    public record Resolution(String by, Instant at, String reason, String outcome) {
    }

    /** A letter in a list: payload and error cut short. */
    public record Summary(long id, String eventId, String type, String flow, String errorClass, String errorMessage,
            int attempts, Instant firstFailedAt, Instant lastFailedAt, Status status, int replayCount,
            String payloadPreview, Resolution resolution) {
    }

    /** One letter in full. */
    public record Letter(long id, String eventId, String type, String flow, String routeId, String payload,
            JsonNode headers, String errorClass, String errorMessage, int attempts, Instant firstFailedAt,
            Instant lastFailedAt, Status status, int replayCount, Resolution resolution) {
    }

    /** A page of the list, newest first; {@code nextCursor} continues after the last item (null at the end). */
    public record Page(long total, int limit, Integer offset, Long cursor, Long nextCursor, List<Summary> items) {
    }

    /** The outcome for one letter, with a sentence saying why. */
    public record Result(long id, String eventId, String flow, Outcome outcome, String detail) {
    }

    /** A filtered replay: {@code remaining} matching OPEN letters were left for another call (limit). */
    public record BulkReplay(long matched, int processed, long remaining, Map<Outcome, Integer> outcomes,
            List<Result> results) {
    }

    // ---- Queries ---------------------------------------------------------------------------------------------------

    private static final String SUMMARY_COLUMNS = "id, event_id, event_type, flow, error_class, LEFT(error_message, "
            + (ERROR_PREVIEW + 1) + ") AS error_message, attempts, first_failed_at, last_failed_at, status, replay_count, "
            + "LEFT(payload, " + (PREVIEW + 1) + ") AS payload, resolved_by, resolved_at, resolution_note, replay_outcome";

    /** Newest first; paged by offset, or by cursor (the id of the last item seen). */
    public Page list(Filter filter, int limit, Integer offset, Long cursor) throws SQLException {
        Where where = where(filter);
        long total;
        List<Summary> items = new ArrayList<>();
        try (Connection c = db.connection()) {
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM dead_letter" + where.sql())) {
                where.bind(q, 1);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    total = rs.getLong(1);
                }
            }
            StringBuilder sql = new StringBuilder("SELECT ").append(SUMMARY_COLUMNS).append(" FROM dead_letter")
                    .append(where.sql());
            if (cursor != null) {
                sql.append(where.sql().isEmpty() ? " WHERE" : " AND").append(" id < ?");
            }
            sql.append(" ORDER BY id DESC LIMIT ? OFFSET ?");
            try (PreparedStatement q = c.prepareStatement(sql.toString())) {
                int i = where.bind(q, 1);
                if (cursor != null) {
                    q.setLong(i++, cursor);
                }
                q.setInt(i++, limit);
                q.setInt(i, offset == null ? 0 : offset);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        items.add(summary(rs));
                    }
                }
            }
        }
        Long next = items.size() == limit ? items.get(items.size() - 1).id() : null;
        return new Page(total, limit, offset, cursor, next, items);
    }

    public Optional<Letter> find(long id) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT id, event_id, event_type, flow, route_id, payload, headers, "
                        + "error_class, error_message, attempts, first_failed_at, last_failed_at, status, replay_count, "
                        + "resolved_by, resolved_at, resolution_note, replay_outcome FROM dead_letter WHERE id = ?")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                if (!rs.next()) {
                    return Optional.empty();
                }
                return Optional.of(new Letter(rs.getLong("id"), rs.getString("event_id"), rs.getString("event_type"),
                        rs.getString("flow"), rs.getString("route_id"), rs.getString("payload"),
                        headers(rs.getString("headers")), rs.getString("error_class"), rs.getString("error_message"),
                        rs.getInt("attempts"), instant(rs, "first_failed_at"), instant(rs, "last_failed_at"),
                        Status.valueOf(rs.getString("status")), rs.getInt("replay_count"), resolution(rs)));
            }
        }
    }

    private Summary summary(ResultSet rs) throws SQLException {
        return new Summary(rs.getLong("id"), rs.getString("event_id"), rs.getString("event_type"), rs.getString("flow"),
                rs.getString("error_class"), cut(rs.getString("error_message"), ERROR_PREVIEW), rs.getInt("attempts"),
                instant(rs, "first_failed_at"), instant(rs, "last_failed_at"), Status.valueOf(rs.getString("status")),
                rs.getInt("replay_count"), cut(rs.getString("payload"), PREVIEW), resolution(rs));
    }

    private static Resolution resolution(ResultSet rs) throws SQLException {
        Instant at = instant(rs, "resolved_at");
        if (at == null) {
            return null;
        }
        return new Resolution(rs.getString("resolved_by"), at, rs.getString("resolution_note"), rs.getString("replay_outcome"));
    }

    private JsonNode headers(String text) {
        if (text == null) {
            return null;
        }
        try {
            return mapper.readTree(text);
        } catch (Exception e) {
            return TextNode.valueOf(text);
        }
    }

    private static Instant instant(ResultSet rs, String column) throws SQLException {
        OffsetDateTime t = rs.getObject(column, OffsetDateTime.class);
        return t == null ? null : t.toInstant();
    }

    private static String cut(String s, int max) {
        return s == null || s.length() <= max ? s : s.substring(0, max) + "…";
    }

    /** A parameterised WHERE clause of a filter. */
    private record Where(String sql, List<Object> args) {

        int bind(PreparedStatement q, int first) throws SQLException {
            int i = first;
            for (Object a : args) {
                q.setObject(i++, a);
            }
            return i;
        }
    }

    private static Where where(Filter f) {
        List<String> terms = new ArrayList<>();
        List<Object> args = new ArrayList<>();
        if (f.flow() != null) {
            terms.add("flow = ?");
            args.add(f.flow());
        }
        if (f.type() != null) {
            terms.add("event_type = ?");
            args.add(f.type());
        }
        if (f.error() != null) {
            String like = "%" + f.error().toLowerCase(Locale.ROOT).replace("!", "!!").replace("%", "!%").replace("_", "!_") + "%";
            terms.add("(LOWER(error_class) LIKE ? ESCAPE '!' OR LOWER(error_message) LIKE ? ESCAPE '!')");
            args.add(like);
            args.add(like);
        }
        if (f.status() != null) {
            terms.add("status = ?");
            args.add(f.status().name());
        }
        if (f.from() != null) {
            terms.add("last_failed_at >= ?");
            args.add(Database.utc(f.from()));
        }
        if (f.to() != null) {
            terms.add("last_failed_at < ?");
            args.add(Database.utc(f.to()));
        }
        return new Where(terms.isEmpty() ? "" : " WHERE " + String.join(" AND ", terms), args);
    }

    // ---- Replay ----------------------------------------------------------------------------------------------------

    /** Replays one letter; {@code reason} is optional. */
    public Result replay(long id, String who, String reason) throws SQLException {
        Result r = replayOne(id, who, reason);
        afterChange(Set.of(r.flow() == null ? "" : r.flow()), r.outcome() == Outcome.REQUEUED);
        return r;
    }

    /** Replays the OPEN letters matching the filter, oldest first, at most {@code limit} of them. */
    public BulkReplay replay(Filter filter, int limit, String who, String reason) throws SQLException {
        Filter open = filter.open();
        Where where = where(open);
        long matched;
        List<Long> ids = new ArrayList<>();
        try (Connection c = db.connection()) {
            try (PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM dead_letter" + where.sql())) {
                where.bind(q, 1);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    matched = rs.getLong(1);
                }
            }
            try (PreparedStatement q = c.prepareStatement("SELECT id FROM dead_letter" + where.sql() + " ORDER BY id LIMIT ?")) {
                int i = where.bind(q, 1);
                q.setInt(i, limit);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        ids.add(rs.getLong(1));
                    }
                }
            }
        }
        List<Result> results = new ArrayList<>(ids.size());
        Map<Outcome, Integer> outcomes = new EnumMap<>(Outcome.class);
        Set<String> touched = new LinkedHashSet<>();
        boolean requeued = false;
        try {
            for (long id : ids) {
                Result r = replayOne(id, who, reason);
                results.add(r);
                outcomes.merge(r.outcome(), 1, Integer::sum);
                if (r.flow() != null) {
                    touched.add(r.flow());
                }
                requeued |= r.outcome() == Outcome.REQUEUED;
            }
        } finally {
            // Also when a later letter failed unexpectedly: the ones already committed must be picked up.
            afterChange(touched, requeued);
        }
        LOG.infof("Filtered replay by %s: %d matched, %d processed: %s", who, matched, ids.size(), outcomes);
        return new BulkReplay(matched, ids.size(), Math.max(0, matched - ids.size()), outcomes, results);
    }

    /** The locked row of an OPEN letter, read inside a replay transaction. */
    private record Locked(long id, String eventId, String flow, Status status) {
    }

    /** Thrown inside a replay transaction to roll it back with an answer. */
    private static final class Abort extends RuntimeException {
        final Result result;

        Abort(Result result) {
            super(result.detail(), null, false, false);
            this.result = result;
        }
    }

    private Result replayOne(long id, String who, String reason) throws SQLException {
        Optional<Letter> found = find(id);
        if (found.isEmpty()) {
            return new Result(id, null, null, Outcome.NOT_FOUND, "no dead letter " + id);
        }
        Letter letter = found.get();
        if (letter.status() != Status.OPEN) {
            return conflict(letter);
        }
        Event event;
        try {
            event = parser.parseOne(letter.payload());
        } catch (InvalidEventException e) {
            return new Result(id, letter.eventId(), letter.flow(), Outcome.NOT_REPLAYABLE, "dead letter " + id
                    + " cannot be replayed: its payload is not a valid event (" + e.getMessage()
                    + "); correct it at the source and discard this letter");
        }
        String flow = letter.flow();
        try {
            if (flows.flow(flow).isPresent()) {
                return db.inTransaction(c -> requeue(c, id, event, flow, who, reason));
            }
            Optional<Route> sink = sinkRoute(flow);
            if (sink.isEmpty()) {
                return new Result(id, event.eventId(), flow, Outcome.NOT_REPLAYABLE, "dead letter " + id
                        + " cannot be replayed: flow '" + flow + "' is not configured on this hub (no outbox-source "
                        + "and no route from direct:deliver-" + flow + ")");
            }
            return deliverDirectly(id, event, flow, who, reason);
        } catch (Abort a) {
            return a.result;
        }
    }

    private Result conflict(Letter l) {
        String by = l.resolution() == null ? "" : " by " + l.resolution().by() + " at " + l.resolution().at();
        return new Result(l.id(), l.eventId(), l.flow(), Outcome.CONFLICT,
                "dead letter " + l.id() + " is already " + l.status() + by + "; it is not replayed again");
    }

    /** Locks the letter's row; aborts when it is no longer OPEN (a concurrent replay or discard won). */
    private Locked lockOpen(Connection c, long id) throws SQLException {
        try (PreparedStatement q = c.prepareStatement(
                "SELECT id, event_id, flow, status, resolved_by, resolved_at FROM dead_letter WHERE id = ? FOR UPDATE")) {
            q.setLong(1, id);
            try (ResultSet rs = q.executeQuery()) {
                if (!rs.next()) {
                    throw new Abort(new Result(id, null, null, Outcome.NOT_FOUND, "no dead letter " + id));
                }
                Locked l = new Locked(id, rs.getString(2), rs.getString(3), Status.valueOf(rs.getString(4)));
                if (l.status() != Status.OPEN) {
                    throw new Abort(new Result(id, l.eventId(), l.flow(), Outcome.CONFLICT, "dead letter " + id
                            + " is already " + l.status() + " by " + rs.getString(5) + " at " + instant(rs, "resolved_at")
                            + "; it is not replayed again"));
                }
                return l;
            }
        }
    }

    private Result requeue(Connection c, long id, Event event, String flow, String who, String reason) throws SQLException {
        lockOpen(c, id);
        String row = null;
        try (PreparedStatement q = c.prepareStatement(
                "SELECT status FROM hub_delivery WHERE event_id = ? AND flow = ? FOR UPDATE")) {
            q.setString(1, event.eventId());
            q.setString(2, flow);
            try (ResultSet rs = q.executeQuery()) {
                if (rs.next()) {
                    row = rs.getString(1);
                }
            }
        }
        String how;
        if (row == null) {
            storeAndQueue(c, event, flow);
            how = "stored and queued on the outbox of flow " + flow;
        } else if ("DEAD".equals(row)) {
            outbox.reopen(c, flow, event.eventId());
            how = "outbox row reopened (DEAD -> PENDING) on flow " + flow;
        } else if ("PENDING".equals(row)) {
            how = "already queued on the outbox of flow " + flow;
        } else {
            throw new Abort(new Result(id, event.eventId(), flow, Outcome.CONFLICT, "event " + event.eventId()
                    + " was already delivered by flow " + flow + "; discard dead letter " + id + " instead"));
        }
        markReplayed(c, id, who, reason, how);
        LOG.infof("Dead letter %d (event %s, flow %s) replayed by %s: %s", id, event.eventId(), flow, who, how);
        return new Result(id, event.eventId(), flow, Outcome.REQUEUED, how);
    }

    private void storeAndQueue(Connection c, Event e, String flow) throws SQLException {
        Instant now = Instant.now();
        try (PreparedStatement ins = c.prepareStatement(EventStore.INSERT_EVENT)) {
            EventStore.bindEvent(ins, e, "replay", now);
            ins.executeUpdate();
        }
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO hub_delivery (event_id, flow, status, created_at) "
                + "VALUES (?, ?, 'PENDING', ?) ON CONFLICT DO NOTHING")) {
            ins.setString(1, e.eventId());
            ins.setString(2, flow);
            ins.setObject(3, Database.utc(now));
            ins.executeUpdate();
        }
    }

    /**
     * Sends the event to the flow's sink while the letter's row stays locked: a concurrent replay waits and then
     * finds it REPLAYED. If the process dies mid-way the letter stays OPEN; the sinks ignore an event applied twice.
     */
    private Result deliverDirectly(long id, Event event, String flow, String who, String reason) throws SQLException {
        String uri = "direct:deliver-" + flow;
        Throwable failure;
        try {
            Result done = db.inTransaction(c -> {
                lockOpen(c, id);
                List<Event> batch = List.of(event);
                Exchange sent = producer.send(uri, ex -> {
                    ex.setProperty("HubFlow", flow);
                    ex.setProperty(DeadLetterStore.BATCH, batch);
                    ex.getMessage().setBody(batch);
                });
                if (sent.getException() != null) {
                    throw new DirectFailure(sent.getException());
                }
                String how = "delivered directly to " + uri;
                markReplayed(c, id, who, reason, how);
                return new Result(id, event.eventId(), flow, Outcome.DELIVERED, how);
            });
            metrics.delivered(flow, List.of(event), Instant.now());
            LOG.infof("Dead letter %d (event %s, flow %s) replayed by %s: %s", id, event.eventId(), flow, who, done.detail());
            return done;
        } catch (DirectFailure f) {
            failure = f.getCause();
        }
        recordFailure(id, failure);
        LOG.warnf("Replay of dead letter %d (event %s, flow %s) by %s failed again: %s", id, event.eventId(), flow, who,
                failure.getMessage());
        return new Result(id, event.eventId(), flow, Outcome.FAILED, "replay of dead letter " + id + " to " + uri
                + " failed: " + failure.getClass().getName() + ": " + failure.getMessage() + "; the letter stays OPEN");
    }

    private static final class DirectFailure extends RuntimeException {
        DirectFailure(Throwable cause) {
            super(cause);
        }
    }

    private void markReplayed(Connection c, long id, String who, String reason, String how) throws SQLException {
        try (PreparedStatement up = c.prepareStatement("UPDATE dead_letter SET status = 'REPLAYED', resolved_at = ?, "
                + "resolved_by = ?, resolution_note = ?, replay_outcome = ?, replay_count = replay_count + 1 "
                + "WHERE id = ? AND status = 'OPEN'")) {
            up.setObject(1, Database.utc(Instant.now()));
            up.setString(2, who);
            up.setString(3, reason);
            up.setString(4, how);
            up.setLong(5, id);
            if (up.executeUpdate() != 1) {
                throw new IllegalStateException("dead letter " + id + " changed under its row lock");
            }
        }
    }

    private void recordFailure(long id, Throwable failure) throws SQLException {
        db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement("UPDATE dead_letter SET attempts = attempts + 1, "
                    + "replay_count = replay_count + 1, last_failed_at = ?, error_class = ?, error_message = ? "
                    + "WHERE id = ? AND status = 'OPEN'")) {
                up.setObject(1, Database.utc(Instant.now()));
                up.setString(2, failure.getClass().getName());
                up.setString(3, cut(String.valueOf(failure.getMessage()), 4000));
                up.setLong(4, id);
                return up.executeUpdate();
            }
        });
    }

    /** The started route consuming {@code direct:deliver-<flow>}, if any. */
    private Optional<Route> sinkRoute(String flow) {
        Endpoint ep = camel.hasEndpoint("direct:deliver-" + flow);
        if (ep == null) {
            return Optional.empty();
        }
        return camel.getRoutes().stream()
                .filter(r -> r.getEndpoint() == ep)
                .filter(r -> camel.getRouteController().getRouteStatus(r.getRouteId()).isStarted())
                .findFirst();
    }

    // ---- Discard ---------------------------------------------------------------------------------------------------

    /** Discards an OPEN letter, kept for audit. Returns CONFLICT or NOT_FOUND when it cannot. */
    public Result discard(long id, String who, String reason) throws SQLException {
        int n = db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement("UPDATE dead_letter SET status = 'DISCARDED', resolved_at = ?, "
                    + "resolved_by = ?, resolution_note = ? WHERE id = ? AND status = 'OPEN'")) {
                up.setObject(1, Database.utc(Instant.now()));
                up.setString(2, who);
                up.setString(3, reason);
                up.setLong(4, id);
                return up.executeUpdate();
            }
        });
        Optional<Letter> l = find(id);
        if (l.isEmpty()) {
            return new Result(id, null, null, Outcome.NOT_FOUND, "no dead letter " + id);
        }
        if (n == 0) {
            Letter letter = l.get();
            String by = letter.resolution() == null ? "" : " by " + letter.resolution().by() + " at " + letter.resolution().at();
            return new Result(id, letter.eventId(), letter.flow(), Outcome.CONFLICT,
                    "dead letter " + id + " is already " + letter.status() + by + "; it cannot be discarded");
        }
        LOG.infof("Dead letter %d (event %s, flow %s) discarded by %s: %s", id, l.get().eventId(), l.get().flow(), who, reason);
        afterChange(Set.of(l.get().flow()), false);
        return new Result(id, l.get().eventId(), l.get().flow(), Outcome.DISCARDED, "discarded by " + who + ": " + reason);
    }

    // ---- Metrics ---------------------------------------------------------------------------------------------------

    private void afterChange(Set<String> touched, boolean requeued) {
        for (String flow : touched) {
            if (flow.isEmpty()) {
                continue;
            }
            if (requeued) {
                // Reopened rows lie behind the dispatcher's cursor: read again once committed.
                outbox.rescan(flow);
            }
            try {
                metrics.openDeadLetters(flow, store.countOpen(flow));
            } catch (SQLException e) {
                LOG.warnf("Cannot count open dead letters of flow %s: %s", flow, e.getMessage());
            }
        }
    }

    /** The open-letters gauge starts from the database, not from zero, after a restart. */
    void initGauges(@Observes StartupEvent ev) {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement(
                        "SELECT flow, COUNT(*) FROM dead_letter WHERE status = 'OPEN' GROUP BY flow");
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                metrics.openDeadLetters(rs.getString(1), rs.getLong(2));
            }
        } catch (SQLException | RuntimeException e) {
            LOG.warnf("Cannot read open dead letters at startup: %s", e.getMessage());
        }
    }
}
