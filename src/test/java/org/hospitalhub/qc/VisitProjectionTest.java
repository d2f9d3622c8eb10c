package org.hospitalhub.qc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.stream.Collectors;

import org.hospitalhub.delivery.SchemaRegistry;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/** The task computation on its own: arrival order, late deliveries, transfers during a series, corrections by hand. */
class VisitProjectionTest {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Instant T = Instant.parse("2026-12-01T00:00:00Z");
    private static List<Rule> rules;

    @BeforeAll
    static void rules() throws Exception {
        rules = new RuleBook(RuleBook.sources(Optional.empty()), RuleBook.fieldsOf(new SchemaRegistry(JSON, Optional.empty())))
                .rulesFor("h");
    }

    private static ClinicalEvent ev(long seq, String type, Duration after, Object... fields) {
        ObjectNode p = JSON.createObjectNode().put("patientId", "P1").put("visitId", "V1");
        for (int i = 0; i < fields.length; i += 2) {
            p.put((String) fields[i], String.valueOf(fields[i + 1]));
        }
        return new ClinicalEvent(seq, "e" + seq, type, T.plus(after), p);
    }

    private static Map<String, TaskSpec> tasks(List<ClinicalEvent> log, List<VisitProjection.ManualAction> manual, Instant now) {
        return VisitProjection.project(log, manual, rules, now).tasks().stream()
                .collect(Collectors.toMap(t -> t.ruleId() + "#" + t.period() + (t.ruleId().startsWith("discharge") ? "#" + t.instance() : ""),
                        t -> t));
    }

    private static Duration h(long hours) {
        return Duration.ofHours(hours);
    }

    @Test
    void theArrivalOrderDoesNotMatter() {
        List<ClinicalEvent> log = List.of(
                ev(1, ClinicalEvent.ADMISSION, h(0), "department", "CARDIO", "attendingDoctor", "DR-A"),
                ev(2, ClinicalEvent.CONDITION_CHANGED, h(5), "level", "serious"),
                ev(3, ClinicalEvent.DOCUMENT_COMPLETED, h(6), "documentType", "first-progress-note", "documentId", "d1", "author", "a"),
                ev(4, ClinicalEvent.DOCUMENT_COMPLETED, h(20), "documentType", "progress-note", "documentId", "d2", "author", "a"),
                ev(5, ClinicalEvent.DISCHARGE, h(30), "department", "CARDIO"),
                ev(6, ClinicalEvent.DISCHARGE_CANCELLED, h(31)),
                ev(7, ClinicalEvent.DOCUMENT_COMPLETED, h(40), "documentType", "admission-record", "documentId", "d3", "author", "a"),
                ev(8, ClinicalEvent.DISCHARGE, h(60), "department", "CARDIO"));
        Map<String, TaskSpec> inOrder = tasks(log, List.of(), T.plus(h(61)));
        Random random = new Random(7);
        for (int round = 0; round < 20; round++) {
            List<ClinicalEvent> shuffled = new ArrayList<>(log);
            Collections.shuffle(shuffled, random);
            List<ClinicalEvent> arrival = new ArrayList<>();
            for (int i = 0; i < shuffled.size(); i++) { // a new arrival order: new sequence numbers
                ClinicalEvent e = shuffled.get(i);
                arrival.add(new ClinicalEvent(100 + i, e.eventId(), e.type(), e.at(), e.payload()));
            }
            assertEquals(inOrder, tasks(arrival, List.of(), T.plus(h(61))), "arrival order " + shuffled.stream().map(ClinicalEvent::eventId).toList());
        }
        assertEquals(TaskStatus.COMPLETED_LATE, inOrder.get("admission-record#0").status());
        assertEquals(TaskStatus.COMPLETED_ON_TIME, inOrder.get("progress-note#1").status());
        assertEquals(T.plus(h(20)).plus(Duration.ofDays(2)), inOrder.get("progress-note#2").dueAt(), "serious: 2 days after the note");
        assertEquals(TaskStatus.CANCELLED, inOrder.get("progress-note#2").status(), "ended by the second discharge");
        assertEquals("e8", inOrder.get("progress-note#2").closedBy());
        assertEquals(TaskStatus.CANCELLED, inOrder.get("discharge-record#0#e5").status(), "its discharge was cancelled");
        assertEquals(TaskStatus.OPEN, inOrder.get("discharge-record#0#e8").status());
    }

