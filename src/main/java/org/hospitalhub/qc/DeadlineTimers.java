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

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Instance;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;
import org.quartz.Scheduler;
import org.quartz.SchedulerException;

import io.quarkus.scheduler.Scheduled;

/**
 * The durable timers of qc tasks: one {@code qc_timer} row per pending deadline ({@code DUE}) and reminder
 * ({@code REMIND}) of an OPEN task, written by the task engine in the task's own transaction ({@link #write}), so a
 * task never exists without its timers and a closed task never keeps one.
 * <p>
 * A clustered Quartz job on the JDBC job store ({@code qc-timer-sweep}, every {@code hub.qc.timer-sweep-every})
 * fires the rows that are due by the system clock: it claims up to {@code hub.qc.timer-batch} rows for
 * {@code hub.qc.timer-claim} (another replica's sweep takes what is not claimed, and takes a claim over once it has
 * expired, e.g. after a crash), then, a chunk of visits per transaction under the visits' row locks (the task
 * engine's lock order), deletes each row and applies it: a deadline recomputes the visit, which marks the task
 * OVERDUE if the qc clock says so; a reminder is recorded once while the task is OPEN. Deleting the row, applying it
 * and recording the firing in {@code qc_timer_fire} commit together, so each timer fires exactly once across replicas
 * and restarts. Timers that came due while every replica was down fire at the first sweep after startup.
 * <p>
 * Why not one Quartz trigger per timer, as before V38: Quartz's JDBC store takes its global TRIGGER_ACCESS row lock and
 * about eight statements per trigger stored; at two to three triggers per task that held the engine to about a hundred
 * tasks a second (bench/README.md, qc benchmark).
 */
@ApplicationScoped
public class DeadlineTimers {

    private static final Logger LOG = Logger.getLogger(DeadlineTimers.class);
    public static final String DUE = "DUE";
    public static final String REMIND = "REMIND";
    /** Visits whose due timers are applied in one transaction. */
    static final int VISITS_PER_TRANSACTION = 50;

    private final Database db;
    private final Instance<TaskEngine> engine;
    private final Instance<Scheduler> scheduler;
    private final QcMetrics metrics;
    private final int batch;
    private final Duration claim;

    public DeadlineTimers(Database db, Instance<TaskEngine> engine, Instance<Scheduler> scheduler, QcMetrics metrics,
            @ConfigProperty(name = "hub.qc.timer-batch", defaultValue = "500") int batch,
            @ConfigProperty(name = "hub.qc.timer-claim", defaultValue = "60s") Duration claim) {
        this.db = db;
        this.engine = engine;
        this.scheduler = scheduler;
        this.metrics = metrics;
        if (batch < 1) {
            throw new IllegalStateException("hub.qc.timer-batch must be at least 1; got " + batch);
        }
        this.batch = batch;
        this.claim = claim;
    }

    /** The name a timer is known by in {@code qc_timer_fire}: {@code task-<id>-due} or {@code task-<id>-remind-<epoch ms>}. */
    public static String name(long taskId, String kind, Instant at) {
        return DUE.equals(kind) ? "task-" + taskId + "-due" : "task-" + taskId + "-remind-" + at.toEpochMilli();
    }

    // ---- Written by the task engine, in the task's transaction ---------------------------------------------------------

    /**
     * Replaces the timers of the tasks a change touched: for a task (still or again) OPEN its deadline and the
     * reminders before it (a reminder already past fires at the next sweep), for a task no longer OPEN none. Also
     * records in {@code qc_task.timer_due_at} the due time the timers were written for.
     */
    void write(Connection c, List<TaskEngine.TimerWork> work) throws SQLException {
        if (work.isEmpty()) {
            return;
        }
        Map<Long, TaskEngine.TimerWork> last = new LinkedHashMap<>(); // a task changed twice in one transaction: its last state
        for (TaskEngine.TimerWork w : work) {
            last.remove(w.taskId());
            last.put(w.taskId(), w);
        }
        try (PreparedStatement del = c.prepareStatement("DELETE FROM qc_timer WHERE task_id = ?");
                PreparedStatement ins = c.prepareStatement("INSERT INTO qc_timer (task_id, hospital, visit_id, kind, fire_at) "
                        + "VALUES (?, ?, ?, ?, ?)");
                PreparedStatement mark = c.prepareStatement("UPDATE qc_task SET timer_due_at = ? WHERE id = ?")) {
            int inserts = 0;
            int replaced = 0;
            int marks = 0;
            for (TaskEngine.TimerWork w : last.values()) {
                if (!w.fresh()) { // a task inserted in this transaction has no timers yet and its timer_due_at is set
                    del.setLong(1, w.taskId());
                    del.addBatch();
                    if (!w.marked()) { // else the task's own update set it
                        mark.setObject(1, w.schedule() ? Database.utc(w.due()) : null);
                        mark.setLong(2, w.taskId());
                        mark.addBatch();
                        marks++;
                    }
                    replaced++;
                }
                if (!w.schedule()) {
                    continue;
                }
                inserts += add(ins, w, DUE, w.due());
                for (Instant r : w.reminders().stream().distinct().toList()) {
                    if (r.isBefore(w.due())) {
                        inserts += add(ins, w, REMIND, r);
                    }
                }
            }
            if (replaced > 0) {
                del.executeBatch();
            }
            if (inserts > 0) {
                ins.executeBatch();
            }
            if (marks > 0) {
                mark.executeBatch();
            }
        }
    }

