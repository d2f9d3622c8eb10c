package org.hospitalhub.qc;

import java.time.Instant;
import java.util.ArrayList;
import java.util.Date;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Instance;

import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;
import org.quartz.JobBuilder;
import org.quartz.JobDetail;
import org.quartz.JobKey;
import org.quartz.Scheduler;
import org.quartz.SchedulerException;
import org.quartz.SimpleScheduleBuilder;
import org.quartz.Trigger;
import org.quartz.TriggerBuilder;
import org.quartz.TriggerKey;

/**
 * The durable timers of qc tasks, in Quartz's JDBC job store (the hub's database, clustered): per OPEN task one job
 * {@code qc.task-<id>} with a trigger at the due time ({@code task-<id>-due}) and one per reminder
 * ({@code task-<id>-remind-<epoch ms>}). Clustered Quartz fires each trigger on one replica; a trigger missed while
 * every replica was down fires at once at startup (misfire instruction "fire now"). What a firing does is idempotent
 * anyway (see {@link TimerJob}).
 */
@ApplicationScoped
public class DeadlineTimers {

    private static final Logger LOG = Logger.getLogger(DeadlineTimers.class);
    public static final String GROUP = "qc";
    /** Tasks whose timers are written in one Quartz transaction. */
    static final int CHUNK = 25;

    private final Instance<Scheduler> scheduler;
    private final Database db;

    public DeadlineTimers(Instance<Scheduler> scheduler, Database db) {
        this.scheduler = scheduler;
        this.db = db;
    }

    public static JobKey job(long taskId) {
        return JobKey.jobKey("task-" + taskId, GROUP);
    }

    public static TriggerKey dueTrigger(long taskId) {
        return TriggerKey.triggerKey("task-" + taskId + "-due", GROUP);
    }

    public Scheduler scheduler() {
        return scheduler.get();
    }

    /**
     * Schedules or removes the timers of the tasks a change touched, {@value #CHUNK} tasks per Quartz transaction and
     * UPDATE transaction: task by task it was two commits per task (bench/run-qc.sh), and one transaction for a whole
     * batch would hold Quartz's TRIGGER_ACCESS lock so long that the timer threads, which need it to fire, fall behind.
     * If a chunk fails, each of its tasks is tried on its own, so that one bad task does not leave the others without
     * timers.
     */
    void apply(List<TaskEngine.TimerWork> work) {
        Map<Long, TaskEngine.TimerWork> last = new LinkedHashMap<>(); // a task changed twice in a batch: its last state
        for (TaskEngine.TimerWork w : work) {
            last.remove(w.taskId());
            last.put(w.taskId(), w);
        }
        List<TaskEngine.TimerWork> all = new ArrayList<>(last.values());
        for (int i = 0; i < all.size(); i += CHUNK) {
            applyChunk(all.subList(i, Math.min(all.size(), i + CHUNK)));
        }
    }

