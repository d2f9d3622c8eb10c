package org.hospitalhub.delivery;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

import org.apache.camel.Exchange;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The dead-letter store: table {@code dead_letter}, one row per event that could not be delivered, with the original
 * envelope, safe headers, the error and the attempts. Its route runs with no error handler: if this store fails the
 * exception propagates, the source does not acknowledge, and the failure shows in health and metrics.
 */
@ApplicationScoped
@Named("deadLetterStore")
public class DeadLetterStore {

    private static final Logger LOG = Logger.getLogger(DeadLetterStore.class);
    public static final String BATCH = "HubBatch";
    public static final String SOURCE_TOPIC = "HubSourceTopic";

    private final Database db;
    private final Outbox outbox;
    private final DeliveryMetrics metrics;
    private final ObjectMapper mapper;

    public DeadLetterStore(Database db, Outbox outbox, DeliveryMetrics metrics, ObjectMapper mapper) {
        this.db = db;
        this.outbox = outbox;
        this.metrics = metrics;
        this.mapper = mapper;
    }

    /** A message to park: its event if it parsed, else its raw text. */
    record Letter(String eventId, String type, String payload, String error, String errorClass) {
    }

    /**
     * Stores the failed exchange. Leaves in the body the envelopes that were dead-lettered (for a
     * {@code <topic>.dlq} copy) and in header {@code HubDeadLetterReason} the error.
     */
    @SuppressWarnings("unchecked")
    public void store(Exchange exchange) throws SQLException {
        String flow = exchange.getProperty("HubFlow", "unknown", String.class);
        Throwable error = RedeliveryPolicies.failure(exchange);
        String errorClass = error == null ? "unknown" : error.getClass().getName();
        String message = error == null ? "unknown failure" : String.valueOf(error.getMessage());
        int attempts = Math.max(1, RedeliveryPolicies.attempts(exchange));
        Instant now = Instant.now();
        Instant first = exchange.getProperty(RedeliveryPolicies.FIRST_FAILURE, now, Instant.class);
        String routeId = exchange.getProperty(Exchange.FAILURE_ROUTE_ID, exchange.getFromRouteId(), String.class);

        List<Letter> letters = new ArrayList<>();
        List<Event> settled = List.of();
        if (error instanceof PartialBatchException partial) {
            partial.refused().forEach((e, why) -> letters.add(
                    new Letter(e.eventId(), e.type(), e.envelope(), why, errorClass)));
            settled = partial.applied();
        } else {
            Object batch = exchange.getProperty(BATCH);
            if (batch == null) {
                batch = exchange.getMessage().getBody();
            }
            if (batch instanceof List<?> list && (list.isEmpty() || list.get(0) instanceof Event)) {
                for (Event e : (List<Event>) list) {
                    letters.add(new Letter(e.eventId(), e.type(), e.envelope(), message, errorClass));
                }
            } else if (batch instanceof List<?> list && list.get(0) instanceof Exchange) {
                // a Kafka batch that failed before its events were read out of the records (the processed-events lookup,
                // the dead-letter store of an invalid record): one letter per record, as it came, so that each can be
                // replayed once the offsets are committed
                for (Object o : list) {
                    String raw = java.util.Objects.requireNonNullElse(KafkaBatch.text(((Exchange) o).getMessage().getBody()), "");
                    letters.add(new Letter(KafkaBatch.eventIdOf(raw), null, raw, message, errorClass));
                }
            } else if (batch instanceof Event e) {
                letters.add(new Letter(e.eventId(), e.type(), e.envelope(), message, errorClass));
            } else {
                String raw = exchange.getMessage().getBody(String.class);
                letters.add(new Letter(exchange.getMessage().getHeader("HubEventId", String.class), null,
                        raw == null ? "" : raw, message, errorClass));
            }
        }
        String headers = safeHeaders(exchange.getMessage().getHeaders());
        List<Event> applied = settled;
        try {
            db.inTransaction(c -> {
                insert(c, flow, routeId, letters, headers, attempts, first, now);
                outbox.markDead(c, flow, letters.stream().map(Letter::eventId).filter(java.util.Objects::nonNull).toList());
                return null;
            });
        } catch (SQLException | RuntimeException e) {
            metrics.deadLetterStoreFailed();
            // The driver's message can quote the rows (patient data): log the kind of failure only.
            String why = e instanceof SQLException sql ? "SQLState " + sql.getSQLState() + " (" + e.getClass().getSimpleName() + ")"
                    : e.getClass().getName();
            LOG.errorf("DEAD-LETTER STORE FAILED for flow %s (%d messages not acknowledged, will come again): %s",
                    flow, letters.size(), why);
            throw e;
        }
        metrics.deadLetterStoreSucceeded();
        outbox.releaseDead(flow, letters.stream().map(Letter::eventId).filter(java.util.Objects::nonNull).toList());
        if (!applied.isEmpty()) {
            outbox.settle(flow, applied);
        }
        metrics.deadLettered(flow, errorClass.substring(errorClass.lastIndexOf('.') + 1), letters.size());
        metrics.openDeadLetters(flow, countOpen(flow));
        for (Letter l : letters) {
            // eventId and flow also as MDC fields: JSON logs (prod profile) carry them as their own keys
            org.jboss.logging.MDC.put("eventId", String.valueOf(l.eventId()));
            org.jboss.logging.MDC.put("flow", flow);
            try {
                LOG.warnf("Dead letter: flow=%s eventId=%s attempts=%d error=%s: %s", flow, l.eventId(), attempts,
                        l.errorClass(), l.error());
            } finally {
                org.jboss.logging.MDC.remove("eventId");
                org.jboss.logging.MDC.remove("flow");
            }
        }
        exchange.getMessage().setHeader("HubDeadLetterReason", message);
        exchange.getMessage().setBody(letters.stream().map(Letter::payload).toList());
    }

