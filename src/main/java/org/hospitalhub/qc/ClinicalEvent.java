package org.hospitalhub.qc;

import java.time.Instant;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A clinical event as qc reads it from the visit's log: the hub event's id, type, time ({@code occurredAt}) and
 * payload; {@code seq} is the arrival order (ties in time are taken in arrival order).
 */
public record ClinicalEvent(long seq, String eventId, String type, Instant at, ObjectNode payload) {

    public static final String ADMISSION = "qc.admission";
    public static final String ADMISSION_CANCELLED = "qc.admission.cancelled";
    public static final String TRANSFER_OUT = "qc.transfer.out";
    public static final String TRANSFER_IN = "qc.transfer.in";
    public static final String TRANSFER_CANCELLED = "qc.transfer.cancelled";
    public static final String DISCHARGE = "qc.discharge";
    public static final String DISCHARGE_CANCELLED = "qc.discharge.cancelled";
    public static final String CONDITION_CHANGED = "qc.condition.changed";
    public static final String SURGERY_FINISHED = "qc.surgery.finished";
    public static final String RESCUE_FINISHED = "qc.rescue.finished";
    public static final String CONSULTATION_REQUESTED = "qc.consultation.requested";
    public static final String DEATH = "qc.death";
    public static final String DOCUMENT_COMPLETED = "qc.document.completed";

    /** Events that can open tasks (rule triggers) or end a recurring series. */
    public static final Set<String> TRIGGERS = Set.of(ADMISSION, TRANSFER_OUT, TRANSFER_IN, DISCHARGE, CONDITION_CHANGED,
            SURGERY_FINISHED, RESCUE_FINISHED, CONSULTATION_REQUESTED, DEATH);
    /** Events that cancel an earlier event (and so the tasks it opened). */
    public static final Set<String> CANCELS = Set.of(ADMISSION_CANCELLED, TRANSFER_CANCELLED, DISCHARGE_CANCELLED);

    public static final Set<String> LEVELS = Set.of("critical", "serious", "stable");
    public static final String DEFAULT_LEVEL = "stable";

    public boolean isQc() {
        return type.startsWith("qc.");
    }

    /** A payload field as text, or null when absent or blank. */
    public String text(String field) {
        return text(payload, field);
    }

    public static String text(ObjectNode payload, String field) {
        JsonNode v = payload.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        String s = v.asText();
        return s.isBlank() ? null : s;
    }

    public String patientId() {
        return text("patientId");
    }

    public String visitId() {
        return text("visitId");
    }
}
