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

    /**
     * The payload's JSON text, cut from the canonical envelope rather than serialized again. The envelope's header
     * fields are all strings (no unescaped quote can occur in them) and {@code payload} is its last field, so the
     * first {@code ,"payload":} is the field itself.
     */
    public String payloadJson() {
        int at = envelope.indexOf(",\"payload\":");
        return at < 0 ? payload.toString() : envelope.substring(at + 11, envelope.length() - 1);
    }
}