    private void insert(Connection c, String flow, String routeId, List<Letter> letters, String headers, int attempts,
            Instant first, Instant now) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO dead_letter (event_id, event_type, flow, route_id, "
                + "payload, headers, error_class, error_message, attempts, first_failed_at, last_failed_at, status) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'OPEN')")) {
            for (Letter l : letters) {
                ins.setString(1, l.eventId());
                ins.setString(2, l.type());
                ins.setString(3, flow);
                ins.setString(4, routeId);
                ins.setString(5, l.payload());
                ins.setString(6, headers);
                ins.setString(7, l.errorClass());
                ins.setString(8, truncate(l.error(), 4000));
                ins.setInt(9, attempts);
                ins.setObject(10, Database.utc(first));
                ins.setObject(11, Database.utc(now));
                ins.addBatch();
            }
            ins.executeBatch();
        }
    }

    public long countOpen(String flow) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM dead_letter WHERE flow = ? AND status = 'OPEN'")) {
            q.setString(1, flow);
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /** Headers worth keeping for diagnosis; anything that may carry a credential is left out. */
    private String safeHeaders(Map<String, Object> all) {
        ObjectNode n = mapper.createObjectNode();
        Map<String, Object> sorted = new LinkedHashMap<>();
        all.entrySet().stream().sorted(Map.Entry.comparingByKey()).forEach(e -> sorted.put(e.getKey(), e.getValue()));
        sorted.forEach((k, v) -> {
            String lower = k.toLowerCase(Locale.ROOT);
            boolean secret = lower.contains("auth") || lower.contains("key") && !lower.startsWith("kafka.")
                    || lower.contains("password") || lower.contains("token") || lower.contains("secret")
                    || lower.contains("cookie");
            if (!secret && (v instanceof String || v instanceof Number || v instanceof Boolean)) {
                n.put(k, truncate(String.valueOf(v), 500));
            }
        });
        return n.toString();
    }

    private static String truncate(String s, int max) {
        return s == null || s.length() <= max ? s : s.substring(0, max) + "…";
    }
}