    @Test
    void aDocumentWrittenInTimeButDeliveredAfterTheDeadlineCountsAsOnTime() {
        List<ClinicalEvent> log = new ArrayList<>(List.of(ev(1, ClinicalEvent.ADMISSION, h(0), "department", "C", "attendingDoctor", "D")));
        assertEquals(TaskStatus.OVERDUE, tasks(log, List.of(), T.plus(h(9))).get("first-progress-note#0").status());
        log.add(ev(2, ClinicalEvent.DOCUMENT_COMPLETED, h(7), "documentType", "first-progress-note", "documentId", "d", "author", "a"));
        assertEquals(TaskStatus.COMPLETED_ON_TIME, tasks(log, List.of(), T.plus(h(10))).get("first-progress-note#0").status());
    }

    @Test
    void periodsAfterATransferBelongToTheNewDepartmentAndItsAttending() {
        List<ClinicalEvent> log = List.of(
                ev(1, ClinicalEvent.ADMISSION, h(0), "department", "CARDIO", "attendingDoctor", "DR-A"),
                ev(2, ClinicalEvent.TRANSFER_IN, h(10), "transferId", "T1", "department", "NEURO", "attendingDoctor", "DR-B"),
                ev(3, ClinicalEvent.DOCUMENT_COMPLETED, h(20), "documentType", "progress-note", "documentId", "d", "author", "a"));
        Map<String, TaskSpec> t = tasks(log, List.of(), T.plus(h(21)));
        assertEquals("CARDIO", t.get("progress-note#1").department());
        assertEquals("NEURO", t.get("progress-note#2").department());
        assertEquals(List.of("doctor:DR-B"), t.get("progress-note#2").recipients());
        assertEquals("DR-B", t.get("transfer-in-note#0").doctor());
    }