    private static int add(PreparedStatement ins, TaskEngine.TimerWork w, String kind, Instant at) throws SQLException {
        ins.setLong(1, w.taskId());
        ins.setString(2, w.visit().hospital());
        ins.setString(3, w.visit().visitId());
        ins.setString(4, kind);
        ins.setObject(5, Database.utc(at));
        ins.addBatch();
        return 1;
    }

    // ---- Fired by the sweep ----------------------------------------------------------------------------------------------

    /** A due timer row taken by this replica's sweep. */
    record Due(long id, long taskId, TaskEngine.VisitKey visit, String kind, Instant at) {
    }

    /** The sweep, a clustered Quartz job: one replica per firing, but a long sweep may overlap one on another replica. */
    @Scheduled(identity = "qc-timer-sweep", every = "{hub.qc.timer-sweep-every}", concurrentExecution = Scheduled.ConcurrentExecution.SKIP)
    void scheduled() {
        try {
            sweep();
        } catch (SQLException | RuntimeException e) {
            LOG.warnf("qc timer sweep failed (the next one retries): %s", e.getMessage());
        }
    }

    /** Fires every timer due by now, a claimed batch at a time, until none is left; returns how many fired. */
    public int sweep() throws SQLException {
        String me = instance();
        int fired = 0;
        while (true) {
            List<Due> due = claim(me, Instant.now());
            if (due.isEmpty()) {
                return fired;
            }
            fired += fire(due, me);
            if (due.size() < batch) {
                return fired;
            }
        }
    }

