package org.hospitalhub.delivery;

import java.time.OffsetDateTime;

import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The canonical event envelope. {@code envelope} is the canonical JSON text, the form that is stored,
 * published and delivered; the other fields are parsed from it.
 */
public record Event(
        String eventId,
        String type,
        String source,
        String hospital,
        String key,
        OffsetDateTime occurredAt,
        ObjectNode payload,
        String envelope) {
}
