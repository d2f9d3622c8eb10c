package org.hospitalhub.qc;

import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A time-limit rule: which clinical event (and payload conditions) opens a task to write which document, by when
 * (relative to the event time), single or recurring, reminded how long before, for whom, and how many points an
 * overdue or late task costs. Loaded from YAML by {@link RuleBook}.
 *
 * @param instanceKey payload field telling instances apart (surgeryId: one operation record per surgery); without it
 *        each triggering event opens its own task
 * @param recipients  {@code attending}, {@code department}, {@code doctor:<payloadField>},
 *        {@code department:<payloadField>} or {@code role:<name>} (a role in the task's department)
 */
public record Rule(
        String id,
        String description,
        String triggerEvent,
        Map<String, Set<String>> when,
        String document,
        Duration deadline,
        Recurring recurring,
        List<Duration> reminders,
        List<String> recipients,
        String instanceKey,
        double points,
        String origin) {

    /**
     * A recurring task (daily progress notes): a new period opens when the previous one is closed; a period lasts
     * {@code period}, or the period of the patient's condition level, and shortens when the condition worsens.
     * The series stops at the first of the {@code until} events.
     */
    public record Recurring(Duration period, Map<String, Duration> periodByLevel, Set<String> until) {

        public Duration periodFor(String level) {
            if (periodByLevel != null && !periodByLevel.isEmpty()) {
                Duration d = periodByLevel.get(level == null ? ClinicalEvent.DEFAULT_LEVEL : level);
                return d != null ? d : periodByLevel.get(ClinicalEvent.DEFAULT_LEVEL);
            }
            return period;
        }
    }

    public boolean isRecurring() {
        return recurring != null;
    }

    /** Whether the event's payload meets the rule's conditions ({@code when}: field -> allowed values). */
    public boolean matches(ObjectNode payload) {
        for (Map.Entry<String, Set<String>> c : when.entrySet()) {
            JsonNode v = payload.get(c.getKey());
            if (v == null || v.isNull() || !c.getValue().contains(v.asText())) {
                return false;
            }
        }
        return true;
    }
}
