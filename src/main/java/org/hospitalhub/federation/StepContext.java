package org.hospitalhub.federation;

import com.fasterxml.jackson.databind.JsonNode;
import java.util.Map;

/**
 * One step to execute on this node.
 *
 * @param projectId    globally unique project id
 * @param stepId       globally unique step id
 * @param kind         {@code cohort}, {@code variables} or {@code analysis}
 * @param definition   the step's versioned JSON definition, as the initiator wrote it
 * @param sharingLevel {@code aggregate-only} or {@code de-identified-rows}: what the result may contain
 * @param dependsOn    the ids of earlier steps this one refers to, by role (e.g. {@code cohort} and
 *                     {@code variables} for an analysis), all succeeded on this node
 */
public record StepContext(String projectId, String stepId, String kind, JsonNode definition, String sharingLevel,
        Map<String, String> dependsOn) {
}