    /** Claims up to one batch of due rows not claimed by a live sweep (a row another sweep claims first is skipped). */
    private List<Due> claim(String me, Instant now) throws SQLException {
        List<Due> candidates = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT id, task_id, hospital, visit_id, "
                + "kind, fire_at FROM qc_timer WHERE fire_at <= ? AND (claimed_until IS NULL OR claimed_until < ?) "
                + "ORDER BY fire_at LIMIT ?")) {
            q.setObject(1, Database.utc(now));
            q.setObject(2, Database.utc(now));
            q.setInt(3, batch);
            try (ResultSet rs = q.executeQuery()) {
                while (rs.next()) {
                    candidates.add(new Due(rs.getLong(1), rs.getLong(2), new TaskEngine.VisitKey(rs.getString(3), rs.getString(4)),
                            rs.getString(5), TaskEngine.instant(rs, 6)));
                }
            }
        }
        if (candidates.isEmpty()) {
            return candidates;
        }
        return db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement("UPDATE qc_timer SET claimed_by = ?, claimed_until = ? "
                    + "WHERE id = ? AND (claimed_until IS NULL OR claimed_until < ?)")) {
                for (Due d : candidates) {
                    up.setString(1, me);
                    up.setObject(2, Database.utc(now.plus(claim)));
                    up.setLong(3, d.id());
                    up.setObject(4, Database.utc(now));
                    up.addBatch();
                }
                int[] counts = up.executeBatch();
                List<Due> mine = new ArrayList<>();
                for (int i = 0; i < counts.length; i++) {
                    if (counts[i] != 0) { // 1, or SUCCESS_NO_INFO
                        mine.add(candidates.get(i));
                    }
                }
                return mine;
            }
        });
    }

    /** Applies claimed rows, {@value #VISITS_PER_TRANSACTION} visits per transaction; returns how many fired. */
    private int fire(List<Due> due, String me) throws SQLException {
        Map<TaskEngine.VisitKey, List<Due>> byVisit = new java.util.TreeMap<>();
        due.forEach(d -> byVisit.computeIfAbsent(d.visit(), k -> new ArrayList<>()).add(d));
        List<TaskEngine.VisitKey> visits = new ArrayList<>(byVisit.keySet());
        int fired = 0;
        for (int i = 0; i < visits.size(); i += VISITS_PER_TRANSACTION) {
            List<Due> chunk = new ArrayList<>();
            visits.subList(i, Math.min(visits.size(), i + VISITS_PER_TRANSACTION)).forEach(v -> chunk.addAll(byVisit.get(v)));
            try {
                fired += engine.get().fire(chunk, me);
            } catch (SQLException | RuntimeException e) {
                // the rows stay, claimed until the claim expires: the next sweep after that tries them again
                LOG.warnf("qc timers of %d visits failed (retried once their claim expires): %s",
                        Math.min(visits.size() - i, VISITS_PER_TRANSACTION), e.getMessage());
            }
        }
        return fired;
    }

    /**
     * Fires one pending timer now, whatever its time, through the sweep's path (tests, where the qc clock runs days
     * ahead of the system clock). Returns 1 if it fired, 0 if there was no such timer.
     */
    int fireNow(long taskId, String kind, Instant at) throws SQLException {
        String me = instance();
        Instant now = Instant.now();
        List<Due> due = db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement("UPDATE qc_timer SET claimed_by = ?, claimed_until = ? "
                    + "WHERE task_id = ? AND kind = ? AND fire_at = ?");
                    PreparedStatement q = c.prepareStatement("SELECT id, hospital, visit_id FROM qc_timer "
                            + "WHERE task_id = ? AND kind = ? AND fire_at = ?")) {
                up.setString(1, me);
                up.setObject(2, Database.utc(now.plus(claim)));
                up.setLong(3, taskId);
                up.setString(4, kind);
                up.setObject(5, Database.utc(at));
                up.executeUpdate();
                q.setLong(1, taskId);
                q.setString(2, kind);
                q.setObject(3, Database.utc(at));
                List<Due> found = new ArrayList<>();
                try (ResultSet rs = q.executeQuery()) {
                    while (rs.next()) {
                        found.add(new Due(rs.getLong(1), taskId, new TaskEngine.VisitKey(rs.getString(2), rs.getString(3)), kind, at));
                    }
                }
                return found;
            }
        });
        return due.isEmpty() ? 0 : engine.get().fire(due, me);
    }

    void lateness(Duration late) {
        metrics.lateness(late);
    }

    String instance() {
        try {
            return scheduler.get().getSchedulerInstanceId();
        } catch (SchedulerException | RuntimeException e) {
            return "?";
        }
    }

    // ---- For reconciliation ----------------------------------------------------------------------------------------------

    /** Due timers still not fired this long after their time (the sweep is not running, or keeps failing on them). */
    public long lateCount(Duration after) throws SQLException {
        try (Connection c = db.connection();
                PreparedStatement q = c.prepareStatement("SELECT COUNT(*) FROM qc_timer WHERE fire_at < ?")) {
            q.setObject(1, Database.utc(Instant.now().minus(after)));
            try (ResultSet rs = q.executeQuery()) {
                rs.next();
                return rs.getLong(1);
            }
        }
    }

    /**
     * The state of the sweep's Quartz trigger(s) if one is in ERROR or has not fired for {@code after} (clustered Quartz
     * can leave a trigger ACQUIRED or BLOCKED), else null.
     */
    public String stuckSweepTrigger(Duration after) throws SQLException {
        String sched;
        try {
            sched = scheduler.get().getSchedulerName();
        } catch (SchedulerException e) {
            throw new IllegalStateException("Quartz scheduler unavailable: " + e.getMessage(), e);
        }
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement("SELECT trigger_name, trigger_state, "
                + "next_fire_time FROM qrtz_triggers WHERE sched_name = ? AND job_name = 'qc-timer-sweep'")) {
            q.setString(1, sched);
            try (ResultSet rs = q.executeQuery()) {
                long before = System.currentTimeMillis() - after.toMillis();
                while (rs.next()) {
                    String state = rs.getString(2);
                    long next = rs.getLong(3);
                    if ("ERROR".equals(state) || (next > 0 && next < before && !"COMPLETE".equals(state))) {
                        return "sweep trigger " + rs.getString(1) + " is " + state + " (next fire time "
                                + Instant.ofEpochMilli(next) + ")";
                    }
                }
            }
        }
        return null;
    }

    /** Sets an ERROR or stuck sweep trigger back to WAITING (Quartz then fires it again). */
    public void resetSweepTrigger() throws SQLException {
        String sched;
        try {
            sched = scheduler.get().getSchedulerName();
        } catch (SchedulerException e) {
            throw new IllegalStateException("Quartz scheduler unavailable: " + e.getMessage(), e);
        }
        db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement("UPDATE qrtz_triggers SET trigger_state = 'WAITING' "
                    + "WHERE sched_name = ? AND job_name = 'qc-timer-sweep' AND trigger_state IN ('ERROR', 'ACQUIRED', 'BLOCKED')")) {
                up.setString(1, sched);
                return up.executeUpdate();
            }
        });
    }
}
