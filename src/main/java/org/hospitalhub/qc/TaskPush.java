package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Queue;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.Executors;
import java.util.concurrent.RejectedExecutionException;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.ScheduledFuture;
import java.util.concurrent.TimeUnit;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.ObjectMapper;

import io.quarkus.runtime.ShutdownEvent;
import io.quarkus.runtime.StartupEvent;
import io.quarkus.websockets.next.WebSocketConnection;

/**
 * Pushes qc task events (table qc_task_event) to the WebSocket subscribers of this replica. One poller thread reads the
 * feed after the last id it dispatched and fans each row out to the matching sessions: no per-session polling.
 * <p>
 * Ids are assigned at insert and rows become visible at commit, so id 11 may be seen before id 10 commits. The poller
 * therefore dispatches only the gap-free prefix of what it reads and waits up to {@code hub.qc.push.gap-wait} for a
 * missing id (a rolled-back insert leaves a hole forever) before skipping it. Every session thus sees ids in order, and
 * its cursor (the last id it received) is exact for a replay.
 * <p>
 * A new session is served by the poller thread too: first the rows after its cursor up to the poller's position
 * (replay), then a {@code ready} message, then live rows.
 */
@ApplicationScoped
public class TaskPush {

    private static final Logger LOG = Logger.getLogger(TaskPush.class);
    static final int BATCH = 1000;

    /** Which task events a session receives: a doctor's (their id in doctor or a doctor: recipient), a department's, or all. */
    public record Subscription(String caller, String doctor, String department, String hospital, long cursor) {

        boolean matches(TaskQueries.TaskEvent e) {
            if (hospital != null && !hospital.equals(e.hospital())) {
                return false;
            }
            if (doctor != null && !doctor.equals(e.doctor()) && !e.recipients().contains("doctor:" + doctor)) {
                return false;
            }
            return department == null || department.equals(e.department()) || e.recipients().contains("department:" + department);
        }
    }

    /** One task event as pushed: the feed row plus the task's document type, patient and due time (current values). */
    public record Row(TaskQueries.TaskEvent event, String documentType, String rule, String patientId, Instant dueAt) {
    }

    private static final class Session {
        final WebSocketConnection connection;
        final Subscription subscription;
        volatile long sent;
        volatile boolean live;

        Session(WebSocketConnection connection, Subscription subscription) {
            this.connection = connection;
            this.subscription = subscription;
            this.sent = subscription.cursor();
        }
    }

    private final Database db;
    private final TaskEngine engine;
    private final ObjectMapper mapper;
    private final Duration every;
    private final Duration idleEvery;
    private final Duration gapWait;
    private final Map<String, Session> sessions = new ConcurrentHashMap<>();
    private final Queue<Session> joining = new ConcurrentLinkedQueue<>();
    private ScheduledExecutorService poller;
    /** The next tick (touched on the poller thread only). */
    private ScheduledFuture<?> next;
    private volatile long position = -1;
    private long gapSeenAt;

    public TaskPush(Database db, TaskEngine engine, ObjectMapper mapper,
            @ConfigProperty(name = "hub.qc.push.poll-every", defaultValue = "250ms") Duration every,
            @ConfigProperty(name = "hub.qc.push.gap-wait", defaultValue = "2s") Duration gapWait,
            @ConfigProperty(name = "hub.qc.push.idle-poll-every", defaultValue = "5s") Duration idleEvery) {
        this.db = db;
        this.engine = engine;
        this.mapper = mapper;
        this.every = every;
        this.idleEvery = idleEvery.compareTo(every) < 0 ? every : idleEvery;
        this.gapWait = gapWait;
    }

