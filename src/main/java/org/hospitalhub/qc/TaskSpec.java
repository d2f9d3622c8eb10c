package org.hospitalhub.qc;

import java.time.Instant;
import java.util.List;

/**
 * A task as the rules require it, computed from the visit's events ({@link VisitProjection}); the engine makes the
 * stored task match it. Key: rule, instance, period (0 for single tasks).
 */
public record TaskSpec(
        String ruleId,
        String instance,
        int period,
        String documentType,
        String patientId,
        String department,
        String doctor,
        List<String> recipients,
        String level,
        Instant openedAt,
        String openedBy,
        Instant dueAt,
        List<Instant> reminders,
        TaskStatus status,
        Instant completedAt,
        String closedBy,
        String closeReason,
        double points) {

    public String key() {
        return key(ruleId, instance, period);
    }

    public static String key(String ruleId, String instance, int period) {
        return ruleId + "|" + instance + "|" + period;
    }
}
