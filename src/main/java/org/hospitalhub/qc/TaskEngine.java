package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashSet;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.Optional;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

import jakarta.annotation.PreDestroy;
import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.PartialBatchException;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.type.TypeReference;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The task store of qc. Every change to a visit (events applied, a timer fired, a correction by hand, reconciliation)
 * runs the same way, in one transaction under the visit's row lock: load the visit's events and corrections, compute
 * the tasks the rules require ({@link VisitProjection}), and make the stored tasks match, writing one
 * {@code qc_task_event} per change. Timers are (re)scheduled after the commit; a task whose timers are not yet
 * scheduled keeps {@code timer_due_at} empty and reconciliation schedules them.
 */
@ApplicationScoped
public class TaskEngine {

    private static final Logger LOG = Logger.getLogger(TaskEngine.class);

    private final Database db;
    private final RuleBook rules;
    private final QcClock clock;
    private final DeadlineTimers timers;
    private final QcMetrics metrics;
    private final ObjectMapper mapper;
    /** A batch of at least twice this many events is split into lanes. */
    static final int MIN_PER_LANE = 8;
    private final int lanes;
    private final ExecutorService laneExecutor;

    public TaskEngine(Database db, RuleBook rules, QcClock clock, DeadlineTimers timers, QcMetrics metrics, ObjectMapper mapper,
            @ConfigProperty(name = "hub.qc.engine-lanes", defaultValue = "2") int lanes) {
        this.db = db;
        this.rules = rules;
        this.clock = clock;
        this.timers = timers;
        this.metrics = metrics;
        this.mapper = mapper;
        if (lanes < 1 || lanes > 16) {
            throw new IllegalStateException("hub.qc.engine-lanes must be between 1 and 16 (transactions a batch of clinical "
                    + "events is applied in at once, split by visit); got " + lanes);
        }
        this.lanes = lanes;
        AtomicInteger n = new AtomicInteger();
        this.laneExecutor = Executors.newFixedThreadPool(Math.max(1, lanes - 1), r -> {
            Thread t = new Thread(r, "qc-engine-lane-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        });
    }

    @PreDestroy
    void stop() {
        laneExecutor.shutdown();
    }

    public record VisitKey(String hospital, String visitId) implements Comparable<VisitKey> {
        @Override
        public int compareTo(VisitKey o) {
            int c = hospital.compareTo(o.hospital);
            return c != 0 ? c : visitId.compareTo(o.visitId);
        }
    }

    /** One change to a stored task. kind: CREATED, OVERDUE, COMPLETED, CANCELLED, REOPENED, DUE_CHANGED, UPDATED. */
    public record Change(long taskId, String hospital, String visitId, String taskKey, String kind, TaskStatus from,
            TaskStatus to, String detail) {
    }

    /**
     * In the task's transaction: write a task's timers (due time and reminders), or remove them. {@code fresh}: the task
     * was inserted in this transaction, with its {@code timer_due_at}, and has no timer rows to replace. {@code marked}:
     * the task's own update in this transaction already set {@code timer_due_at}; only its timer rows are replaced.
     */
    record TimerWork(long taskId, VisitKey visit, boolean schedule, Instant due, List<Instant> reminders, boolean fresh,
            boolean marked) {
        TimerWork(long taskId, VisitKey visit, boolean schedule, Instant due, List<Instant> reminders) {
            this(taskId, visit, schedule, due, reminders, false, false);
        }
    }

    // ---- Events in (qc-sink) ---------------------------------------------------------------------------------------

    /**
     * Applies a batch: split by visit into {@code hub.qc.engine-lanes} lanes ({@link #lanes}), each applied in one
     * transaction, the lanes at once (one on this thread), so that one computes while another waits for the database.
     * If a lane fails the batch fails once every lane has finished; when it comes again, the events of the lanes that
     * committed are skipped. Events already applied are skipped (their eventId is in qc_visit_event).
     * Events that cannot be applied (another patient's visit, a second admission, a rule needing a payload field the
     * event lacks) are refused: the others are applied and a {@link PartialBatchException} sends the refused ones to
     * the dead-letter store with their reasons.
     * <p>
     * The statements are per lane, not per event: the lane's visits are locked with one ordered
     * {@code SELECT ... FOR UPDATE}, their events, corrections and tasks read with one query each, and every insert and
     * update goes out as a JDBC batch (bench/README.md, qc benchmark).
     */
    public List<Change> apply(String flow, List<Event> batch) throws SQLException {
        List<List<Event>> parts = lanes(batch);
        Map<Event, String> refused = new LinkedHashMap<>();
        List<Event> applied = new ArrayList<>();
        List<Change> changes = new ArrayList<>();
        if (parts.size() == 1) {
            changes.addAll(applyLane(flow, batch, refused, applied));
        } else {
            // each lane in its own transaction, the first on this thread; a lane's failure fails the batch once all
            // have finished (a lane that committed is skipped when the batch comes again: its events are logged)
            List<Future<Lane>> others = new ArrayList<>();
            for (List<Event> part : parts.subList(1, parts.size())) {
                others.add(laneExecutor.submit(() -> {
                    Lane l = new Lane(new LinkedHashMap<>(), new ArrayList<>(), new ArrayList<>());
                    l.changes().addAll(applyLane(flow, part, l.refused(), l.applied()));
                    return l;
                }));
            }
            Throwable failed = null;
            try {
                changes.addAll(applyLane(flow, parts.get(0), refused, applied));
            } catch (SQLException | RuntimeException e) {
                failed = e;
            }
            for (Future<Lane> f : others) {
                try {
                    Lane l = f.get();
                    changes.addAll(l.changes());
                    refused.putAll(l.refused());
                    applied.addAll(l.applied());
                } catch (ExecutionException e) {
                    if (failed == null) {
                        failed = e.getCause();
                    } else {
                        failed.addSuppressed(e.getCause());
                    }
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                    throw new IllegalStateException("interrupted while the task engine's lanes were applying a batch", e);
                }
            }
            if (failed instanceof SQLException se) {
                throw se;
            } else if (failed instanceof RuntimeException re) {
                throw re;
            } else if (failed != null) {
                throw new IllegalStateException(failed);
            }
        }
        if (!refused.isEmpty()) {
            throw new PartialBatchException(refused, applied);
        }
        return changes;
    }

    private record Lane(Map<Event, String> refused, List<Event> applied, List<Change> changes) {
    }

    /**
     * The batch split into {@code hub.qc.engine-lanes} parts by visit (a visit's events stay together and in order), in
     * batch order; one part when there is one lane or the batch is small. Events without a visit go with the first.
     */
    List<List<Event>> lanes(List<Event> batch) {
        int n = Math.min(lanes, batch.size() / MIN_PER_LANE);
        if (n <= 1) {
            return List.of(batch);
        }
        List<List<Event>> parts = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            parts.add(new ArrayList<>());
        }
        for (Event e : batch) {
            String visit = e.payload().path("visitId").asText(null);
            int lane = visit == null ? 0 : Math.floorMod(Objects.hash(e.hospital(), visit), n);
            parts.get(lane).add(e);
        }
        parts.removeIf(List::isEmpty);
        return parts;
    }

    /** Applies a lane's events in one transaction; the refused and the applied ones are added to the two collections. */
    private List<Change> applyLane(String flow, List<Event> batch, Map<Event, String> refused, List<Event> applied)
            throws SQLException {
        Instant now = clock.instant();
        List<TimerWork> work = new ArrayList<>();
        List<Change> changes = db.inTransaction(c -> {
            TreeSet<VisitKey> visits = new TreeSet<>();
            for (Event e : batch) {
                String visit = e.payload().path("visitId").asText(null);
                if (e.type().startsWith("qc.") && visit != null) {
                    visits.add(new VisitKey(e.hospital(), visit));
                }
            }
            Map<VisitKey, String> patients = lock(c, visits, now);
            Map<VisitKey, List<LogRow>> logs = logs(c, visits);
            Map<VisitKey, String> admitted = new HashMap<>();
            logs.forEach((v, rows) -> {
                for (LogRow r : rows) {
                    if (patients.get(v) == null) {
                        patients.put(v, r.event().payload().path("patientId").asText(null)); // the first event's patient
                    }
                    if (r.event().type().equals(ClinicalEvent.ADMISSION)) {
                        admitted.putIfAbsent(v, r.event().eventId());
                    }
                }
            });
            Set<String> logged = logged(c, batch);
            List<Event> fresh = new ArrayList<>();
            List<VisitKey> freshVisits = new ArrayList<>();
            TreeSet<VisitKey> touched = new TreeSet<>();
            for (Event e : batch) {
                String visit = e.payload().path("visitId").asText(null);
                if (!e.type().startsWith("qc.") || visit == null) {
                    refused.put(e, "the qc sink applies qc.* events with a payload.visitId; " + e.type() + " is not one "
                            + "(check the types of the flow)");
                    continue;
                }
                if (!logged.add(e.eventId())) {
                    applied.add(e); // applied before (or earlier in this batch): nothing changes
                    continue;
                }
                VisitKey v = new VisitKey(e.hospital(), visit);
                String problem = check(v, e, patients, admitted);
                if (problem != null) {
                    logged.remove(e.eventId());
                    refused.put(e, problem);
                    continue;
                }
                if (e.type().equals(ClinicalEvent.ADMISSION)) {
                    admitted.putIfAbsent(v, e.eventId());
                }
                patients.putIfAbsent(v, e.payload().path("patientId").asText()); // the first event names the visit's patient
                fresh.add(e);
                freshVisits.add(v);
                applied.add(e);
                touched.add(v);
            }
            log(fresh, freshVisits, flow, logs);
            List<Change> all = recompute(c, touched, logs, now, work);
            timers.write(c, work);
            return all;
        });
        afterCommit(changes);
        return changes;
    }

    /** Why the event cannot be applied to its visit, or null. */
    private String check(VisitKey v, Event e, Map<VisitKey, String> patients, Map<VisitKey, String> admitted) {
        String patient = e.payload().path("patientId").asText(null);
        String known = patients.get(v);
        if (known != null && !known.equals(patient)) {
            return "visit " + v.visitId() + " of hospital " + v.hospital() + " belongs to patient " + known + ", but event "
                    + e.eventId() + " names patient " + patient;
        }
        if (e.type().equals(ClinicalEvent.ADMISSION) && admitted.containsKey(v)) {
            return "visit " + v.visitId() + " was already admitted by event " + admitted.get(v)
                    + "; a visit has one admission (a new stay needs a new visit id)";
        }
        for (Rule r : rules.rulesFor(e.hospital())) {
            if (!e.type().equals(r.triggerEvent()) || !r.matches(e.payload())) {
                continue;
            }
            if (r.instanceKey() != null && ClinicalEvent.text(e.payload(), r.instanceKey()) == null) {
                return "rule " + r.id() + " (" + r.origin() + "): field payload." + r.instanceKey()
                        + " (its instanceKey) is missing in event " + e.eventId();
            }
            for (String spec : r.recipients()) {
                int colon = spec.indexOf(':');
                if (colon > 0 && !spec.startsWith("role:") && ClinicalEvent.text(e.payload(), spec.substring(colon + 1)) == null) {
                    return "rule " + r.id() + " (" + r.origin() + "): field payload." + spec.substring(colon + 1)
                            + " (recipient " + spec + ") is missing in event " + e.eventId();
                }
            }
        }
        return null;
    }

    // ---- Recomputing visits -----------------------------------------------------------------------------------------

    /** Recomputes one visit in its own transaction (a timer fired, a correction, reconciliation). */
    public List<Change> recompute(VisitKey v) throws SQLException {
        Instant now = clock.instant();
        List<TimerWork> work = new ArrayList<>();
        List<Change> changes = db.inTransaction(c -> {
            lock(c, List.of(v), now);
            List<Change> all = recompute(c, List.of(v), null, now, work);
            timers.write(c, work);
            return all;
        });
        afterCommit(changes);
        return changes;
    }

    /** Recomputes visits in one transaction (reconciliation, a chunk at a time). */
    public List<Change> recompute(Collection<VisitKey> visits) throws SQLException {
        Instant now = clock.instant();
        List<TimerWork> work = new ArrayList<>();
        List<Change> changes = db.inTransaction(c -> {
            lock(c, visits, now);
            List<Change> all = recompute(c, visits, null, now, work);
            timers.write(c, work);
            return all;
        });
        afterCommit(changes);
        return changes;
    }

    /** The visit of a task, if the task exists. */
    public Optional<VisitKey> visitOf(long taskId) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT hospital, visit_id FROM qc_task WHERE id = ?")) {
            q.setLong(1, taskId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(new VisitKey(rs.getString(1), rs.getString(2))) : Optional.empty();
            }
        }
    }

