package org.hospitalhub.qc;

import java.time.Duration;
import java.time.Instant;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;

import org.jboss.logging.Logger;
import org.quartz.Job;
import org.quartz.JobDataMap;
import org.quartz.JobExecutionContext;
import org.quartz.JobExecutionException;
import org.quartz.SchedulerException;

/**
 * A qc timer fired (a CDI bean: Quarkus' Quartz job factory takes it from the container). A deadline recomputes the
 * task's visit, which marks the task OVERDUE if it is still open; a reminder is recorded once per task and reminder
 * time while the task is OPEN. Both are idempotent, so a trigger fired again (recovery after a crash mid-job) changes
 * nothing more. Every firing is recorded in qc_timer_fire with its lateness.
 */
@ApplicationScoped
public class TimerJob implements Job {

    private static final Logger LOG = Logger.getLogger(TimerJob.class);
    static final String TASK = "taskId";
    static final String KIND = "kind";
    static final String AT = "at";
    static final String DUE = "DUE";
    static final String REMIND = "REMIND";

    private final TaskEngine engine;
    private final QcMetrics metrics;

    public TimerJob(TaskEngine engine, QcMetrics metrics) {
        this.engine = engine;
        this.metrics = metrics;
    }

    @Override
    public void execute(JobExecutionContext ctx) throws JobExecutionException {
        JobDataMap data = ctx.getMergedJobDataMap();
        long taskId = Long.parseLong(data.getString(TASK));
        String kind = data.getString(KIND);
        Instant at = Instant.ofEpochMilli(Long.parseLong(data.getString(AT)));
        Instant fired = ctx.getFireTime().toInstant();
        metrics.lateness(Duration.between(at, fired));
        String outcome;
        try {
            if (DUE.equals(kind)) {
                // still OPEN only if the qc clock says the due time has not come (a clock behind Quartz's):
                // reconciliation marks it overdue once it has
                Optional<TaskStatus> s = engine.deadline(taskId);
                outcome = s.map(Enum::name).orElse("no such task");
            } else {
                outcome = engine.remind(taskId, at) ? "REMINDED" : "not open";
            }
        } catch (java.sql.SQLException | RuntimeException e) {
            LOG.warnf("qc timer %s of task %d failed (reconciliation will catch up): %s", ctx.getTrigger().getKey(), taskId,
                    e.getMessage());
            outcome = "FAILED: " + e.getMessage();
        }
        String instance;
        try {
            instance = ctx.getScheduler().getSchedulerInstanceId();
        } catch (SchedulerException e) {
            instance = "?";
        }
        engine.fired(taskId, ctx.getTrigger().getKey().getName(), kind, at, fired, instance, outcome);
    }
}
