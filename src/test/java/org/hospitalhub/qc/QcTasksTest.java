package org.hospitalhub.qc;

import static io.restassured.RestAssured.given;
import static org.awaitility.Awaitility.await;
import static org.hamcrest.Matchers.containsString;
import static org.hamcrest.Matchers.equalTo;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.time.temporal.ChronoUnit;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.UUID;
import java.util.stream.Collectors;

import jakarta.inject.Inject;

import org.apache.camel.ProducerTemplate;
import org.hospitalhub.delivery.Event;
import org.hospitalhub.delivery.EventParser;
import org.hospitalhub.delivery.PartialBatchException;
import org.hospitalhub.support.Events;
import org.hospitalhub.support.PostgresResource;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import io.quarkus.test.common.QuarkusTestResource;
import io.quarkus.test.junit.QuarkusTest;
import io.restassured.path.json.JsonPath;
import io.restassured.specification.RequestSpecification;

/**
 * Time-limit quality control through the hub: clinical events posted to /api/v1/events, delivered by the t-qc flow to
 * the qc sink, tasks in PostgreSQL. The qc clock is fixed (a month ahead, so no real Quartz trigger fires during
 * these tests) and moved by hand; deadlines are fired through Quartz on demand.
 */
@QuarkusTest
@QuarkusTestResource(PostgresResource.class)
class QcTasksTest {

    private static final String H = "qc-test";

    @Inject
    AdjustableQcClock clock;

    @Inject
    DeadlineTimers timers;

    @Inject
    ProducerTemplate producer;

    @Inject
    TaskEngine engine;

    @Inject
    EventParser parser;

    @Inject
    Reconciliation reconciliation;

    Instant t0;

    @BeforeEach
    void fixClock() {
        t0 = Instant.now().plus(Duration.ofDays(30)).truncatedTo(ChronoUnit.SECONDS);
        clock.set(t0);
    }

    @AfterEach
    void systemClock() {
        clock.useSystem();
    }

    private static QcEvents visit(String hospital, String name) {
        String v = name + "-" + UUID.randomUUID().toString().substring(0, 8);
        return new QcEvents(hospital, v, "P-" + v);
    }

    private static RequestSpecification ops() {
        return given().header("X-Api-Key", QcEvents.OPS);
    }

    /** One task row of a visit by rule and period, as a map of column -> text. */
    private static Map<String, String> task(QcEvents v, String rule, int period) {
        List<String> r = Events.strings("SELECT id || '~' || status || '~' || CAST(EXTRACT(EPOCH FROM due_at) * 1000 AS BIGINT) "
                + "|| '~' || recipients || '~' || COALESCE(remind_at, '') || '~' || COALESCE(department, '') || '~' || instance_key "
                + "|| '~' || COALESCE(doctor, '') FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = ? AND period_no = ?",
                v.hospital(), v.visit(), rule, period);
        if (r.isEmpty()) {
            return null;
        }
        assertEquals(1, r.size(), "one " + rule + " task of period " + period);
        String[] f = r.get(0).split("~", -1);
        return Map.of("id", f[0], "status", f[1], "due", Instant.ofEpochMilli(Long.parseLong(f[2])).toString(), "recipients", f[3],
                "remindAt", f[4], "department", f[5], "instance", f[6], "doctor", f[7]);
    }