    /**
     * Locks the visits: those that exist with one {@code SELECT ... FOR UPDATE} per hospital (hospitals in key order,
     * visits in the database's order), then the new ones by inserting them in key order. Every transaction that locks visits does it here, in
     * that one order, so two never wait on each other in a cycle. Returns the patient known for each visit (null before
     * the admission).
     */
    Map<VisitKey, String> lock(Connection c, Collection<VisitKey> visits, Instant now) throws SQLException {
        Map<VisitKey, String> patients = new HashMap<>();
        if (visits.isEmpty()) {
            return patients;
        }
        lockExisting(c, visits, patients);
        List<VisitKey> missing = visits.stream().filter(v -> !patients.containsKey(v)).sorted().toList();
        if (!missing.isEmpty()) { // new visits, inserted in key order (then locked by the insert itself)
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_visit (hospital, visit_id, status, updated_at) "
                    + "VALUES (?, ?, 'PENDING', ?) ON CONFLICT DO NOTHING")) {
                for (VisitKey v : missing) {
                    ins.setString(1, v.hospital());
                    ins.setString(2, v.visitId());
                    ins.setObject(3, Database.utc(now));
                    ins.addBatch();
                }
                ins.executeBatch();
            }
            lockExisting(c, missing, patients); // a visit another transaction inserted meanwhile: locked here
        }
        return patients;
    }

    private static void lockExisting(Connection c, Collection<VisitKey> visits, Map<VisitKey, String> patients)
            throws SQLException {
        queryVisits(c, visits, "SELECT hospital, visit_id, patient_id FROM qc_visit WHERE hospital = ? AND visit_id = ANY(?) "
                + "ORDER BY hospital, visit_id FOR UPDATE",
                rs -> patients.put(new VisitKey(rs.getString(1), rs.getString(2)), rs.getString(3)));
    }

    /** The events logged for the visits, oldest first, each visit's list present (empty for a new visit). */
    private Map<VisitKey, List<LogRow>> logs(Connection c, Collection<VisitKey> visits) throws SQLException {
        Map<VisitKey, List<LogRow>> logs = new HashMap<>();
        visits.forEach(v -> logs.put(v, new ArrayList<>()));
        queryVisits(c, visits, "SELECT hospital, visit_id, id, event_id, event_type, occurred_at, envelope, disposition, "
                + "disposition_reason FROM qc_visit_event WHERE hospital = ? AND visit_id = ANY(?) ORDER BY id", rs -> {
                    JsonNode env = read(rs.getString(7));
                    ClinicalEvent e = new ClinicalEvent(rs.getLong(3), rs.getString(4), rs.getString(5),
                            rs.getObject(6, OffsetDateTime.class).toInstant(), (ObjectNode) env.get("payload"));
                    logs.get(new VisitKey(rs.getString(1), rs.getString(2))).add(new LogRow(e, rs.getString(8), rs.getString(9)));
                });
        return logs;
    }

    /** The ids of the batch's events that are logged already. */
    private static Set<String> logged(Connection c, List<Event> batch) throws SQLException {
        Set<String> logged = new HashSet<>();
        try (PreparedStatement q = c.prepareStatement("SELECT event_id FROM qc_visit_event WHERE event_id = ANY(?)")) {
            q.setArray(1, c.createArrayOf("varchar", batch.stream().map(Event::eventId).distinct().toArray()));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    logged.add(rs.getString(1));
                }
            }
        }
        return logged;
    }

    /**
     * Appends new events to their visits' logs, to be inserted by the recomputation's writes with the disposition it
     * gives them. Until then each has a provisional sequence number after every stored one, in batch order, as its
     * row id will be.
     */
    private static void log(List<Event> events, List<VisitKey> visits, String flow, Map<VisitKey, List<LogRow>> logs) {
        long seq = Long.MAX_VALUE / 2;
        for (int i = 0; i < events.size(); i++) {
            Event e = events.get(i);
            logs.get(visits.get(i)).add(new LogRow(new ClinicalEvent(seq++, e.eventId(), e.type(), stored(e.occurredAt()),
                    e.payload()), "NEW", null, e, flow));
        }
    }

    /**
     * A time as a timestamp column holds it: rounded half up to microseconds (what the JDBC drivers send), so that the
     * projection of a new event and a later one of the event read back agree to the microsecond.
     */
    static Instant stored(OffsetDateTime t) {
        return t.toInstant().plusNanos(500).truncatedTo(ChronoUnit.MICROS);
    }

    /** An event of a visit's log; {@code unsaved} (with its flow) for an event of this batch not inserted yet. */
    private record LogRow(ClinicalEvent event, String disposition, String reason, Event unsaved, String flow) {
        LogRow(ClinicalEvent event, String disposition, String reason) {
            this(event, disposition, reason, null, null);
        }
    }

    /** A stored task, as far as the comparison needs it. */
    private record Row(long id, String key, TaskStatus status, Instant due, String remindAt, Instant completedAt,
            String closedBy, String closeReason, String department, String doctor, String recipients, String level,
            Instant overdueAt) {
    }

    /**
     * Recomputes locked visits in the caller's transaction and makes their stored tasks match: reads their events
     * ({@code logs}, or from the database if null), corrections and tasks in bulk, projects each visit, then writes the
     * differences as JDBC batches. Returns the changes in order; the timers to write go to {@code work}.
     */
    List<Change> recompute(Connection c, Collection<VisitKey> visits, Map<VisitKey, List<LogRow>> logs, Instant now,
            List<TimerWork> work) throws SQLException {
        if (visits.isEmpty()) {
            return new ArrayList<>();
        }
        Map<VisitKey, List<LogRow>> log = logs != null ? logs : logs(c, visits);
        Map<VisitKey, List<VisitProjection.ManualAction>> manual = new HashMap<>();
        Map<VisitKey, Map<String, Row>> stored = new HashMap<>();
        queryVisits(c, visits, "SELECT hospital, visit_id, id, action, task_rule, task_instance, task_period, effective_at, "
                + "actor, reason FROM qc_audit WHERE hospital = ? AND visit_id = ANY(?) AND action IN ('CLOSE', 'CANCEL') ORDER BY id",
                rs -> manual.computeIfAbsent(new VisitKey(rs.getString(1), rs.getString(2)), k -> new ArrayList<>())
                        .add(new VisitProjection.ManualAction(rs.getLong(3), rs.getString(4), rs.getString(5), rs.getString(6),
                                rs.getInt(7), rs.getObject(8, OffsetDateTime.class).toInstant(), rs.getString(9), rs.getString(10))));
        queryVisits(c, visits, "SELECT hospital, visit_id, id, rule_id, instance_key, period_no, status, due_at, remind_at, "
                + "completed_at, closed_by, close_reason, department, doctor, recipients, condition_level, overdue_at FROM qc_task "
                + "WHERE hospital = ? AND visit_id = ANY(?) ORDER BY id", rs -> {
                    String key = TaskSpec.key(rs.getString(4), rs.getString(5), rs.getInt(6));
                    stored.computeIfAbsent(new VisitKey(rs.getString(1), rs.getString(2)), k -> new LinkedHashMap<>())
                            .put(key, new Row(rs.getLong(3), key, TaskStatus.valueOf(rs.getString(7)), instant(rs, 8),
                                    rs.getString(9), instant(rs, 10), rs.getString(11), rs.getString(12), rs.getString(13),
                                    rs.getString(14), rs.getString(15), rs.getString(16), instant(rs, 17)));
                });
        Writes w = new Writes();
        for (VisitKey v : visits) {
            List<LogRow> rows = log.getOrDefault(v, List.of());
            VisitProjection.Result result = VisitProjection.project(rows.stream().map(LogRow::event).toList(),
                    manual.getOrDefault(v, List.of()), rules.rulesFor(v.hospital()), now);
            diff(v, result, rows, stored.getOrDefault(v, new LinkedHashMap<>()), w);
        }
        return w.flush(c, now, work);
    }

    /** What makes one visit's stored tasks, events and visit row match its projection, added to {@code w}. */
    private void diff(VisitKey v, VisitProjection.Result result, List<LogRow> log, Map<String, Row> rows, Writes w) {
        for (TaskSpec t : result.tasks()) {
            Row row = rows.remove(t.key());
            if (row == null) {
                TaskRef ref = w.insert(v, t);
                w.event(ref, v, t, "CREATED", null, t.status(), createdDetail(t));
                if (t.status() != TaskStatus.OPEN) {
                    w.event(ref, v, t, kind(null, t.status()), null, t.status(), t.closeReason());
                } else {
                    w.timer(ref, v, true, t.dueAt(), t.reminders());
                }
            } else {
                update(v, row, t, w);
            }
        }
        for (Row orphan : rows.values()) {
            if (orphan.status().pending()) {
                String reason = "no longer required by the rules in force";
                TaskRef ref = new TaskRef(orphan.id());
                w.cancels.add(new Cancel(orphan.id(), orphan.status() == TaskStatus.OPEN));
                w.events.add(new TaskEventRow(ref, v, orphan.key(), "CANCELLED", orphan.status(), TaskStatus.CANCELLED,
                        orphan.department(), orphan.doctor(), orphan.recipients(), reason));
                if (orphan.status() == TaskStatus.OPEN) {
                    w.timer(ref, v, false, null, List.of());
                }
            }
        }
        // what each event did; an event that was held and now applies was matched
        for (LogRow r : log) {
            VisitProjection.Outcome o = result.outcomes().get(r.event().eventId());
            String d = o == null ? "APPLIED" : o.disposition().name();
            String why = o == null ? null : cut(o.reason(), 1000);
            if (r.unsaved() != null) {
                w.newEvents.add(new NewEvent(v, r, d, why));
            } else if (!d.equals(r.disposition()) || !Objects.equals(why, r.reason())) {
                w.dispositions.add(new Disposition(r.event().seq(), d, why));
            }
        }
        w.visits.put(v, result.visit());
    }

    private void update(VisitKey v, Row row, TaskSpec t, Writes w) {
        if (row.status().completed()) {
            return; // a completed task stays completed
        }
        String remindAt = reminders(t.reminders());
        String recipients = json(t.recipients());
        boolean dueChanged = !row.due().equals(t.dueAt()) || !Objects.equals(row.remindAt(), remindAt);
        boolean statusChanged = row.status() != t.status();
        boolean other = !Objects.equals(row.completedAt(), t.completedAt()) || !Objects.equals(row.closedBy(), t.closedBy())
                || !Objects.equals(row.closeReason(), cut(t.closeReason(), 2000)) || !Objects.equals(row.department(), t.department())
                || !Objects.equals(row.doctor(), t.doctor()) || !Objects.equals(row.recipients(), recipients)
                || !Objects.equals(row.level(), t.level());
        if (!dueChanged && !statusChanged && !other) {
            return;
        }
        Instant overdueAt = row.overdueAt();
        if (t.status() == TaskStatus.OVERDUE && overdueAt == null) {
            overdueAt = t.dueAt();
        }
        // the timers: rewritten for the new due time, removed when the task stops being open, else left alone
        int timer = t.status() == TaskStatus.OPEN && (statusChanged || dueChanged) ? TaskUpdate.TIMER_SET
                : row.status() == TaskStatus.OPEN && t.status() != TaskStatus.OPEN ? TaskUpdate.TIMER_CLEAR : TaskUpdate.TIMER_KEEP;
        w.updates.add(new TaskUpdate(row.id(), t, remindAt, recipients, overdueAt, timer));
        TaskRef ref = new TaskRef(row.id());
        if (statusChanged) {
            String detail = t.status().completed() ? "document " + t.closedBy() + " written " + t.completedAt() + ", due " + t.dueAt()
                    : t.status() == TaskStatus.OVERDUE ? "due " + t.dueAt() + " passed" : t.closeReason();
            w.event(ref, v, t, kind(row.status(), t.status()), row.status(), t.status(), detail);
        }
        if (dueChanged && t.status().pending() && (!statusChanged || !row.due().equals(t.dueAt()))) {
            w.event(ref, v, t, "DUE_CHANGED", row.status(), t.status(), "due " + row.due() + " -> " + t.dueAt());
        }
        if (timer == TaskUpdate.TIMER_SET) {
            w.timer(ref, v, true, t.dueAt(), t.reminders());
        } else if (timer == TaskUpdate.TIMER_CLEAR) {
            w.timer(ref, v, false, null, List.of());
        }
    }

    private static String kind(TaskStatus from, TaskStatus to) {
        return switch (to) {
            case OVERDUE -> from == TaskStatus.CANCELLED ? "REOPENED" : "OVERDUE";
            case COMPLETED_ON_TIME, COMPLETED_LATE -> "COMPLETED";
            case CANCELLED -> "CANCELLED";
            case OPEN -> from == TaskStatus.CANCELLED ? "REOPENED" : "UPDATED";
        };
    }

    /** A task's id: known for a stored task, set once a new task's insert ran. */
    private static final class TaskRef {
        long id;

        TaskRef(long id) {
            this.id = id;
        }
    }

    private record NewTask(TaskRef ref, VisitKey visit, TaskSpec task) {
    }

    private record TaskEventRow(TaskRef ref, VisitKey visit, String key, String kind, TaskStatus from, TaskStatus to,
            String department, String doctor, String recipients, String detail) {
    }

    /** {@code timer}: what the update does to {@code timer_due_at} (its timers are rewritten in the same transaction). */
    private record TaskUpdate(long id, TaskSpec task, String remindAt, String recipients, Instant overdueAt, int timer) {
        static final int TIMER_KEEP = 0;
        static final int TIMER_SET = 1;
        static final int TIMER_CLEAR = 2;
    }

    /** An open or overdue task no rule requires any more; an open one loses its timers. */
    private record Cancel(long id, boolean wasOpen) {
    }

    private record TimerRow(TaskRef ref, VisitKey visit, boolean schedule, Instant due, List<Instant> reminders, boolean fresh) {
    }

    private record Disposition(long seq, String disposition, String reason) {
    }

    private record NewEvent(VisitKey visit, LogRow row, String disposition, String reason) {
    }

    /** The writes of one recomputation, flushed as one JDBC batch per statement. */
    private final class Writes {
        final List<NewTask> inserts = new ArrayList<>();
        final List<TaskUpdate> updates = new ArrayList<>();
        final List<Cancel> cancels = new ArrayList<>();
        final List<TaskEventRow> events = new ArrayList<>();
        final List<TimerRow> timers = new ArrayList<>();
        final List<Disposition> dispositions = new ArrayList<>();
        final List<NewEvent> newEvents = new ArrayList<>();
        final Map<VisitKey, VisitProjection.Visit> visits = new LinkedHashMap<>();

        TaskRef insert(VisitKey v, TaskSpec t) {
            TaskRef ref = new TaskRef(0);
            inserts.add(new NewTask(ref, v, t));
            return ref;
        }

        void event(TaskRef ref, VisitKey v, TaskSpec t, String kind, TaskStatus from, TaskStatus to, String detail) {
            events.add(new TaskEventRow(ref, v, t.key(), kind, from, to, t.department(), t.doctor(), json(t.recipients()), detail));
        }

        void timer(TaskRef ref, VisitKey v, boolean schedule, Instant due, List<Instant> reminders) {
            timers.add(new TimerRow(ref, v, schedule, due, reminders, ref.id == 0));
        }

        List<Change> flush(Connection c, Instant now, List<TimerWork> work) throws SQLException {
            if (!newEvents.isEmpty()) {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_visit_event (event_id, hospital, visit_id, "
                        + "event_type, occurred_at, envelope, flow, received_at, disposition, disposition_reason) "
                        + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                    for (NewEvent n : newEvents) {
                        Event e = n.row().unsaved();
                        ins.setString(1, e.eventId());
                        ins.setString(2, n.visit().hospital());
                        ins.setString(3, n.visit().visitId());
                        ins.setString(4, e.type());
                        ins.setObject(5, e.occurredAt());
                        ins.setString(6, e.envelope());
                        ins.setString(7, n.row().flow());
                        ins.setObject(8, Database.utc(now));
                        ins.setString(9, n.disposition());
                        ins.setString(10, n.reason());
                        ins.addBatch();
                    }
                    ins.executeBatch();
                }
            }
            if (!inserts.isEmpty()) {
                insertTasks(c, now);
            }
            if (!updates.isEmpty()) {
                updateTasks(c, now);
            }
            if (!cancels.isEmpty()) {
                try (PreparedStatement up = c.prepareStatement("UPDATE qc_task SET status = 'CANCELLED', close_reason = ?, "
                        + "updated_at = ?, timer_due_at = CASE WHEN ? = 1 THEN NULL ELSE timer_due_at END WHERE id = ?")) {
                    for (Cancel x : cancels) {
                        up.setString(1, "no longer required by the rules in force");
                        up.setObject(2, Database.utc(now));
                        up.setInt(3, x.wasOpen() ? 1 : 0);
                        up.setLong(4, x.id());
                        up.addBatch();
                    }
                    up.executeBatch();
                }
            }
            List<Change> changes = new ArrayList<>();
            if (!events.isEmpty()) {
                try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_task_event (task_id, hospital, visit_id, kind, "
                        + "status, event_at, department, doctor, recipients, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")) {
                    for (TaskEventRow e : events) {
                        ins.setLong(1, e.ref().id);
                        ins.setString(2, e.visit().hospital());
                        ins.setString(3, e.visit().visitId());
                        ins.setString(4, e.kind());
                        ins.setString(5, e.to().name());
                        ins.setObject(6, Database.utc(now));
                        ins.setString(7, e.department());
                        ins.setString(8, e.doctor());
                        ins.setString(9, e.recipients());
                        ins.setString(10, cut(e.detail(), 2000));
                        ins.addBatch();
                        changes.add(new Change(e.ref().id, e.visit().hospital(), e.visit().visitId(), e.key(), e.kind(), e.from(),
                                e.to(), e.detail()));
                    }
                    ins.executeBatch();
                }
            }
            if (!dispositions.isEmpty()) {
                try (PreparedStatement up = c.prepareStatement("UPDATE qc_visit_event SET disposition = ?, disposition_reason = ?, "
                        + "matched_at = CASE WHEN disposition = 'HELD' AND ? <> 'HELD' THEN ? ELSE matched_at END WHERE id = ?")) {
                    for (Disposition d : dispositions) {
                        up.setString(1, d.disposition());
                        up.setString(2, d.reason());
                        up.setString(3, d.disposition());
                        up.setObject(4, Database.utc(now));
                        up.setLong(5, d.seq());
                        up.addBatch();
                    }
                    up.executeBatch();
                }
            }
            try (PreparedStatement up = c.prepareStatement("UPDATE qc_visit SET patient_id = COALESCE(?, patient_id), status = ?, "
                    + "department = ?, attending_doctor = ?, condition_level = ?, admitted_at = ?, last_event_at = ?, updated_at = ? "
                    + "WHERE hospital = ? AND visit_id = ?")) {
                for (Map.Entry<VisitKey, VisitProjection.Visit> e : visits.entrySet()) {
                    VisitProjection.Visit s = e.getValue();
                    up.setString(1, s.patientId());
                    up.setString(2, s.status());
                    up.setString(3, s.department());
                    up.setString(4, s.doctor());
                    up.setString(5, s.level());
                    up.setObject(6, s.admittedAt() == null ? null : Database.utc(s.admittedAt()));
                    up.setObject(7, s.lastEventAt() == null ? null : Database.utc(s.lastEventAt()));
                    up.setObject(8, Database.utc(now));
                    up.setString(9, e.getKey().hospital());
                    up.setString(10, e.getKey().visitId());
                    up.addBatch();
                }
                up.executeBatch();
            }
            for (TimerRow t : timers) {
                // timer_due_at went out with the task's insert or update above
                work.add(new TimerWork(t.ref().id, t.visit(), t.schedule(), t.due(), t.reminders(), t.fresh(), true));
            }
            return changes;
        }

        private void insertTasks(Connection c, Instant now) throws SQLException {
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_task (hospital, visit_id, patient_id, rule_id, "
                    + "instance_key, period_no, document_type, department, doctor, recipients, condition_level, status, opened_at, "
                    + "opened_by, due_at, remind_at, completed_at, closed_by, close_reason, overdue_at, points, created_at, updated_at, "
                    + "timer_due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    new String[] { "id" })) {
                for (NewTask n : inserts) {
                    TaskSpec t = n.task();
                    ins.setString(1, n.visit().hospital());
                    ins.setString(2, n.visit().visitId());
                    ins.setString(3, t.patientId());
                    ins.setString(4, t.ruleId());
                    ins.setString(5, t.instance());
                    ins.setInt(6, t.period());
                    ins.setString(7, t.documentType());
                    ins.setString(8, t.department());
                    ins.setString(9, t.doctor());
                    ins.setString(10, json(t.recipients()));
                    ins.setString(11, t.level());
                    ins.setString(12, t.status().name());
                    ins.setObject(13, Database.utc(t.openedAt()));
                    ins.setString(14, t.openedBy());
                    ins.setObject(15, Database.utc(t.dueAt()));
                    ins.setString(16, reminders(t.reminders()));
                    ins.setObject(17, t.completedAt() == null ? null : Database.utc(t.completedAt()));
                    ins.setString(18, t.closedBy());
                    ins.setString(19, cut(t.closeReason(), 2000));
                    ins.setObject(20, t.status() == TaskStatus.OVERDUE || t.status() == TaskStatus.COMPLETED_LATE
                            ? Database.utc(t.dueAt()) : null);
                    ins.setDouble(21, t.points());
                    ins.setObject(22, Database.utc(now));
                    ins.setObject(23, Database.utc(now));
                    ins.setObject(24, t.status() == TaskStatus.OPEN ? Database.utc(t.dueAt()) : null); // its timers: written below
                    ins.addBatch();
                }
                ins.executeBatch();
                try (ResultSet keys = ins.getGeneratedKeys()) {
                    for (NewTask n : inserts) {
                        if (!keys.next()) {
                            throw new IllegalStateException("no generated id for new task " + n.task().key() + " of visit " + n.visit());
                        }
                        n.ref().id = keys.getLong(1);
                    }
                }
            }
        }

        private void updateTasks(Connection c, Instant now) throws SQLException {
            try (PreparedStatement up = c.prepareStatement("UPDATE qc_task SET status = ?, due_at = ?, remind_at = ?, "
                    + "completed_at = ?, closed_by = ?, close_reason = ?, department = ?, doctor = ?, recipients = ?, "
                    + "condition_level = ?, overdue_at = ?, updated_at = ?, "
                    + "timer_due_at = CASE ? WHEN 1 THEN CAST(? AS TIMESTAMP WITH TIME ZONE) WHEN 2 THEN NULL ELSE timer_due_at END "
                    + "WHERE id = ?")) {
                for (TaskUpdate u : updates) {
                    TaskSpec t = u.task();
                    up.setString(1, t.status().name());
                    up.setObject(2, Database.utc(t.dueAt()));
                    up.setString(3, u.remindAt());
                    up.setObject(4, t.completedAt() == null ? null : Database.utc(t.completedAt()));
                    up.setString(5, t.closedBy());
                    up.setString(6, cut(t.closeReason(), 2000));
                    up.setString(7, t.department());
                    up.setString(8, t.doctor());
                    up.setString(9, u.recipients());
                    up.setString(10, t.level());
                    up.setObject(11, u.overdueAt() == null ? null : Database.utc(u.overdueAt()));
                    up.setObject(12, Database.utc(now));
                    up.setInt(13, u.timer());
                    up.setObject(14, Database.utc(t.dueAt()));
                    up.setLong(15, u.id());
                    up.addBatch();
                }
                up.executeBatch();
            }
        }
    }

    /**
     * Visits by hospital, hospitals in key order: each bulk read is one statement per hospital (nearly always one) with
     * the visit ids as one array parameter, so its text, and PostgreSQL's plan of it, are the same for any number of visits.
     */
    private static Map<String, List<String>> byHospital(Collection<VisitKey> visits) {
        Map<String, List<String>> by = new TreeMap<>();
        visits.forEach(v -> by.computeIfAbsent(v.hospital(), h -> new ArrayList<>()).add(v.visitId()));
        return by;
    }

    @FunctionalInterface
    private interface RowReader {
        void read(ResultSet rs) throws SQLException;
    }

    /** Runs {@code sql} (parameters: hospital, visit id array) once per hospital of the visits, each row to {@code row}. */
    private static void queryVisits(Connection c, Collection<VisitKey> visits, String sql, RowReader row) throws SQLException {
        for (Map.Entry<String, List<String>> h : byHospital(visits).entrySet()) {
            try (PreparedStatement q = c.prepareStatement(sql)) {
                q.setString(1, h.getKey());
                q.setArray(2, c.createArrayOf("varchar", h.getValue().toArray()));
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        row.read(rs);
                    }
                }
            }
        }
    }

    private static String createdDetail(TaskSpec t) {
        return t.documentType() + " due " + t.dueAt() + " (opened by " + t.openedBy() + " at " + t.openedAt() + ")";
    }

    private void afterCommit(List<Change> changes) {
        Map<String, Integer> overdue = new HashMap<>();
        for (Change ch : changes) {
            if (ch.to() == TaskStatus.OVERDUE && ch.from() != TaskStatus.OVERDUE) {
                overdue.merge(ch.hospital(), 1, Integer::sum);
            }
        }
        overdue.forEach(metrics::overdue);
        if (!changes.isEmpty()) {
            metrics.changed();
        }
    }

    // ---- Timers fired ----------------------------------------------------------------------------------------------

    /**
     * Fires timer rows claimed by a sweep of replica {@code me}, in one transaction under their visits' locks: each row
     * still there and still claimed by {@code me} is deleted and applied (a deadline recomputes its visit, which marks
     * the task OVERDUE by the qc clock; a reminder is recorded once while the task is OPEN) and its firing recorded in
     * qc_timer_fire. A row gone (the task closed or its due time changed meanwhile) or taken over by another sweep is
     * skipped. A deadline the qc clock says has not come yet (a qc clock behind the system clock) keeps its timer.
     * Returns how many fired.
     */
    int fire(List<DeadlineTimers.Due> due, String me) throws SQLException {
        Instant now = clock.instant();
        Instant firedAt = Instant.now();
        List<TimerWork> work = new ArrayList<>();
        List<DeadlineTimers.Due> fired = new ArrayList<>();
        List<Change> changes = db.inTransaction(c -> {
            TreeSet<VisitKey> visits = new TreeSet<>();
            due.forEach(d -> visits.add(d.visit()));
            lock(c, visits, now);
            try (PreparedStatement del = c.prepareStatement("DELETE FROM qc_timer WHERE id = ? AND claimed_by = ?")) {
                for (DeadlineTimers.Due d : due) {
                    del.setLong(1, d.id());
                    del.setString(2, me);
                    del.addBatch();
                }
                int[] counts = del.executeBatch();
                for (int i = 0; i < counts.length; i++) {
                    if (counts[i] != 0) {
                        fired.add(due.get(i));
                    }
                }
            }
            Map<Long, String> outcomes = new HashMap<>();
            TreeSet<VisitKey> deadlines = new TreeSet<>();
            List<DeadlineTimers.Due> reminders = new ArrayList<>();
            for (DeadlineTimers.Due d : fired) {
                if (DeadlineTimers.DUE.equals(d.kind())) {
                    deadlines.add(d.visit());
                } else {
                    reminders.add(d);
                }
            }
            remind(c, reminders, outcomes);
            List<Change> all = recompute(c, deadlines, null, now, work);
            Map<Long, Boolean> rescheduled = new HashMap<>();
            work.forEach(w -> rescheduled.put(w.taskId(), w.schedule()));
            List<DeadlineTimers.Due> deadlinesFired = fired.stream().filter(d -> DeadlineTimers.DUE.equals(d.kind())).toList();
            Map<Long, Object[]> tasks = tasks(c, deadlinesFired.stream().map(DeadlineTimers.Due::taskId).toList());
            try (PreparedStatement keep = c.prepareStatement("INSERT INTO qc_timer (task_id, hospital, visit_id, kind, fire_at) "
                    + "VALUES (?, ?, ?, ?, ?)")) {
                int kept = 0;
                for (DeadlineTimers.Due d : deadlinesFired) {
                    Object[] task = tasks.get(d.taskId());
                    if (task == null) {
                        outcomes.put(d.id(), "no such task");
                        continue;
                    }
                    String status = (String) task[2];
                    outcomes.put(d.id(), status);
                    if ("OPEN".equals(status) && !rescheduled.containsKey(d.taskId())) {
                        // not due yet by the qc clock: the deadline stays pending (reconciliation also checks)
                        keep.setLong(1, d.taskId());
                        keep.setString(2, d.visit().hospital());
                        keep.setString(3, d.visit().visitId());
                        keep.setString(4, DeadlineTimers.DUE);
                        keep.setObject(5, Database.utc((Instant) task[3]));
                        keep.addBatch();
                        kept++;
                    }
                }
                if (kept > 0) {
                    keep.executeBatch();
                }
            }
            timers.write(c, work);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_timer_fire (task_id, trigger_name, kind, scheduled_at, "
                    + "fired_at, instance_id, outcome) VALUES (?, ?, ?, ?, ?, ?, ?)")) {
                for (DeadlineTimers.Due d : fired) {
                    ins.setLong(1, d.taskId());
                    ins.setString(2, DeadlineTimers.name(d.taskId(), d.kind(), d.at()));
                    ins.setString(3, d.kind());
                    ins.setObject(4, Database.utc(d.at()));
                    ins.setObject(5, Database.utc(firedAt));
                    ins.setString(6, me);
                    ins.setString(7, cut(outcomes.get(d.id()), 200));
                    ins.addBatch();
                }
                if (!fired.isEmpty()) {
                    ins.executeBatch();
                }
            }
            return all;
        });
        afterCommit(changes);
        fired.forEach(d -> timers.lateness(java.time.Duration.between(d.at(), firedAt)));
        return fired.size();
    }

    /**
     * Reminders fired: each recorded once (per task and reminder time) while its task is OPEN; {@code outcomes} gets
     * REMINDED, or why not.
     */
    private void remind(Connection c, List<DeadlineTimers.Due> fired, Map<Long, String> outcomes) throws SQLException {
        if (fired.isEmpty()) {
            return;
        }
        Map<Long, Object[]> tasks = tasks(c, fired.stream().map(DeadlineTimers.Due::taskId).toList());
        List<DeadlineTimers.Due> sent = new ArrayList<>();
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_task_event (task_id, hospital, visit_id, kind, "
                + "status, event_at, department, doctor, recipients, detail, dedupe_key) "
                + "VALUES (?, ?, ?, 'REMINDER', 'OPEN', ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING")) {
            for (DeadlineTimers.Due d : fired) {
                Object[] t = tasks.get(d.taskId());
                if (t == null || !"OPEN".equals(t[2])) {
                    outcomes.put(d.id(), "not open");
                    continue;
                }
                ins.setLong(1, d.taskId());
                ins.setString(2, (String) t[0]);
                ins.setString(3, (String) t[1]);
                ins.setObject(4, Database.utc(clock.instant()));
                ins.setString(5, (String) t[4]);
                ins.setString(6, (String) t[5]);
                ins.setString(7, (String) t[6]);
                ins.setString(8, "due " + t[3] + "; reminder for " + d.at());
                ins.setString(9, "remind:" + d.taskId() + ":" + d.at().toEpochMilli());
                ins.addBatch();
                sent.add(d);
            }
            if (sent.isEmpty()) {
                return;
            }
            int[] counts = ins.executeBatch();
            for (int i = 0; i < counts.length; i++) {
                DeadlineTimers.Due d = sent.get(i);
                if (counts[i] == 0) {
                    outcomes.put(d.id(), "reminded before");
                } else {
                    outcomes.put(d.id(), "REMINDED");
                    metrics.reminder(d.visit().hospital());
                }
            }
        }
    }

    /** hospital, visit, status, due (Instant), department, doctor, recipients of the tasks that exist, by id. */
    private static Map<Long, Object[]> tasks(Connection c, List<Long> ids) throws SQLException {
        Map<Long, Object[]> tasks = new HashMap<>();
        try (PreparedStatement q = c.prepareStatement("SELECT id, hospital, visit_id, status, due_at, department, doctor, "
                + "recipients FROM qc_task WHERE id = ANY(?)")) {
            q.setArray(1, c.createArrayOf("bigint", ids.stream().distinct().toArray()));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    tasks.put(rs.getLong(1), new Object[] { rs.getString(2), rs.getString(3), rs.getString(4), instant(rs, 5),
                            rs.getString(6), rs.getString(7), rs.getString(8) });
                }
            }
        }
        return tasks;
    }

    public Optional<TaskStatus> status(long taskId) throws SQLException {
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT status FROM qc_task WHERE id = ?")) {
            q.setLong(1, taskId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(TaskStatus.valueOf(rs.getString(1))) : Optional.empty();
            }
        }
    }

    /** Rewrites the timers of OPEN tasks from their rows (reconciliation: timers missing or wrong), under the visits' locks. */
    void restoreTimers(List<Long> taskIds) throws SQLException {
        if (taskIds.isEmpty()) {
            return;
        }
        Instant now = clock.instant();
        db.inTransaction(c -> {
            Map<Long, VisitKey> visitOf = new LinkedHashMap<>();
            try (PreparedStatement q = c.prepareStatement("SELECT hospital, visit_id FROM qc_task WHERE id = ?")) {
                for (long id : taskIds) {
                    q.setLong(1, id);
                    try (ResultSet rs = q.executeQuery()) {
                        if (rs.next()) {
                            visitOf.put(id, new VisitKey(rs.getString(1), rs.getString(2)));
                        }
                    }
                }
            }
            lock(c, new TreeSet<>(visitOf.values()), now);
            List<TimerWork> work = new ArrayList<>();
            try (PreparedStatement q = c.prepareStatement("SELECT status, due_at, remind_at FROM qc_task WHERE id = ?")) {
                for (Map.Entry<Long, VisitKey> e : visitOf.entrySet()) {
                    q.setLong(1, e.getKey());
                    try (ResultSet rs = q.executeQuery()) {
                        if (rs.next() && "OPEN".equals(rs.getString(1))) {
                            Instant due = instant(rs, 2);
                            work.add(new TimerWork(e.getKey(), e.getValue(), true, due,
                                    reminders(rs.getString(3)).stream().filter(r -> r.isAfter(now)).toList()));
                        }
                    }
                }
            }
            timers.write(c, work);
            return null;
        });
    }

    // ---- Corrections by hand -----------------------------------------------------------------------------------------

    public enum ManualOutcome {
        DONE,
        NOT_FOUND,
        CONFLICT
    }

    public record ManualResult(ManualOutcome outcome, String detail, long auditId) {
    }

    /**
     * Closes (the document was written, {@code at} = when) or cancels a task by hand, recorded in qc_audit with who
     * and why. Only OPEN or OVERDUE tasks; the change goes through the same computation as events.
     */
    public ManualResult manual(long taskId, String action, String actor, String reason, Instant at) throws SQLException {
        Optional<VisitKey> v = visitOf(taskId);
        if (v.isEmpty()) {
            return new ManualResult(ManualOutcome.NOT_FOUND, "no task " + taskId, 0);
        }
        Instant now = clock.instant();
        List<TimerWork> work = new ArrayList<>();
        List<Change> changes = new ArrayList<>();
        ManualResult r = db.inTransaction(c -> {
            lock(c, List.of(v.get()), now);
            String rule;
            String instance;
            int period;
            TaskStatus status;
            try (PreparedStatement q = c.prepareStatement("SELECT rule_id, instance_key, period_no, status FROM qc_task WHERE id = ?")) {
                q.setLong(1, taskId);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    rule = rs.getString(1);
                    instance = rs.getString(2);
                    period = rs.getInt(3);
                    status = TaskStatus.valueOf(rs.getString(4));
                }
            }
            if (!status.pending()) {
                return new ManualResult(ManualOutcome.CONFLICT, "task " + taskId + " is " + status
                        + "; only OPEN or OVERDUE tasks can be closed or cancelled", 0);
            }
            long audit = audit(c, actor, action, v.get(), taskId, rule, instance, period, at, "task " + taskId, reason, null, now);
            changes.addAll(recompute(c, List.of(v.get()), null, now, work));
            TaskStatus after;
            try (PreparedStatement q = c.prepareStatement("SELECT status FROM qc_task WHERE id = ?")) {
                q.setLong(1, taskId);
                try (ResultSet rs = q.executeQuery()) {
                    rs.next();
                    after = TaskStatus.valueOf(rs.getString(1));
                }
            }
            if (after.pending()) {
                throw new IllegalStateException("task " + taskId + " is still " + after + " after a manual " + action);
            }
            try (PreparedStatement up = c.prepareStatement("UPDATE qc_audit SET detail = ? WHERE id = ?")) {
                up.setString(1, "{\"from\":\"" + status + "\",\"to\":\"" + after + "\"}");
                up.setLong(2, audit);
                up.executeUpdate();
            }
            timers.write(c, work);
            return new ManualResult(ManualOutcome.DONE, status + " -> " + after, audit);
        });
        afterCommit(changes);
        return r;
    }

    /** Writes an audit row in the caller's transaction. */
    long audit(Connection c, String actor, String action, VisitKey v, Long taskId, String rule, String instance, Integer period,
            Instant effectiveAt, String target, String reason, String detail, Instant now) throws SQLException {
        try (PreparedStatement ins = c.prepareStatement("INSERT INTO qc_audit (action_at, actor, action, hospital, visit_id, task_id, "
                + "task_rule, task_instance, task_period, effective_at, target, reason, detail) "
                + "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", Statement.RETURN_GENERATED_KEYS)) {
            ins.setObject(1, Database.utc(now));
            ins.setString(2, actor);
            ins.setString(3, action);
            ins.setString(4, v == null ? null : v.hospital());
            ins.setString(5, v == null ? null : v.visitId());
            ins.setObject(6, taskId);
            ins.setString(7, rule);
            ins.setString(8, instance);
            ins.setObject(9, period);
            ins.setObject(10, effectiveAt == null ? null : Database.utc(effectiveAt));
            ins.setString(11, target);
            ins.setString(12, reason);
            ins.setString(13, detail);
            ins.executeUpdate();
            try (ResultSet keys = ins.getGeneratedKeys()) {
                keys.next();
                return keys.getLong(1);
            }
        }
    }

    /** An audit row in its own transaction. */
    public long audit(String actor, String action, String target, String reason, String detail) throws SQLException {
        Instant now = clock.instant();
        return db.inTransaction(c -> audit(c, actor, action, null, null, null, null, null, null, target, reason, detail, now));
    }

    // ---- Helpers -----------------------------------------------------------------------------------------------------

    private JsonNode read(String json) {
        try {
            return mapper.readTree(json);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("stored envelope is not JSON: " + e.getMessage(), e);
        }
    }

    String json(List<String> list) {
        try {
            return mapper.writeValueAsString(list);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    List<String> list(String json) {
        try {
            return json == null ? List.of() : mapper.readValue(json, new TypeReference<List<String>>() {
            });
        } catch (JsonProcessingException e) {
            return List.of(json);
        }
    }

    static String reminders(List<Instant> r) {
        return r.isEmpty() ? null : String.join(",", r.stream().map(Instant::toString).toList());
    }

    static List<Instant> reminders(String s) {
        return s == null || s.isBlank() ? List.of() : Arrays.stream(s.split(",")).map(Instant::parse).toList();
    }

    static Instant instant(ResultSet rs, int col) throws SQLException {
        OffsetDateTime t = rs.getObject(col, OffsetDateTime.class);
        return t == null ? null : t.toInstant();
    }

    private static String cut(String s, int max) {
        return s == null || s.length() <= max ? s : s.substring(0, max - 1) + "…";
    }
}