    @Test
    void aCancelNamingAMoveCancelsItsMostRecentTransferAndTheSameMoveMadeEarlierStays() {
        // as the HL7 intake writes them: each A02 "<from>><to>/<tag>", an A12 the move alone
        List<ClinicalEvent> log = new ArrayList<>(List.of(
                ev(1, ClinicalEvent.ADMISSION, h(0), "department", "CARDIO", "attendingDoctor", "DR-A"),
                ev(2, ClinicalEvent.TRANSFER_OUT, h(2), "transferId", "CARDIO>NEURO/aaaaaaaa", "department", "CARDIO", "toDepartment", "NEURO"),
                ev(3, ClinicalEvent.TRANSFER_IN, h(2), "transferId", "CARDIO>NEURO/aaaaaaaa", "department", "NEURO", "attendingDoctor", "DR-B"),
                ev(4, ClinicalEvent.TRANSFER_OUT, h(4), "transferId", "NEURO>CARDIO/bbbbbbbb", "department", "NEURO", "toDepartment", "CARDIO"),
                ev(5, ClinicalEvent.TRANSFER_IN, h(4), "transferId", "NEURO>CARDIO/bbbbbbbb", "department", "CARDIO", "attendingDoctor", "DR-A"),
                ev(6, ClinicalEvent.TRANSFER_OUT, h(6), "transferId", "CARDIO>NEURO/cccccccc", "department", "CARDIO", "toDepartment", "NEURO"),
                ev(7, ClinicalEvent.TRANSFER_IN, h(6), "transferId", "CARDIO>NEURO/cccccccc", "department", "NEURO", "attendingDoctor", "DR-C")));
        assertEquals(Map.of("e3", TaskStatus.OPEN, "e5", TaskStatus.OPEN, "e7", TaskStatus.OPEN),
                transferInNotes(VisitProjection.project(log, List.of(), rules, T.plus(h(7)))), "a note for each move");
        log.add(ev(8, ClinicalEvent.TRANSFER_CANCELLED, h(7), "transferId", "CARDIO>NEURO"));
        VisitProjection.Result r = VisitProjection.project(log, List.of(), rules, T.plus(h(8)));
        assertEquals(Map.of("e3", TaskStatus.OPEN, "e5", TaskStatus.OPEN, "e7", TaskStatus.CANCELLED), transferInNotes(r));
        assertEquals("cancels qc.transfer.out e6, qc.transfer.in e7", r.outcomes().get("e8").reason());
        assertEquals("CARDIO", r.visit().department(), "back in CARDIO: the cancelled move has no effect");
        assertEquals("DR-A", r.visit().doctor());
        for (int round = 0; round < 10; round++) { // the same in any arrival order
            List<ClinicalEvent> shuffled = new ArrayList<>(log);
            Collections.shuffle(shuffled, new Random(round));
            assertEquals(transferInNotes(r), transferInNotes(VisitProjection.project(shuffled, List.of(), rules, T.plus(h(8)))));
        }
        // a second cancel of the move cancels the one before; a full transferId names exactly that transfer
        log.add(ev(9, ClinicalEvent.TRANSFER_CANCELLED, h(8), "transferId", "CARDIO>NEURO"));
        r = VisitProjection.project(log, List.of(), rules, T.plus(h(9)));
        assertEquals(Map.of("e3", TaskStatus.CANCELLED, "e5", TaskStatus.OPEN, "e7", TaskStatus.CANCELLED), transferInNotes(r));
        assertEquals("cancels qc.transfer.out e2, qc.transfer.in e3", r.outcomes().get("e9").reason());
        log.add(ev(10, ClinicalEvent.TRANSFER_CANCELLED, h(9), "transferId", "NEURO>CARDIO/bbbbbbbb"));
        assertEquals(TaskStatus.CANCELLED, transferInNotes(VisitProjection.project(log, List.of(), rules, T.plus(h(10)))).get("e5"));
        // a move with nothing left to cancel waits (HELD) like any cancel whose event has not arrived
        log.add(ev(11, ClinicalEvent.TRANSFER_CANCELLED, h(10), "transferId", "CARDIO>NEURO"));
        assertEquals(VisitProjection.Disposition.HELD, VisitProjection.project(log, List.of(), rules, T.plus(h(11))).outcomes()
                .get("e11").disposition());
        // an id that only begins like another is not its move
        assertFalse(VisitProjection.namesTransfer("T9", "T95"));
        assertTrue(VisitProjection.namesTransfer("T9", "T9/x") && VisitProjection.namesTransfer("T9", "T9"));
        // a cancel stamped before its transfer (two systems' clocks) still finds it
        List<ClinicalEvent> skewed = List.of(ev(1, ClinicalEvent.ADMISSION, h(0), "department", "CARDIO", "attendingDoctor", "DR-A"),
                ev(2, ClinicalEvent.TRANSFER_IN, h(3), "transferId", "T5", "department", "NEURO", "attendingDoctor", "DR-B"),
                ev(3, ClinicalEvent.TRANSFER_CANCELLED, h(2), "transferId", "T5"));
        assertEquals(Map.of("e2", TaskStatus.CANCELLED), transferInNotes(VisitProjection.project(skewed, List.of(), rules, T.plus(h(4)))));
    }

    /** The transfer-in notes of a projection: the event that opened each, and its status. */
    private static Map<String, TaskStatus> transferInNotes(VisitProjection.Result r) {
        return r.tasks().stream().filter(t -> t.ruleId().equals("transfer-in-note"))
                .collect(Collectors.toMap(TaskSpec::openedBy, TaskSpec::status));
    }

    @Test
    void aPeriodCancelledByHandStartsTheNextOneThen() {
        List<ClinicalEvent> log = List.of(ev(1, ClinicalEvent.ADMISSION, h(0), "department", "C", "attendingDoctor", "D",
                "conditionLevel", "critical"));
        List<VisitProjection.ManualAction> manual = List.of(
                new VisitProjection.ManualAction(1, "CANCEL", "progress-note", "series", 1, T.plus(h(5)), "ops", "duplicate admission"));
        Map<String, TaskSpec> t = tasks(log, manual, T.plus(h(6)));
        assertEquals(T.plus(Duration.ofDays(1)), t.get("progress-note#1").dueAt(), "critical on admission: daily");
        assertEquals(TaskStatus.CANCELLED, t.get("progress-note#1").status());
        assertEquals("manual:1", t.get("progress-note#1").closedBy());
        assertEquals(T.plus(h(5)).plus(Duration.ofDays(1)), t.get("progress-note#2").dueAt());
        assertNull(t.get("progress-note#3"));
    }
}