    /**
     * The visit's timers match its tasks: an open task has timer_due_at = due_at and a DUE timer at its due time; any
     * other task has neither timers nor timer_due_at.
     */
    private static void assertTimersMatchTasks(QcEvents v) {
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_task t WHERE t.hospital = ? AND t.visit_id = ? AND t.status = 'OPEN' "
                + "AND (t.timer_due_at IS NULL OR t.timer_due_at <> t.due_at OR NOT EXISTS (SELECT 1 FROM qc_timer r "
                + "WHERE r.task_id = t.id AND r.kind = 'DUE' AND r.fire_at = t.due_at))", H, v.visit()),
                "open tasks without their timers: " + byRule(v));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_task t WHERE t.hospital = ? AND t.visit_id = ? AND t.status <> 'OPEN' "
                + "AND (t.timer_due_at IS NOT NULL OR EXISTS (SELECT 1 FROM qc_timer r WHERE r.task_id = t.id))", H, v.visit()),
                "closed tasks with timers: " + byRule(v));
    }

    private static String status(QcEvents v, String rule, int period) {
        Map<String, String> t = task(v, rule, period);
        return t == null ? null : t.get("status");
    }

    private static String due(QcEvents v, String rule, int period) {
        return task(v, rule, period).get("due");
    }

    private static long taskEvents(long taskId, String kind) {
        return Events.count("SELECT COUNT(*) FROM qc_task_event WHERE task_id = ? AND kind = ?", taskId, kind);
    }

    // ---- Rules -------------------------------------------------------------------------------------------------------

    @Test
    void eachDefaultRuleOpensItsTaskWithTheRegulationsDueTime() {
        QcEvents v = visit(H, "rules");
        Instant t = t0;
        v.post(v.admission(t, "CARDIO", "DR-A"));
        assertEquals(t.plus(Duration.ofHours(24)).toString(), due(v, "admission-record", 0));
        assertEquals(t.plus(Duration.ofHours(8)).toString(), due(v, "first-progress-note", 0));
        assertEquals(t.plus(Duration.ofHours(48)).toString(), due(v, "attending-first-round", 0));
        assertEquals(t.plus(Duration.ofDays(3)).toString(), due(v, "progress-note", 1), "stable: every 3 days");
        Map<String, String> adm = task(v, "admission-record", 0);
        assertEquals("OPEN", adm.get("status"));
        assertEquals("[\"doctor:DR-A\"]", adm.get("recipients"));
        assertEquals(t.plus(Duration.ofHours(20)) + "," + t.plus(Duration.ofHours(23)), adm.get("remindAt"), "reminders 4 h and 1 h before");

        v.post(v.event(v.id(), ClinicalEvent.RESCUE_FINISHED, t.plus(Duration.ofHours(1)), "rescueId", "R1", "department", "CARDIO"),
                v.event(v.id(), ClinicalEvent.SURGERY_FINISHED, t.plus(Duration.ofHours(2)), "surgeryId", "S1", "surgeon", "DR-S",
                        "department", "CARDIO"),
                v.event(v.id(), ClinicalEvent.TRANSFER_IN, t.plus(Duration.ofHours(3)), "transferId", "T1", "department", "NEURO",
                        "attendingDoctor", "DR-B"),
                v.event(v.id(), ClinicalEvent.CONSULTATION_REQUESTED, t.plus(Duration.ofHours(4)), "consultationId", "C1",
                        "urgency", "routine", "department", "NEURO", "consultedDepartment", "ICU"),
                v.event(v.id(), ClinicalEvent.CONSULTATION_REQUESTED, t.plus(Duration.ofHours(4)), "consultationId", "C2",
                        "urgency", "emergency", "department", "NEURO", "consultedDepartment", "ICU"),
                v.event(v.id(), ClinicalEvent.DISCHARGE, t.plus(Duration.ofHours(5)), "department", "NEURO"));
        assertEquals(t.plus(Duration.ofHours(7)).toString(), due(v, "rescue-record", 0), "rescue record 6 h");
        assertEquals("R1", task(v, "rescue-record", 0).get("instance"));
        assertEquals(t.plus(Duration.ofHours(26)).toString(), due(v, "operation-record", 0), "operation record 24 h");
        assertEquals("[\"doctor:DR-S\"]", task(v, "operation-record", 0).get("recipients"), "the surgeon writes it");
        assertEquals(t.plus(Duration.ofHours(27)).toString(), due(v, "transfer-in-note", 0), "transfer-in note 24 h");
        assertEquals("DR-B", task(v, "transfer-in-note", 0).get("doctor"), "the new department's attending");
        assertEquals(t.plus(Duration.ofHours(52)).toString(), due(v, "consultation-routine", 0), "routine consultation 48 h");
        assertEquals(t.plus(Duration.ofHours(4)).plus(Duration.ofMinutes(10)).toString(), due(v, "consultation-emergency", 0),
                "emergency consultation 10 min");
        assertEquals("ICU", task(v, "consultation-emergency", 0).get("department"), "the consulted department answers");
        assertEquals("[\"department:ICU\"]", task(v, "consultation-emergency", 0).get("recipients"));
        assertEquals(t.plus(Duration.ofHours(29)).toString(), due(v, "discharge-record", 0), "discharge record 24 h");
        assertEquals("DR-B", task(v, "discharge-record", 0).get("doctor"));

        QcEvents d = visit(H, "death");
        d.post(d.admission(t, "ICU", "DR-C"), d.event(d.id(), ClinicalEvent.DEATH, t.plus(Duration.ofHours(10)), "department", "ICU"));
        assertEquals(t.plus(Duration.ofHours(34)).toString(), due(d, "death-record", 0), "death record 24 h");
        assertEquals(t.plus(Duration.ofHours(10)).plus(Duration.ofDays(7)).toString(), due(d, "death-case-discussion", 0),
                "death case discussion 7 days");
        assertEquals("[\"department:ICU\",\"role:department-head@ICU\"]", task(d, "death-case-discussion", 0).get("recipients"));
        assertEquals("CANCELLED", status(d, "progress-note", 1), "no more progress notes after death");
    }

    @Test
    void timersOfAnOpenTaskAreWrittenWithItAndGoWhenItCloses() {
        QcEvents v = visit(H, "timers");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        long id = Long.parseLong(task(v, "admission-record", 0).get("id"));
        // in the task's own transaction: there as soon as the task is
        assertEquals(3, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", id), "the deadline and two reminders");
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'DUE' AND fire_at = ?", id,
                t0.plus(Duration.ofHours(24)).atOffset(java.time.ZoneOffset.UTC)));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'REMIND' AND fire_at = ?", id,
                t0.plus(Duration.ofHours(20)).atOffset(java.time.ZoneOffset.UTC)));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task WHERE id = ? AND timer_due_at = due_at", id));

        v.post(v.document(t0.plus(Duration.ofHours(3)), "admission-record"));
        assertEquals("COMPLETED_ON_TIME", status(v, "admission-record", 0));
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", id), "closed with its task");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_task WHERE id = ? AND timer_due_at IS NOT NULL", id));
        assertTimersMatchTasks(v);
    }

    // ---- Closing -------------------------------------------------------------------------------------------------------

    @Test
    void aCompletedDocumentClosesItsTaskOnTimeOrLate() {
        QcEvents v = visit(H, "docs");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        List<String> ids = v.post(v.document(t0.plus(Duration.ofHours(23)), "admission-record"),
                v.document(t0.plus(Duration.ofHours(9)), "first-progress-note"),
                v.document(t0.plus(Duration.ofHours(30)), "admission-record"),
                v.document(t0.plus(Duration.ofHours(1)), "nursing-note"));
        assertEquals("COMPLETED_ON_TIME", status(v, "admission-record", 0), "23 h < 24 h");
        assertEquals("COMPLETED_LATE", status(v, "first-progress-note", 0), "9 h > 8 h");
        long late = Long.parseLong(task(v, "first-progress-note", 0).get("id"));
        assertEquals(1, taskEvents(late, "CREATED"));
        assertEquals(1, taskEvents(late, "COMPLETED"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task WHERE id = ? AND closed_by = ? AND completed_at IS NOT NULL",
                late, ids.get(1)));
        assertEquals("APPLIED", v.disposition(ids.get(0)));
        assertEquals("IGNORED", v.disposition(ids.get(2)), "a second admission record has no task left to close");
        assertEquals("IGNORED", v.disposition(ids.get(3)), "no rule asks for nursing notes");
        assertEquals("OPEN", status(v, "attending-first-round", 0));
    }

    @Test
    void overdueMarkedWhenTheDeadlineFiresByTheQcClockThenCompletedLate() throws Exception {
        QcEvents v = visit(H, "overdue");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        long first = Long.parseLong(task(v, "first-progress-note", 0).get("id"));
        long adm = Long.parseLong(task(v, "admission-record", 0).get("id"));
        double before = overdueCounter();
        clock.advance(Duration.ofHours(9));
        assertEquals(1, fire(first, DeadlineTimers.DUE, t0.plus(Duration.ofHours(8))));
        assertEquals(1, fire(adm, DeadlineTimers.DUE, t0.plus(Duration.ofHours(24)))); // fired early (by the qc clock): stays open
        assertEquals(2, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id IN (?, ?)", first, adm));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'DUE'", adm), "its deadline stays pending");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", first), "overdue: no timers left");
        assertEquals("OVERDUE", status(v, "first-progress-note", 0));
        assertEquals(1, taskEvents(first, "OVERDUE"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task WHERE id = ? AND overdue_at = due_at", first));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'DUE' AND outcome = 'OVERDUE'", first));
        assertEquals("OPEN", status(v, "admission-record", 0));
        assertEquals(before + 1, overdueCounter(), 0.0001);

        v.post(v.document(t0.plus(Duration.ofHours(10)), "first-progress-note"));
        assertEquals("COMPLETED_LATE", status(v, "first-progress-note", 0), "overdue -> completed late");
    }

    @Test
    void remindersAreRecordedOnceWhileTheTaskIsOpen() throws Exception {
        QcEvents v = visit(H, "remind");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        long adm = Long.parseLong(task(v, "admission-record", 0).get("id"));
        long first = Long.parseLong(task(v, "first-progress-note", 0).get("id"));
        Instant at = t0.plus(Duration.ofHours(20));
        assertEquals(1, fire(adm, DeadlineTimers.REMIND, at));
        assertEquals(0, fire(adm, DeadlineTimers.REMIND, at), "fired once: its row went with the firing");
        v.post(v.document(t0.plus(Duration.ofHours(1)), "first-progress-note"));
        // closed: its timers are gone, no reminder can come
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ?", first));
        assertEquals(0, fire(first, DeadlineTimers.REMIND, t0.plus(Duration.ofHours(6))));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ?", adm));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer_fire WHERE task_id = ? AND kind = 'REMIND' AND outcome = 'REMINDED'", adm));
        assertEquals(1, taskEvents(adm, "REMINDER"));
        assertEquals(0, taskEvents(first, "REMINDER"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE task_id = ? AND kind = 'REMINDER' "
                + "AND recipients = '[\"doctor:DR-A\"]'", adm));
        given().get("/q/metrics").then().body(containsString("qc_reminders_total{hospital=\"qc-test\"}"));
    }

    /** Fires a task's pending timer now through the sweep's path, as if its time had come; 1 if it fired. */
    private int fire(long taskId, String kind, Instant at) throws Exception {
        return timers.fireNow(taskId, kind, at);
    }

    private static double overdueCounter() {
        String body = given().get("/q/metrics").asString();
        for (String line : body.split("\n")) {
            if (line.startsWith("qc_tasks_overdue_total{hospital=\"qc-test\"}")) {
                return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
            }
        }
        return 0;
    }

    // ---- Cancelling ------------------------------------------------------------------------------------------------------

    @Test
    void cancellingTheAdmissionCancelsTheVisitsOpenTasks() {
        QcEvents v = visit(H, "cancel-adm");
        v.post(v.admission(t0, "CARDIO", "DR-A"), v.document(t0.plus(Duration.ofHours(2)), "first-progress-note"),
                v.event(v.id(), ClinicalEvent.TRANSFER_IN, t0.plus(Duration.ofHours(3)), "transferId", "T1", "department", "NEURO",
                        "attendingDoctor", "DR-B"));
        v.post(v.event(v.id(), ClinicalEvent.ADMISSION_CANCELLED, t0.plus(Duration.ofHours(4)), "reason", "registered twice"));
        assertEquals(Map.of("admission-record", "CANCELLED", "attending-first-round", "CANCELLED", "first-progress-note",
                "COMPLETED_ON_TIME", "progress-note", "CANCELLED", "transfer-in-note", "CANCELLED"), byRule(v));
        assertEquals("CANCELLED", Events.strings("SELECT status FROM qc_visit WHERE hospital = ? AND visit_id = ?", H, v.visit()).get(0));
        assertTimersMatchTasks(v);
    }

    @Test
    void cancellingTheDischargeReopensTheProgressNotesAndCancelsTheDischargeRecord() {
        QcEvents v = visit(H, "cancel-dis");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        v.post(v.event(v.id(), ClinicalEvent.DISCHARGE, t0.plus(Duration.ofHours(30)), "department", "CARDIO"));
        assertEquals("CANCELLED", status(v, "progress-note", 1), "no progress note needed after discharge");
        assertEquals("OPEN", status(v, "discharge-record", 0));
        assertTimersMatchTasks(v); // the cancelled note's timers went, the discharge record's came
        long period = Long.parseLong(task(v, "progress-note", 1).get("id"));
        v.post(v.event(v.id(), ClinicalEvent.DISCHARGE_CANCELLED, t0.plus(Duration.ofHours(31))));
        assertEquals("OPEN", status(v, "progress-note", 1), "reopened");
        assertEquals(1, taskEvents(period, "REOPENED"));
        assertEquals("CANCELLED", status(v, "discharge-record", 0));
        assertEquals("ADMITTED", Events.strings("SELECT status FROM qc_visit WHERE hospital = ? AND visit_id = ?", H, v.visit()).get(0));
        assertTimersMatchTasks(v); // the reopened note has its timers again
    }

    @Test
    void cancellingATransferCancelsTheTransferInNote() {
        QcEvents v = visit(H, "cancel-tr");
        v.post(v.admission(t0, "CARDIO", "DR-A"),
                v.event(v.id(), ClinicalEvent.TRANSFER_OUT, t0.plus(Duration.ofHours(2)), "transferId", "T9", "department", "CARDIO",
                        "toDepartment", "NEURO"),
                v.event(v.id(), ClinicalEvent.TRANSFER_IN, t0.plus(Duration.ofHours(3)), "transferId", "T9", "department", "NEURO",
                        "attendingDoctor", "DR-B"));
        assertEquals("OPEN", status(v, "transfer-in-note", 0));
        v.post(v.event(v.id(), ClinicalEvent.TRANSFER_CANCELLED, t0.plus(Duration.ofHours(4)), "transferId", "T9"));
        assertEquals("CANCELLED", status(v, "transfer-in-note", 0));
        assertEquals("CARDIO", Events.strings("SELECT department FROM qc_visit WHERE hospital = ? AND visit_id = ?", H, v.visit()).get(0));
    }

    private static Map<String, String> byRule(QcEvents v) {
        Map<String, String> m = new java.util.TreeMap<>();
        v.tasks().forEach((k, s) -> m.put(k.substring(0, k.indexOf('|')), s));
        return m;
    }

    // ---- Recurring -------------------------------------------------------------------------------------------------------

    @Test
    void progressNotesFollowTheConditionAndStopAtDischarge() {
        QcEvents v = visit(H, "progress");
        Instant t = t0;
        v.post(v.admission(t, "CARDIO", "DR-A"));
        assertEquals(t.plus(Duration.ofDays(3)).toString(), due(v, "progress-note", 1));
        v.post(v.event(v.id(), ClinicalEvent.CONDITION_CHANGED, t.plus(Duration.ofHours(10)), "level", "critical"));
        assertEquals(t.plus(Duration.ofHours(34)).toString(), due(v, "progress-note", 1), "病危: within a day of the change");
        v.post(v.document(t.plus(Duration.ofHours(20)), "progress-note"));
        assertEquals("COMPLETED_ON_TIME", status(v, "progress-note", 1));
        assertEquals(t.plus(Duration.ofHours(44)).toString(), due(v, "progress-note", 2), "critical: a day after the last note");
        v.post(v.event(v.id(), ClinicalEvent.CONDITION_CHANGED, t.plus(Duration.ofHours(30)), "level", "stable"));
        assertEquals(t.plus(Duration.ofHours(44)).toString(), due(v, "progress-note", 2), "a better condition does not postpone");
        v.post(v.document(t.plus(Duration.ofHours(40)), "progress-note"));
        assertEquals(t.plus(Duration.ofHours(40)).plus(Duration.ofDays(3)).toString(), due(v, "progress-note", 3), "stable again: 3 days");
        v.post(v.event(v.id(), ClinicalEvent.CONDITION_CHANGED, t.plus(Duration.ofHours(41)), "level", "serious"));
        assertEquals(t.plus(Duration.ofHours(41)).plus(Duration.ofDays(2)).toString(), due(v, "progress-note", 3), "病重: 2 days");
        List<String> ids = v.post(v.event(v.id(), ClinicalEvent.DISCHARGE, t.plus(Duration.ofHours(50)), "department", "CARDIO"),
                v.document(t.plus(Duration.ofHours(60)), "progress-note"));
        assertEquals("CANCELLED", status(v, "progress-note", 3), "stopped by the discharge");
        assertNull(task(v, "progress-note", 4), "no period after discharge");
        assertEquals("IGNORED", v.disposition(ids.get(1)));
        assertEquals(3, Events.count("SELECT COUNT(*) FROM qc_task WHERE hospital = ? AND visit_id = ? AND rule_id = 'progress-note'",
                H, v.visit()));
    }

    // ---- Out of order, duplicates ------------------------------------------------------------------------------------------

    @Test
    void closesAndCancelsBeforeTheirOpeningEventAreHeldThenMatched() {
        QcEvents v = visit(H, "held");
        List<String> early = v.post(v.document(t0.plus(Duration.ofHours(2)), "admission-record"),
                v.event(v.id(), ClinicalEvent.DISCHARGE_CANCELLED, t0.plus(Duration.ofHours(40))));
        assertEquals("HELD", v.disposition(early.get(0)));
        assertEquals("HELD", v.disposition(early.get(1)));
        assertTrue(ops().get("/api/v1/qc/held-events?limit=500").then().statusCode(200).extract().jsonPath()
                .getList("items.eventId").containsAll(early));
        assertNull(task(v, "admission-record", 0));

        v.post(v.admission(t0, "CARDIO", "DR-A"));
        assertEquals("COMPLETED_ON_TIME", status(v, "admission-record", 0), "the held document closes the new task");
        assertEquals("APPLIED", v.disposition(early.get(0)));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_visit_event WHERE event_id = ? AND matched_at IS NOT NULL", early.get(0)));
        assertEquals("HELD", v.disposition(early.get(1)), "still no discharge to cancel");

        List<String> op = v.post(v.document(t0.plus(Duration.ofHours(5)), "operation-record", "relatesTo", "S5"));
        assertEquals("HELD", v.disposition(op.get(0)));
        v.post(v.event(v.id(), ClinicalEvent.SURGERY_FINISHED, t0.plus(Duration.ofHours(4)), "surgeryId", "S5", "surgeon", "DR-S",
                "department", "CARDIO"));
        assertEquals("COMPLETED_ON_TIME", status(v, "operation-record", 0));
        assertEquals("APPLIED", v.disposition(op.get(0)));

        v.post(v.event(v.id(), ClinicalEvent.DISCHARGE, t0.plus(Duration.ofHours(30)), "department", "CARDIO"));
        assertEquals("APPLIED", v.disposition(early.get(1)), "the held cancel found its discharge");
        assertEquals("CANCELLED", status(v, "discharge-record", 0));
        assertEquals("OPEN", status(v, "progress-note", 1), "the cancelled discharge does not stop the notes");
    }

    @Test
    void anEventDeliveredTwiceIsAppliedOnce() {
        QcEvents v = visit(H, "dup");
        Event adm = parser.parseOne(v.admission(t0, "CARDIO", "DR-A"));
        for (int i = 0; i < 2; i++) {
            producer.send("direct:deliver-t-qc", ex -> {
                ex.setProperty("HubFlow", "t-qc");
                ex.setProperty("HubBatch", List.of(adm, adm));
            });
        }
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_visit_event WHERE event_id = ?", adm.eventId()));
        assertEquals(4, Events.count("SELECT COUNT(*) FROM qc_task WHERE hospital = ? AND visit_id = ?", H, v.visit()));
        assertEquals(4, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE hospital = ? AND visit_id = ? AND kind = 'CREATED'",
                H, v.visit()));
        assertEquals(4, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE hospital = ? AND visit_id = ?", H, v.visit()));
    }

    @Test
    void aTaskOpenedByAnEventTimedToTheNanosecondKeepsItsDueTimeWhenTheVisitIsRecomputed() throws Exception {
        // the engine projects a batch's new events before storing them: their times must be rounded as the column will
        // hold them (half up to microseconds), or the next recomputation moves every due time by a microsecond
        QcEvents v = visit(H, "nanos");
        Event adm = parser.parseOne(v.admission(t0.minusSeconds(60).plusNanos(123_456_500), "CARDIO", "DR-A"));
        producer.send("direct:deliver-t-qc", ex -> {
            ex.setProperty("HubFlow", "t-qc");
            ex.setProperty("HubBatch", List.of(adm));
        });
        assertEquals(4, Events.count("SELECT COUNT(*) FROM qc_task WHERE hospital = ? AND visit_id = ?", H, v.visit()));
        assertEquals(List.of(), engine.recompute(new TaskEngine.VisitKey(H, v.visit())), "nothing changes on recomputation");
        assertEquals(0, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE hospital = ? AND visit_id = ? AND kind = 'DUE_CHANGED'",
                H, v.visit()));
        assertEquals(t0.minusSeconds(60).plusNanos(123_457_000).plus(Duration.ofHours(24)).toString(),
                Events.strings("SELECT CAST(CAST(EXTRACT(EPOCH FROM due_at) * 1000000 AS BIGINT) AS VARCHAR(30)) FROM qc_task "
                        + "WHERE hospital = ? AND visit_id = ? AND rule_id = 'admission-record'", H, v.visit()).stream()
                        .map(us -> Instant.EPOCH.plus(Long.parseLong(us), ChronoUnit.MICROS).toString()).findFirst().orElseThrow());
    }

    // ---- Refused events and correction --------------------------------------------------------------------------------------

    @Test
    void eventsThatCannotBeAppliedAreDeadLetteredListedAndRetriedWithAnAudit() {
        QcEvents v = visit("qc-custom", "refused");
        List<String> ids = v.post(v.admission(t0, "CARDIO", "DR-A"),
                v.event(v.id(), ClinicalEvent.CONSULTATION_REQUESTED, t0.plus(Duration.ofHours(1)), "consultationId", "C1",
                        "urgency", "emergency", "department", "CARDIO", "consultedDepartment", "ICU"));
        String refused = ids.get(1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = ? AND flow = 't-qc' AND status = 'OPEN' "
                + "AND error_message LIKE '%rule consultation-emergency%consultantId%'", refused));
        assertEquals("DEAD", Events.strings("SELECT status FROM hub_delivery WHERE event_id = ?", refused).get(0));
        assertEquals("DELIVERED", Events.strings("SELECT status FROM hub_delivery WHERE event_id = ?", ids.get(0)).get(0),
                "the rest of the batch is applied");
        assertEquals("OPEN", status(v, "admission-record", 0));

        QcEvents other = new QcEvents("qc-custom", v.visit(), "P-SOMEONE-ELSE");
        String wrong = other.post(other.event("refused-wrong-" + v.visit(), ClinicalEvent.DISCHARGE, t0.plus(Duration.ofHours(2)),
                "department", "CARDIO")).get(0);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = ? AND error_message LIKE '%belongs to patient%'",
                wrong));

        JsonPath list = ops().get("/api/v1/qc/failed-events?status=OPEN&limit=500").then().statusCode(200).extract().jsonPath();
        assertTrue(list.getList("items.eventId").contains(refused));
        long letter = Events.count("SELECT id FROM dead_letter WHERE event_id = ?", refused);
        ops().contentType("application/json").body("{}").post("/api/v1/qc/failed-events/" + letter + "/retry").then()
                .statusCode(400).body("field", equalTo("reason"));
        ops().contentType("application/json").body("{\"reason\":\"consultant added in the HIS\"}")
                .post("/api/v1/qc/failed-events/" + letter + "/retry").then().statusCode(200).body("outcome", equalTo("REQUEUED"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM dead_letter WHERE id = ? AND status = 'REPLAYED' AND resolved_by = 'ops'", letter));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_audit WHERE action = 'RETRY' AND actor = 'ops' AND reason = ? "
                + "AND target LIKE ?", "consultant added in the HIS", "dead-letter " + letter + "%"));
        // the event itself was not corrected, so the engine refuses it again: a new dead letter, nothing lost
        await().atMost(Duration.ofSeconds(10)).until(() -> Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_id = ? "
                + "AND status = 'OPEN'", refused) == 1);
        ops().contentType("application/json").body("{\"reason\":\"again\"}").post("/api/v1/qc/failed-events/" + letter + "/retry")
                .then().statusCode(409);
        long charge = Events.count("SELECT COUNT(*) FROM dead_letter WHERE event_type NOT LIKE 'qc.%' AND flow <> 't-qc'");
        if (charge > 0) {
            long foreign = Events.count("SELECT MIN(id) FROM dead_letter WHERE event_type NOT LIKE 'qc.%' AND flow <> 't-qc'");
            ops().contentType("application/json").body("{\"reason\":\"x\"}").post("/api/v1/qc/failed-events/" + foreign + "/retry")
                    .then().statusCode(404);
        }
    }

    @Test
    void operatorsCloseOrCancelATaskByHandWithAReasonAndItIsAudited() {
        QcEvents v = visit(H, "manual");
        v.post(v.admission(t0, "CARDIO", "DR-A"));
        long adm = Long.parseLong(task(v, "admission-record", 0).get("id"));
        long round = Long.parseLong(task(v, "attending-first-round", 0).get("id"));
        long p1 = Long.parseLong(task(v, "progress-note", 1).get("id"));

        given().post("/api/v1/qc/tasks/" + adm + "/close").then().statusCode(401);
        given().header("X-Api-Key", QcEvents.SOURCE_KEY).get("/api/v1/qc/tasks").then().statusCode(403);
        ops().contentType("application/json").body("{}").post("/api/v1/qc/tasks/" + adm + "/close").then().statusCode(400)
                .body("field", equalTo("reason"));
        ops().contentType("application/json")
                .body("{\"reason\":\"written on paper during the EMR outage\",\"completedAt\":\"" + t0.plus(Duration.ofHours(3)) + "\"}")
                .post("/api/v1/qc/tasks/" + adm + "/close").then().statusCode(200)
                .body("task.status", equalTo("COMPLETED_ON_TIME")).body("task.closeReason", containsString("EMR outage"));
        ops().contentType("application/json").body("{\"reason\":\"again\"}").post("/api/v1/qc/tasks/" + adm + "/close").then()
                .statusCode(409);
        ops().contentType("application/json").body("{\"reason\":\"attending on leave, round done by the chief\"}")
                .post("/api/v1/qc/tasks/" + round + "/cancel").then().statusCode(200).body("task.status", equalTo("CANCELLED"));
        ops().contentType("application/json").body("{\"reason\":\"x\"}").post("/api/v1/qc/tasks/999999999/cancel").then().statusCode(404);

        // a progress-note period closed by hand: the next period starts then
        ops().contentType("application/json").body("{\"reason\":\"note on paper\",\"completedAt\":\"" + t0.plus(Duration.ofHours(10)) + "\"}")
                .post("/api/v1/qc/tasks/" + p1 + "/close").then().statusCode(200);
        assertEquals(t0.plus(Duration.ofHours(10)).plus(Duration.ofDays(3)).toString(), due(v, "progress-note", 2));

        JsonPath audit = ops().get("/api/v1/qc/audit?limit=500").then().statusCode(200).extract().jsonPath();
        assertTrue(audit.getList("items.findAll { it.taskId == " + adm + " && it.action == 'CLOSE' && it.actor == 'ops' }").size() == 1);
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_audit WHERE task_id = ? AND action = 'CANCEL' AND actor = 'ops' "
                + "AND reason = 'attending on leave, round done by the chief'", round));
        JsonPath detail = ops().get("/api/v1/qc/tasks/" + round).then().statusCode(200).extract().jsonPath();
        assertEquals(List.of("CREATED", "CANCELLED"), detail.getList("history.kind"));
    }

    // ---- Statistics -----------------------------------------------------------------------------------------------------------

    @Test
    void statisticsPerDepartmentDocumentTypeAndCsv() {
        String hospital = "qc-stats-" + UUID.randomUUID().toString().substring(0, 6);
        QcEvents a = visit(hospital, "sa");
        QcEvents b = visit(hospital, "sb");
        a.post(a.admission(t0, "CARDIO", "DR-1"));
        b.post(b.admission(t0, "NEURO", "DR-2"));
        clock.advance(Duration.ofHours(10));
        a.post(a.document(t0.plus(Duration.ofHours(2)), "admission-record"), a.document(t0.plus(Duration.ofHours(9)), "first-progress-note"));
        b.post(b.document(t0.plus(Duration.ofHours(30)), "admission-record"));
        String window = "&hospital=" + hospital + "&from=" + t0.minus(Duration.ofDays(1)) + "&to=" + t0.plus(Duration.ofDays(10));
        JsonPath dep = ops().get("/api/v1/qc/statistics?groupBy=department" + window).then().statusCode(200).extract().jsonPath();
        assertEquals(List.of("CARDIO", "NEURO"), dep.getList("rows.group"));
        assertEquals(List.of(4, 1, 1, 0, 2), List.of(dep.getInt("rows[0].tasks"), dep.getInt("rows[0].onTime"), dep.getInt("rows[0].late"),
                dep.getInt("rows[0].overdueOpen"), dep.getInt("rows[0].open")));
        assertEquals(0.5, dep.getDouble("rows[0].onTimeRate"), 1e-9);
        assertEquals(2.0, dep.getDouble("rows[0].pointsDeducted"), 1e-9);
        assertEquals(List.of(4, 0, 1, 1, 2), List.of(dep.getInt("rows[1].tasks"), dep.getInt("rows[1].onTime"), dep.getInt("rows[1].late"),
                dep.getInt("rows[1].overdueOpen"), dep.getInt("rows[1].open")));
        assertEquals(4.0, dep.getDouble("rows[1].pointsDeducted"), 1e-9);
        assertEquals(8, dep.getInt("total.tasks"));
        assertEquals(0.25, dep.getDouble("total.onTimeRate"), 1e-9);

        JsonPath doc = ops().get("/api/v1/qc/statistics?groupBy=documentType" + window).then().statusCode(200).extract().jsonPath();
        assertEquals(2, doc.getInt("rows.find { it.group == 'first-progress-note' }.tasks"));
        assertEquals(0.0, doc.getDouble("rows.find { it.group == 'first-progress-note' }.onTimeRate"), 1e-9);

        String csv = ops().get("/api/v1/qc/statistics?groupBy=department&format=csv" + window).then().statusCode(200)
                .contentType(containsString("text/csv")).extract().asString();
        assertEquals(List.of("department,tasks,onTime,late,overdueOpen,open,onTimeRate,pointsDeducted", "CARDIO,4,1,1,0,2,0.5,2.0",
                "NEURO,4,0,1,1,2,0.0,4.0", "total,8,1,2,1,4,0.25,6.0"), List.of(csv.strip().split("\\R")));
        String byAccept = ops().accept("text/csv").get("/api/v1/qc/statistics?groupBy=doctor" + window).then().statusCode(200)
                .extract().asString();
        assertTrue(byAccept.startsWith("doctor,tasks,"), byAccept);
        ops().get("/api/v1/qc/statistics?groupBy=ward" + window).then().statusCode(400).body("field", equalTo("groupBy"));
        ops().get("/api/v1/qc/statistics?groupBy=department").then().statusCode(400).body("field", equalTo("from"));
        JsonPath period = ops().get("/api/v1/qc/statistics?groupBy=period&period=month" + window).then().statusCode(200).extract().jsonPath();
        assertEquals(8, period.getList("rows.tasks", Integer.class).stream().mapToInt(Integer::intValue).sum());
    }

    // ---- Reconciliation ---------------------------------------------------------------------------------------------------------

    @Test
    void reconciliationFixesABrokenStateAndReportsIt() throws Exception {
        QcEvents v = visit(H, "recon");
        v.post(v.admission(t0, "CARDIO", "DR-A"), v.document(t0.plus(Duration.ofHours(1)), "first-progress-note"));
        long adm = Long.parseLong(task(v, "admission-record", 0).get("id"));
        long first = Long.parseLong(task(v, "first-progress-note", 0).get("id"));
        long p1 = Long.parseLong(task(v, "progress-note", 1).get("id"));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'DUE'", p1));
        // break it: a task lost, a completed task reopened, a timer lost, and time passes without the deadline firing
        try (var c = PostgresResource.connect(); var s = c.createStatement()) {
            s.executeUpdate("DELETE FROM qc_task WHERE id = " + adm);
            s.executeUpdate("UPDATE qc_task SET status = 'OPEN', completed_at = NULL, closed_by = NULL WHERE id = " + first);
        }
        try (var c = PostgresResource.connect(); var s = c.createStatement()) {
            s.executeUpdate("DELETE FROM qc_timer WHERE task_id = " + p1);
        }
        clock.advance(Duration.ofHours(49));

        JsonPath report = ops().post("/api/v1/qc/reconcile").then().statusCode(200).extract().jsonPath();
        List<Map<String, Object>> fixes = report.getList("fixes.findAll { it.visitId == '" + v.visit() + "' }");
        List<String> kinds = fixes.stream().map(f -> f.get("kind") + ":" + f.get("task").toString().split("\\|")[0]).toList();
        assertTrue(kinds.contains("task-created:admission-record"), kinds.toString());
        assertTrue(kinds.contains("task-closed:first-progress-note"), kinds.toString());
        assertTrue(kinds.contains("overdue-marked:attending-first-round"), kinds.toString());
        assertTrue(kinds.contains("timer-restored:progress-note"), kinds.toString());
        assertEquals("OVERDUE", status(v, "admission-record", 0), "recreated, and overdue by now");
        assertEquals("COMPLETED_ON_TIME", status(v, "first-progress-note", 0));
        assertEquals("OVERDUE", status(v, "attending-first-round", 0));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_timer WHERE task_id = ? AND kind = 'DUE' AND fire_at = "
                + "(SELECT due_at FROM qc_task WHERE id = ?)", p1, p1));
        long auditId = report.getLong("auditId");
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_audit WHERE id = ? AND action = 'RECONCILE' AND actor = 'ops'", auditId));

        JsonPath again = ops().post("/api/v1/qc/reconcile").then().statusCode(200).extract().jsonPath();
        assertEquals(0, again.getList("fixes.findAll { it.visitId == '" + v.visit() + "' }").size(), "nothing left to fix");
        assertNotNull(again.get("visitsChecked"));
    }

    @Test
    void aDueRunFixesAMissedDeadlineAndLeavesTheRestToTheFullRun() throws Exception {
        QcEvents late = visit(H, "recon-due");
        late.post(late.admission(t0, "CARDIO", "DR-A"));
        clock.advance(Duration.ofHours(9)); // the first progress note (8 h) passes its deadline; no timer fires here
        QcEvents tampered = visit(H, "recon-tamper");
        tampered.post(tampered.admission(clock.instant(), "CARDIO", "DR-B"));
        long lost = Long.parseLong(task(tampered, "admission-record", 0).get("id"));
        try (var c = PostgresResource.connect(); var s = c.createStatement()) {
            s.executeUpdate("DELETE FROM qc_task WHERE id = " + lost); // a fault in the database: for the full run
        }

        JsonPath due = ops().post("/api/v1/qc/reconcile?scope=due").then().statusCode(200).extract().jsonPath();
        assertEquals("due", due.getString("scope"));
        assertEquals(0, due.getInt("timersChecked"), "open tasks' timers are a full run's check");
        assertEquals(List.of("overdue-marked:first-progress-note"), kinds(due, late));
        assertEquals(List.of(), kinds(due, tampered), "a visit with nothing due is not recomputed");
        assertEquals("OVERDUE", status(late, "first-progress-note", 0));
        assertNull(task(tampered, "admission-record", 0));
        assertEquals(1, Events.count("SELECT COUNT(*) FROM qc_audit WHERE id = ? AND target = 'qc due'", due.getLong("auditId")));

        JsonPath full = ops().post("/api/v1/qc/reconcile").then().statusCode(200).extract().jsonPath();
        assertEquals("full", full.getString("scope"));
        assertTrue(full.getInt("timersChecked") >= 4, "the open tasks' timers checked");
        assertEquals(List.of("task-created:admission-record"), kinds(full, tampered));
        assertEquals("OPEN", status(tampered, "admission-record", 0));

        ops().post("/api/v1/qc/reconcile?scope=sometimes").then().statusCode(400).body("field", equalTo("scope"))
                .body("error", containsString("must be full"));
    }

    @Test
    void theScheduledRunIsFullWhenNoFullRunUnderTheRulesInForceIsRecent() throws Exception {
        clock.advance(Duration.ofDays(60)); // past every full run other tests made
        assertEquals(Reconciliation.Scope.FULL, reconciliation.scheduledScope(), "none on record");
        engine.audit("test", "RECONCILE", "qc full rules=0000000000000000", "other rules", "{}");
        assertEquals(Reconciliation.Scope.FULL, reconciliation.scheduledScope(), "a full run under other rules does not count");
        reconciliation.run("test", Reconciliation.Scope.DUE);
        assertEquals(Reconciliation.Scope.FULL, reconciliation.scheduledScope(), "a due run does not count");
        reconciliation.run("test", Reconciliation.Scope.FULL);
        assertEquals(Reconciliation.Scope.DUE, reconciliation.scheduledScope());
        clock.advance(Duration.ofHours(23));
        assertEquals(Reconciliation.Scope.DUE, reconciliation.scheduledScope(), "within hub.qc.reconcile-full-every (24h)");
        clock.advance(Duration.ofHours(2));
        assertEquals(Reconciliation.Scope.FULL, reconciliation.scheduledScope());
    }

    /** The kinds of fixes a reconciliation report lists for a visit, as kind:rule. */
    private static List<String> kinds(JsonPath report, QcEvents v) {
        List<Map<String, Object>> fixes = report.getList("fixes.findAll { it.visitId == '" + v.visit() + "' }");
        return fixes.stream().map(f -> f.get("kind") + ":" + f.get("task").toString().split("\\|")[0]).toList();
    }

    // ---- Engine lanes ----------------------------------------------------------------------------------------------------

    @Test
    void aLargeBatchIsAppliedInLanesByVisitAndTheRefusalsOfEveryLaneComeBack() throws Exception {
        List<QcEvents> visits = new ArrayList<>();
        List<Event> batch = new ArrayList<>();
        // visits until both lanes (hub.qc.engine-lanes, 2 by default) hold at least four of them
        while (visits.size() < 8 || engine.lanes(batch).size() < 2
                || engine.lanes(batch).stream().mapToInt(List::size).min().orElse(0) < 12) {
            QcEvents v = visit(H, "lane");
            visits.add(v);
            batch.add(parser.parseOne(v.admission(t0, "CARDIO", "DR-L")));
            batch.add(parser.parseOne(v.document(t0.plus(Duration.ofHours(1)), "first-progress-note")));
            batch.add(parser.parseOne(v.admission(t0.plusSeconds(5), "CARDIO", "DR-L"))); // a second admission: refused
        }
        int n = visits.size();
        List<List<Event>> lanes = engine.lanes(batch);
        for (List<Event> lane : lanes) {
            Set<String> own = lane.stream().map(e -> e.payload().path("visitId").asText()).collect(Collectors.toSet());
            lanes.stream().filter(other -> other != lane).flatMap(List::stream)
                    .forEach(e -> assertTrue(!own.contains(e.payload().path("visitId").asText()), "a visit in one lane only"));
        }

        PartialBatchException refused = assertThrows(PartialBatchException.class, () -> engine.apply("t-qc", batch));
        assertEquals(n, refused.refused().size(), "the second admissions of both lanes");
        assertEquals(2 * n, refused.applied().size());
        for (QcEvents v : visits) {
            assertEquals(4, Events.count("SELECT COUNT(*) FROM qc_task WHERE hospital = ? AND visit_id = ?", H, v.visit()));
            assertEquals("COMPLETED_ON_TIME", status(v, "first-progress-note", 0), "the visit's events applied in order");
            assertTimersMatchTasks(v);
        }
        long changes = Events.count("SELECT COUNT(*) FROM qc_task_event WHERE hospital = ? AND visit_id LIKE 'lane-%'", H);

        PartialBatchException again = assertThrows(PartialBatchException.class, () -> engine.apply("t-qc", batch));
        assertEquals(n, again.refused().size());
        assertEquals(2 * n, again.applied().size(), "applied before: skipped");
        assertEquals(changes, Events.count("SELECT COUNT(*) FROM qc_task_event WHERE hospital = ? AND visit_id LIKE 'lane-%'", H));
    }

    @Test
    void rulesInForceAndTaskListAreReadable() {
        JsonPath rules = ops().get("/api/v1/qc/rules?hospital=qc-fast").then().statusCode(200).extract().jsonPath();
        assertEquals("3s", rules.getString("rules.find { it.id == 'consultation-emergency' }.deadline"));
        assertNull(rules.get("rules.find { it.id == 'progress-note' }"), "switched off for qc-fast");
        ops().get("/api/v1/qc/tasks?status=bogus").then().statusCode(400).body("field", equalTo("status"));
        ops().get("/api/v1/qc/tasks?ward=1").then().statusCode(400).body("field", equalTo("ward"));
        QcEvents v = visit(H, "list");
        v.post(v.admission(t0, "CARDIO", "DR-LIST"));
        ops().get("/api/v1/qc/tasks?doctor=DR-LIST&status=OPEN").then().statusCode(200).body("total", equalTo(4));
        // the feed in pages of 500 (the other tests' changes come first) up to its end; next is where to continue
        long next = 0;
        for (int page = 0; page < 100; page++) {
            JsonPath feed = ops().get("/api/v1/qc/task-events?after=" + next + "&limit=500").then().statusCode(200)
                    .extract().jsonPath();
            assertTrue(feed.getLong("next") >= next);
            next = feed.getLong("next");
            if (feed.getList("items").size() < 500) {
                break;
            }
        }
        assertTrue(next > 0);
        ops().get("/api/v1/qc/task-events?after=" + next).then().statusCode(200).body("items.size()", equalTo(0));
    }
}