    private void applyChunk(List<TaskEngine.TimerWork> chunk) {
        Map<Long, TaskEngine.TimerWork> last = new LinkedHashMap<>();
        chunk.forEach(w -> last.put(w.taskId(), w));
        Instant now = Instant.now();
        Map<JobDetail, Set<? extends Trigger>> jobs = new LinkedHashMap<>();
        List<JobKey> drops = new ArrayList<>();
        for (TaskEngine.TimerWork w : last.values()) {
            if (w.schedule()) {
                JobDetail job = jobDetail(w.taskId());
                jobs.put(job, triggers(w.taskId(), job, w.due(), w.reminders(), now));
            } else {
                drops.add(job(w.taskId()));
            }
        }
        try {
            if (!jobs.isEmpty()) {
                scheduler.get().scheduleJobs(jobs, true);
            }
            if (!drops.isEmpty()) {
                scheduler.get().deleteJobs(drops);
            }
            db.inTransaction(c -> {
                try (var set = c.prepareStatement("UPDATE qc_task SET timer_due_at = ? WHERE id = ? AND due_at = ?");
                        var clear = c.prepareStatement("UPDATE qc_task SET timer_due_at = NULL WHERE id = ?")) {
                    for (TaskEngine.TimerWork w : last.values()) {
                        if (w.schedule()) {
                            set.setObject(1, Database.utc(w.due()));
                            set.setLong(2, w.taskId());
                            set.setObject(3, Database.utc(w.due()));
                            set.addBatch();
                        } else {
                            clear.setLong(1, w.taskId());
                            clear.addBatch();
                        }
                    }
                    set.executeBatch();
                    clear.executeBatch();
                }
                return null;
            });
        } catch (SchedulerException | java.sql.SQLException | RuntimeException batchFailed) {
            LOG.debugf("qc timers of %d tasks failed as a batch, trying them one by one: %s", last.size(),
                    batchFailed.getMessage());
            for (TaskEngine.TimerWork w : last.values()) {
                try {
                    if (w.schedule()) {
                        schedule(w.taskId(), w.due(), w.reminders());
                    } else {
                        drop(w.taskId());
                    }
                } catch (SchedulerException | java.sql.SQLException | RuntimeException e) {
                    // the task row says its timers are not scheduled (timer_due_at): reconciliation schedules them
                    LOG.warnf("qc task %d: timers not %s (reconciliation will retry): %s", w.taskId(),
                            w.schedule() ? "scheduled" : "removed", e.getMessage());
                }
            }
        }
    }

    private static JobDetail jobDetail(long taskId) {
        return JobBuilder.newJob(TimerJob.class).withIdentity(job(taskId)).usingJobData(TimerJob.TASK, String.valueOf(taskId))
                .build();
    }

    /** The deadline's trigger and one per reminder still to come (a reminder already due fires now). */
    private static Set<Trigger> triggers(long taskId, JobDetail job, Instant due, List<Instant> reminders, Instant now) {
        Set<Trigger> triggers = new LinkedHashSet<>();
        triggers.add(trigger(dueTrigger(taskId), job, TimerJob.DUE, due));
        for (Instant r : reminders) {
            if (r.isBefore(due) && due.isAfter(now)) {
                triggers.add(trigger(TriggerKey.triggerKey("task-" + taskId + "-remind-" + r.toEpochMilli(), GROUP), job,
                        TimerJob.REMIND, r));
            }
        }
        return triggers;
    }

    /** Replaces the task's timers: the deadline and the reminders still to come (a reminder already due fires now). */
    public void schedule(long taskId, Instant due, List<Instant> reminders) throws SchedulerException, java.sql.SQLException {
        JobDetail job = jobDetail(taskId);
        scheduler.get().scheduleJob(job, triggers(taskId, job, due, reminders, Instant.now()), true);
        db.inTransaction(c -> {
            try (var up = c.prepareStatement("UPDATE qc_task SET timer_due_at = ? WHERE id = ? AND due_at = ?")) {
                up.setObject(1, Database.utc(due));
                up.setLong(2, taskId);
                up.setObject(3, Database.utc(due));
                return up.executeUpdate();
            }
        });
    }

    private static Trigger trigger(TriggerKey key, JobDetail job, String kind, Instant at) {
        return TriggerBuilder.newTrigger().withIdentity(key).forJob(job).usingJobData(TimerJob.KIND, kind)
                .usingJobData(TimerJob.AT, String.valueOf(at.toEpochMilli())).startAt(Date.from(at))
                .withSchedule(SimpleScheduleBuilder.simpleSchedule().withMisfireHandlingInstructionFireNow()).build();
    }

    /** Removes the task's timers (the task is no longer OPEN). */
    public void drop(long taskId) throws SchedulerException, java.sql.SQLException {
        scheduler.get().deleteJob(job(taskId));
        db.inTransaction(c -> {
            try (var up = c.prepareStatement("UPDATE qc_task SET timer_due_at = NULL WHERE id = ?")) {
                up.setLong(1, taskId);
                return up.executeUpdate();
            }
        });
    }
}
