package org.hospitalhub.qc;

import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import com.fasterxml.jackson.databind.ObjectMapper;

import io.quarkus.quartz.Nonconcurrent;
import io.quarkus.scheduler.Scheduled;

/**
 * Finds and fixes what the event path and the timers missed: tasks that should exist but don't, tasks that should be
 * closed but are open, overdue tasks not marked (by recomputing visits), and open tasks whose timers are
 * missing or wrong, timers long due and not fired, and the timer sweep's Quartz trigger in error or stuck (clustered
 * Quartz can leave triggers ACQUIRED or BLOCKED); reports what it fixed and
 * the events still held. Each run is audited.
 * <p>
 * Two scopes. {@code full} recomputes every live visit. {@code due} recomputes the visits that can be wrong without a
 * fault in the database: an open task past its due time (its deadline timer stuck or lost), an event still held or not
 * applied; events are applied in the same transaction as the tasks they change, so between those only time and the
 * rules change what a visit's tasks should be. Every {@code hub.qc.reconcile-every} (a clustered Quartz job on one
 * replica, also right after startup) a run is {@code due}, or {@code full} when the last full run is older than
 * {@code hub.qc.reconcile-full-every} or was made under other rules (a changed rule file, after a restart). On demand
 * ({@code POST /api/v1/qc/reconcile}) a run is full unless {@code scope=due} is asked. Both check the timer sweep (its
 * Quartz trigger, timers long due); a full run also checks every open task's timers.
 */
@ApplicationScoped
public class Reconciliation {

    private static final Logger LOG = Logger.getLogger(Reconciliation.class);

    private final Database db;
    private final TaskEngine engine;
    private final DeadlineTimers timers;
    private final QcClock clock;
    private final ObjectMapper mapper;
    private final Duration window;
    private final Duration stuckAfter;
    private final double share;
    private final Duration fullEvery;
    private final RuleBook rules;

    /** What a run recomputes: every live visit, or only those with something due (see the class comment). */
    public enum Scope {
        FULL, DUE;

        /** As the API and the audit detail name it: {@code full} or {@code due}. */
        String label() {
            return name().toLowerCase(java.util.Locale.ROOT);
        }

        /** The audit target of a run of this scope: {@code qc full rules=<fingerprint>} or {@code qc due}. */
        String target(RuleBook rules) {
            return this == FULL ? "qc full rules=" + rules.fingerprint() : "qc due";
        }
    }

    public Reconciliation(Database db, TaskEngine engine, DeadlineTimers timers, QcClock clock, ObjectMapper mapper,
            @ConfigProperty(name = "hub.qc.reconcile-window", defaultValue = "7d") String window,
            @ConfigProperty(name = "hub.qc.timer-stuck-after", defaultValue = "5m") String stuckAfter,
            @ConfigProperty(name = "hub.qc.reconcile-share", defaultValue = "0.25") double share,
            @ConfigProperty(name = "hub.qc.reconcile-full-every", defaultValue = "24h") String fullEvery, RuleBook rules) {
        this.db = db;
        this.engine = engine;
        this.timers = timers;
        this.clock = clock;
        this.mapper = mapper;
        this.window = config("hub.qc.reconcile-window", window);
        this.stuckAfter = config("hub.qc.timer-stuck-after", stuckAfter);
        if (!(share > 0 && share <= 1)) {
            throw new IllegalStateException("hub.qc.reconcile-share must be above 0 and at most 1 (the share of the time a "
                    + "scheduled run works, e.g. 0.25); got " + share);
        }
        this.share = share;
        this.fullEvery = config("hub.qc.reconcile-full-every", fullEvery);
        this.rules = rules;
    }

    private static Duration config(String key, String value) {
        Duration d = RuleBook.parseDuration(value.strip());
        if (d == null || d.isNegative()) {
            throw new IllegalStateException(key + " must be a duration such as 5m, 7d or PT5M; got '" + value + "'");
        }
        return d;
    }

    /** One thing fixed. kind: task-created, task-closed, overdue-marked, task-cancelled, task-reopened, due-corrected, task-updated, timer-restored, timer-fired. */
    public record Fix(String kind, Long taskId, String hospital, String visitId, String task, String detail) {
    }

    public record Report(Instant startedAt, Instant finishedAt, String by, String scope, int visitsChecked, int timersChecked,
            Map<String, Integer> fixedByKind, List<Fix> fixes, long heldEvents, Instant oldestHeldReceivedAt, long auditId) {
    }

    @Scheduled(identity = "qc-reconcile", every = "{hub.qc.reconcile-every}")
    @Nonconcurrent
    void scheduled() {
        try {
            Report r = run("scheduler", scheduledScope(), true);
            if (!r.fixes().isEmpty()) {
                LOG.warnf("qc reconciliation fixed %d things: %s", r.fixes().size(), r.fixedByKind());
            }
        } catch (SQLException | RuntimeException e) {
            LOG.errorf("qc reconciliation failed: %s", e.getMessage());
        }
    }

