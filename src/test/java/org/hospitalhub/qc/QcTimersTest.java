package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.UUID;

import jakarta.inject.Inject;

import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.quartz.Scheduler;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;

/**
 * Real timers on the system clock, fired by the clustered Quartz sweep on the PostgreSQL job store with the shipped
 * sweep period: hospital qc-fast's emergency consultations are due 3 s after the request with a reminder 2 s before.
 * The deadline and the reminder fire once by themselves, within 2 s of their time; a task completed in time has its
 * timers removed; a deadline missed while the scheduler was stopped fires at once when it starts again.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class QcTimersTest {

    @Inject
    AdjustableQcClock clock;

    @Inject
    Scheduler scheduler;

    @BeforeEach
    void systemClock() {
        clock.useSystem();
    }

    private static QcEvents visit(String name) {
        String v = name + "-" + UUID.randomUUID().toString().substring(0, 8);
        return new QcEvents("qc-fast", v, "P-" + v);
    }

    private static String consultation(QcEvents v, String id, Instant at) {
        return v.event(v.id(), ClinicalEvent.CONSULTATION_REQUESTED, at, "consultationId", id, "urgency", "emergency",
                "department", "CARDIO", "consultedDepartment", "ICU");
    }

    private static long taskId(QcEvents v, String consultation) {
        return Events.count("SELECT id FROM qc_task WHERE hospital = 'qc-fast' AND visit_id = ? AND rule_id = 'consultation-emergency' "
                + "AND instance_key = ?", v.visit(), consultation);
    }

    private static String status(long id) {
        return Events.strings("SELECT status FROM qc_task WHERE id = ?", id).get(0);
    }

    @Test
    void aSecondsScaleDeadlineAndReminderFireOnceByTheQuartzSweep() {
        QcEvents v = visit("fast");
        v.post(v.admission(Instant.now().minusSeconds(60), "CARDIO", "DR-A"));
        Instant now = Instant.now();
        v.post(consultation(v, "C1", now), consultation(v, "C2", now),
                v.document(now.plusMillis(500), "consultation-record", "relatesTo", "C2"));
        long c1 = taskId(v, "C1");
        long c2 = taskId(v, "C2");
        assertEquals("OPEN", status(c1));
        assertEquals("COMPLETED_ON_TIME", status(c2));

        await().atMost(Duration.ofSeconds(15)).pollInterval(Duration.ofMillis(100)).until(() -> "OVERDUE".equals(status(c1)));
        assertTrue(Instant.now().isAfter(now.plusSeconds(3)), "not before its due time");
        await().atMost(Duration.ofSeconds(5)).until(() -> Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ?", c1) == 2);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'DUE' AND outcome = 'OVERDUE'", c1));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'REMIND' AND outcome = 'REMINDED'", c1));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE task_id = ? AND kind = 'REMINDER'", c1));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE task_id = ? AND kind = 'OVERDUE'", c1));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND fired_at - scheduled_at > INTERVAL '2 seconds'",
                c1), "fired within 2 s of its time");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", c1), "fired timers leave no row");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", c2), "closed in time: timers removed");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ?", c2), "completed in time: nothing fired");
        given().get("/q/metrics").then().body(containsString("qc_timer_lateness_seconds_count"))
                .body(containsString("qc_tasks_open{status=\"overdue\"}"));
    }

    @Test
    void aDeadlineMissedWhileTheSchedulerWasDownFiresWhenItStartsAgain() throws Exception {
        QcEvents v = visit("down");
        v.post(v.admission(Instant.now().minusSeconds(60), "CARDIO", "DR-A"));
        scheduler.standby(); // the hub is "down": triggers are stored but none fires
        Instant now = Instant.now();
        long c3;
        try {
            v.post(consultation(v, "C3", now));
            c3 = taskId(v, "C3");
            assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'DUE'", c3));
            Thread.sleep(Math.max(0, Duration.between(Instant.now(), now.plusSeconds(5)).toMillis())); // past due + misfire threshold
            assertEquals("OPEN", status(c3), "nothing fired while down");
            assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ?", c3));
        } finally {
            scheduler.start();
        }
        await().atMost(Duration.ofSeconds(15)).pollInterval(Duration.ofMillis(100)).until(() -> "OVERDUE".equals(status(c3)));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'DUE'", c3), "fired once");
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'DUE' "
                + "AND fired_at - scheduled_at >= INTERVAL '1 second'", c3), "fired late, at start");
    }
}