    void start(@Observes StartupEvent ev) {
        poller = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "qc-push-poller");
            t.setDaemon(true);
            return t;
        });
        poller.execute(this::poll);
    }

    /**
     * A tick, then the next one after {@code poll-every}, or after {@code idle-poll-every} while this replica has no
     * session (a replica nobody watches, such as a node without qc flows, then asks the database rarely; a session
     * that connects is served at once, see {@link #open}).
     */
    private void poll() {
        tick();
        boolean idle = sessions.isEmpty() && joining.isEmpty();
        try {
            next = poller.schedule(this::poll, (idle ? idleEvery : every).toMillis(), TimeUnit.MILLISECONDS);
        } catch (RejectedExecutionException e) {
            // shutting down
        }
    }

    void stop(@Observes ShutdownEvent ev) {
        if (poller != null) {
            poller.shutdownNow();
        }
    }

    public void open(WebSocketConnection connection, Subscription subscription) {
        Session s = new Session(connection, subscription);
        sessions.put(connection.id(), s);
        joining.add(s);
        if (poller == null) {
            return; // not started yet: its first tick serves the session
        }
        try {
            poller.execute(() -> { // its replay now, and ticks every poll-every from now on, not at the next idle tick
                if (next != null) {
                    next.cancel(false);
                }
                poll();
            });
        } catch (RejectedExecutionException e) {
            // shutting down
        }
    }

    public void close(WebSocketConnection connection) {
        sessions.remove(connection.id());
    }

    public int sessions() {
        return sessions.size();
    }

    void tick() {
        try {
            if (position < 0) {
                position = maxId();
            }
            List<Row> fresh = advance();
            Session s;
            while ((s = joining.poll()) != null) {
                replay(s);
            }
            for (Row r : fresh) {
                for (Session x : sessions.values()) {
                    if (x.live && x.sent < r.event().id() && x.subscription.matches(r.event())) {
                        send(x, message(r));
                        x.sent = r.event().id();
                    }
                }
            }
        } catch (Exception e) {
            LOG.warnf("qc push poll failed (retried): %s", e.toString());
        }
    }

    /**
     * Reads the rows after the position and returns the gap-free prefix, moving the position past it. With no session
     * on this replica only the ids are read (the position and its gap rule still advance; a session that joins later
     * replays from its own cursor).
     */
    private List<Row> advance() throws SQLException {
        boolean idle = sessions.isEmpty() && joining.isEmpty();
        List<Row> read = idle ? List.of() : read(position, Long.MAX_VALUE, BATCH);
        List<Long> ids = idle ? readIds(position, BATCH) : read.stream().map(r -> r.event().id()).toList();
        int n = gapFree(ids);
        if (n > 0) {
            position = ids.get(n - 1);
        }
        return read.subList(0, Math.min(n, read.size()));
    }

    /** How many of the ids read after the position may be dispatched: up to a gap, unless it is older than gap-wait. */
    private int gapFree(List<Long> ids) {
        long p = position;
        int n = 0;
        for (long id : ids) {
            if (id != p + 1) {
                long now = System.nanoTime();
                if (gapSeenAt == 0) {
                    gapSeenAt = now;
                }
                if (now - gapSeenAt < gapWait.toNanos()) {
                    break; // an earlier insert may still commit: wait for it a little
                }
                LOG.debugf("qc push: ids %d..%d never appeared, skipped", p + 1, id - 1);
            }
            gapSeenAt = 0;
            n++;
            p = id;
        }
        return n;
    }

    private List<Long> readIds(long after, int limit) throws SQLException {
        List<Long> out = new ArrayList<>();
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT id FROM qc_task_event WHERE id > ? ORDER BY id LIMIT ?")) {
            q.setLong(1, after);
            q.setInt(2, limit);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    out.add(rs.getLong(1));
                }
            }
        }
        return out;
    }

    private void replay(Session s) throws SQLException {
        if (!sessions.containsKey(s.connection.id())) {
            return;
        }
        long from = s.sent < 0 ? position : s.sent; // no cursor: live from now on
        while (from < position) {
            List<Row> rows = read(from, position, BATCH);
            if (rows.isEmpty()) {
                break;
            }
            for (Row r : rows) {
                if (s.subscription.matches(r.event())) {
                    send(s, message(r));
                }
            }
            from = rows.get(rows.size() - 1).event().id();
        }
        s.sent = Math.max(from, position);
        Map<String, Object> ready = new LinkedHashMap<>();
        ready.put("type", "ready");
        ready.put("cursor", s.sent);
        send(s, json(ready));
        s.live = true;
    }

    private void send(Session s, String text) {
        s.connection.sendText(text).subscribe().with(ok -> {
        }, err -> LOG.debugf("qc push to %s failed: %s", s.subscription.caller(), err.toString()));
    }

    String message(Row r) {
        TaskQueries.TaskEvent e = r.event();
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", "task-event");
        m.put("id", e.id());
        m.put("taskId", e.taskId());
        m.put("kind", e.kind());
        m.put("status", e.status());
        m.put("at", e.at());
        m.put("hospital", e.hospital());
        m.put("visitId", e.visitId());
        m.put("patientId", r.patientId());
        m.put("department", e.department());
        m.put("doctor", e.doctor());
        m.put("recipients", e.recipients());
        m.put("documentType", r.documentType());
        m.put("rule", r.rule());
        m.put("dueAt", r.dueAt());
        m.put("detail", e.detail());
        m.put("task", "/api/v1/qc/tasks/" + e.taskId());
        return json(m);
    }

    private String json(Object o) {
        try {
            return mapper.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    private long maxId() throws SQLException {
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT COALESCE(MAX(id), 0) FROM qc_task_event");
                ResultSet rs = q.executeQuery()) {
            rs.next();
            return rs.getLong(1);
        }
    }

    /** Feed rows with after < id <= upTo, oldest first. */
    List<Row> read(long after, long upTo, int limit) throws SQLException {
        List<Row> out = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT e.id, e.task_id, e.hospital, e.visit_id, "
                + "e.kind, e.status, e.event_at, e.department, e.doctor, e.recipients, e.detail, t.document_type, t.rule_id, "
                + "t.patient_id, t.due_at FROM qc_task_event e LEFT JOIN qc_task t ON t.id = e.task_id "
                + "WHERE e.id > ? AND e.id <= ? ORDER BY e.id LIMIT ?")) {
            q.setLong(1, after);
            q.setLong(2, upTo);
            q.setInt(3, limit);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    TaskQueries.TaskEvent e = new TaskQueries.TaskEvent(rs.getLong(1), rs.getLong(2), rs.getString(3),
                            rs.getString(4), rs.getString(5), rs.getString(6), TaskEngine.instant(rs, 7), rs.getString(8),
                            rs.getString(9), engine.list(rs.getString(10)), rs.getString(11));
                    out.add(new Row(e, rs.getString(12), rs.getString(13), rs.getString(14), TaskEngine.instant(rs, 15)));
                }
            }
        }
        return out;
    }
}