    public Report run(String by) throws SQLException {
        return run(by, Scope.FULL, false);
    }

    public Report run(String by, Scope scope) throws SQLException {
        return run(by, scope, false);
    }

    /** FULL when no full run under the rules in force is on record within {@code hub.qc.reconcile-full-every}, else DUE. */
    Scope scheduledScope() throws SQLException {
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT COUNT(*) FROM qc_audit WHERE action = 'RECONCILE' AND target = ? AND action_at >= ?")) {
            q.setString(1, Scope.FULL.target(rules));
            q.setObject(2, Database.utc(clock.instant().minus(fullEvery)));
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1) > 0 ? Scope.DUE : Scope.FULL;
            }
        }
    }

    /**
     * {@code paced}: after each chunk of visits, wait so that a scheduled run works {@code hub.qc.reconcile-share} of the
     * time (default a quarter): over tens of thousands of live visits it then takes that share of one core, and of the
     * database, from the events being applied meanwhile, instead of half (the qc benchmark's p99 doubled for the minute
     * a half-paced run over 72,000 visits took; bench/README.md).
     */
    Report run(String by, Scope scope, boolean paced) throws SQLException {
        Instant started = clock.instant();
        List<Fix> fixes = new ArrayList<>();
        TreeSet<TaskEngine.VisitKey> visits = new TreeSet<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(scope == Scope.FULL
                ? "SELECT hospital, visit_id FROM qc_visit WHERE status IN ('PENDING', 'ADMITTED') OR last_event_at >= ? "
                        + "UNION SELECT hospital, visit_id FROM qc_task WHERE status IN ('OPEN', 'OVERDUE') "
                        + "UNION SELECT hospital, visit_id FROM qc_visit_event WHERE disposition IN ('HELD', 'NEW')"
                : "SELECT hospital, visit_id FROM qc_task WHERE status = 'OPEN' AND due_at <= ? "
                        + "UNION SELECT hospital, visit_id FROM qc_visit_event WHERE disposition IN ('HELD', 'NEW')")) {
            // due: past its due time by more than hub.qc.timer-stuck-after, as for the timers below (a deadline that
            // has just passed is the timer sweep's to mark)
            q.setObject(1, Database.utc(started.minus(scope == Scope.FULL ? window : stuckAfter)));
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    visits.add(new TaskEngine.VisitKey(rs.getString(1), rs.getString(2)));
                }
            }
        }
        List<TaskEngine.VisitKey> all = new ArrayList<>(visits);
        for (int i = 0; i < all.size(); i += DeadlineTimers.VISITS_PER_TRANSACTION) {
            // a chunk of visits per transaction: with tens of thousands of live visits, one transaction each made a
            // run take over a minute of the engine's database time (bench/README.md, qc benchmark)
            List<TaskEngine.VisitKey> chunk = all.subList(i, Math.min(all.size(), i + DeadlineTimers.VISITS_PER_TRANSACTION));
            long t0 = System.nanoTime();
            List<TaskEngine.Change> changes = engine.recompute(chunk);
            if (paced) {
                pause(pauseAfter(System.nanoTime() - t0, share));
            }
            for (TaskEngine.Change ch : changes) {
                fixes.add(new Fix(kind(ch.kind()), ch.taskId(), ch.hospital(), ch.visitId(), ch.taskKey(),
                        (ch.from() == null ? "" : ch.from() + " -> ") + ch.to() + (ch.detail() == null ? "" : ": " + ch.detail())));
            }
        }
        int timersChecked = scope == Scope.FULL ? checkOpenTaskTimers(fixes) : 0;
        checkSweep(fixes);
        long held;
        Instant oldest;
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT COUNT(*), MIN(received_at) FROM qc_visit_event WHERE disposition = 'HELD'")) {
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                held = rs.getLong(1);
                oldest = TaskEngine.instant(rs, 2);
            }
        }
        Map<String, Integer> byKind = new TreeMap<>();
        fixes.forEach(f -> byKind.merge(f.kind(), 1, Integer::sum));
        Instant finished = clock.instant();
        String detail;
        try {
            detail = mapper.writeValueAsString(Map.of("scope", scope.label(),
                    "visitsChecked", visits.size(), "timersChecked", timersChecked,
                    "fixedByKind", byKind, "fixes", fixes.size() > 200 ? fixes.subList(0, 200) : fixes, "heldEvents", held));
        } catch (com.fasterxml.jackson.core.JsonProcessingException e) {
            detail = byKind.toString();
        }
        long audit = engine.audit(by, "RECONCILE", scope.target(rules), fixes.isEmpty() ? "nothing to fix" : fixes.size() + " fixes", detail);
        return new Report(started, finished, by, scope.label(), visits.size(), timersChecked, byKind, fixes, held, oldest, audit);
    }

    /** How long to rest after {@code workedNanos} of work to work {@code share} of the time: at most 5 s. */
    static long pauseAfter(long workedNanos, double share) {
        return Math.min((long) (workedNanos * (1 - share) / share), Duration.ofSeconds(5).toNanos());
    }

    private static void pause(long nanos) {
        try {
            Thread.sleep(Duration.ofNanos(nanos).toMillis());
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    /**
     * Open tasks whose timers are missing or set for another due time (rewritten; full runs only: the engine writes a
     * task's timers in the task's own transaction, so only a fault in the database leaves them wrong, and the check
     * reads every open task). Returns how many open tasks were checked.
     */
    private int checkOpenTaskTimers(List<Fix> fixes) throws SQLException {
        record Open(long id, String hospital, String visit, String key, Instant due, Instant timerDue, Instant dueTimer) {
        }
        int checked;
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM qc_task WHERE status = 'OPEN'");
                ResultSet rs = q.executeQuery()) {
            rs.next();
            checked = rs.getInt(1);
        }
        // The database compares (one join of the open tasks with their deadline timers) and returns only the suspect
        // rows, a page at a time by id: reading every open task into the hub, 2,000 per query, cost the database ~14 s
        // over 300,000 open tasks, a burst the engine's events queued behind (bench/README.md, qc benchmark); the join
        // takes under a second. A task with two deadline timers comes once per timer.
        long after = 0;
        Set<Long> seen = new HashSet<>();
        while (true) {
            List<Open> open = new ArrayList<>();
            try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT t.id, t.hospital, t.visit_id, "
                    + "t.rule_id, t.instance_key, t.period_no, t.due_at, t.timer_due_at, r.fire_at "
                    + "FROM qc_task t LEFT JOIN qc_timer r ON r.task_id = t.id AND r.kind = 'DUE' "
                    + "WHERE t.status = 'OPEN' AND t.id > ? AND (r.fire_at IS NULL OR r.fire_at <> t.due_at "
                    + "OR t.timer_due_at IS NULL OR t.timer_due_at <> t.due_at) ORDER BY t.id LIMIT ?")) {
                q.setLong(1, after);
                q.setInt(2, TIMER_CHECK_PAGE);
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        open.add(new Open(rs.getLong(1), rs.getString(2), rs.getString(3),
                                TaskSpec.key(rs.getString(4), rs.getString(5), rs.getInt(6)), TaskEngine.instant(rs, 7),
                                TaskEngine.instant(rs, 8), TaskEngine.instant(rs, 9)));
                    }
                }
            }
            if (open.isEmpty()) {
                break;
            }
            after = open.get(open.size() - 1).id();
            List<Long> restore = new ArrayList<>();
            for (Open o : open) {
                if (!seen.add(o.id())) {
                    continue;
                }
                String problem = null;
                if (o.dueTimer() == null) {
                    problem = "deadline timer missing";
                } else if (!o.dueTimer().equals(o.due())) {
                    problem = "deadline timer set for " + o.dueTimer() + " but the task is due " + o.due();
                } else if (o.timerDue() == null || !o.timerDue().equals(o.due())) {
                    problem = "timers not written for the due time " + o.due();
                }
                if (problem != null) {
                    restore.add(o.id());
                    fixes.add(new Fix("timer-restored", o.id(), o.hospital(), o.visit(), o.key(), problem + "; rewritten"));
                }
            }
            for (int i = 0; i < restore.size(); i += 200) {
                engine.restoreTimers(restore.subList(i, Math.min(restore.size(), i + 200)));
            }
            if (open.size() < TIMER_CHECK_PAGE) {
                break;
            }
        }
        return checked;
    }

    /**
     * Timers due for longer than {@code hub.qc.timer-stuck-after} and still not fired (fired now), and the sweep's Quartz
     * trigger left in ERROR or stuck ACQUIRED/BLOCKED (set back to WAITING). Both scopes.
     */
    private void checkSweep(List<Fix> fixes) throws SQLException {
        String stuck = timers.stuckSweepTrigger(stuckAfter);
        if (stuck != null) {
            timers.resetSweepTrigger();
            fixes.add(new Fix("timer-restored", null, null, null, "qc-timer-sweep", stuck + "; set back to WAITING"));
        }
        long late = timers.lateCount(stuckAfter);
        if (late > 0) {
            int fired = timers.sweep();
            fixes.add(new Fix("timer-fired", null, null, null, "qc-timer-sweep", late + " timers due for more than " + stuckAfter
                    + " and not fired; a sweep fired " + fired));
        }
    }

    /** Open tasks read per query by the timer check. */
    private static final int TIMER_CHECK_PAGE = 2_000;

    private static String kind(String change) {
        return switch (change) {
            case "CREATED" -> "task-created";
            case "COMPLETED" -> "task-closed";
            case "OVERDUE" -> "overdue-marked";
            case "CANCELLED" -> "task-cancelled";
            case "REOPENED" -> "task-reopened";
            case "DUE_CHANGED" -> "due-corrected";
            default -> "task-updated";
        };
    }
}
