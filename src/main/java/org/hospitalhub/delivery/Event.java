package org.hospitalhub.delivery;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;

import com.fasterxml.jackson.core.io.JsonStringEncoder;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A validated event: the canonical envelope's header fields, and its payload as JSON text exactly as the sender wrote
 * it (insignificant whitespace removed; numbers keep their digits, so an amount is never rounded through a double).
 * Built only by {@link EventParser}.
 * <p>
 * The payload tree and the canonical envelope text are made on first use: a flow that only writes rows (Kafka →
 * staging table) never builds either, and a batch in flight holds only the texts. Two events are equal only if they
 * are the same object; {@link #toString()} names the event without its payload (patient data stays out of logs).
 */
public final class Event {

    private static final ObjectMapper TREES = new ObjectMapper();

    private final String eventId;
    private final String type;
    private final String source;
    private final String hospital;
    private final String key;
    private final OffsetDateTime occurredAt;
    private final long occurredAtMillis;
    private final String occurredAtSent;
    private final String occurredAtText;
    private String payloadJson; // a String is safely published without volatile; at worst decoded twice
    /** The payload's UTF-8 bytes, when it was read from bytes (a Kafka record): the text is decoded only if asked for. */
    private final byte[] payloadUtf8;
    private volatile ObjectNode payload;
    private String envelope; // a String is safely published without volatile; at worst built twice

    Event(String eventId, String type, String source, String hospital, String key, OffsetDateTime occurredAt,
            String occurredAtSent, boolean plainForm, String payloadJson, byte[] payloadUtf8, ObjectNode payload) {
        this.eventId = eventId;
        this.type = type;
        this.source = source;
        this.hospital = hospital;
        this.key = key;
        this.occurredAt = occurredAt;
        this.occurredAtMillis = occurredAt.toEpochSecond() * 1000 + occurredAt.getNano() / 1_000_000;
        this.occurredAtSent = occurredAtSent;
        this.occurredAtText = plainForm ? occurredAtSent : occurredAt.toString();
        this.payloadJson = payloadJson;
        this.payloadUtf8 = payloadUtf8;
        this.payload = payload;
    }

    public String eventId() {
        return eventId;
    }

    public String type() {
        return type;
    }

    public String source() {
        return source;
    }

    public String hospital() {
        return hospital;
    }

    /** The ordering key (patient, order ...), or null. */
    public String key() {
        return key;
    }

    public OffsetDateTime occurredAt() {
        return occurredAt;
    }

    /**
     * occurredAt in milliseconds since the epoch, worked out when the event is parsed: the delay metric reads it once
     * the batch is delivered, when the date-time objects behind it are no longer in the processor's cache.
     */
    public long occurredAtMillis() {
        return occurredAtMillis;
    }

    /**
     * occurredAt as ISO-8601 text with its offset (yyyy-MM-ddTHH:mm:ss[.fraction](Z|±HH:mm)): as the sender wrote it
     * when it had that plain form, else normalised. The envelope keeps the text as sent.
     */
    public String occurredAtText() {
        return occurredAtText;
    }

    /** The payload's JSON text. */
    public String payloadJson() {
        String p = payloadJson;
        if (p == null) {
            payloadJson = p = new String(payloadUtf8, StandardCharsets.UTF_8);
        }
        return p;
    }

    /**
     * The payload's JSON text in UTF-8: the bytes it was read from when it came as bytes (a Kafka record), so that a
     * sink writing bytes neither decodes nor encodes it; else encoded now. Callers must not modify the array.
     */
    public byte[] payloadUtf8() {
        return payloadUtf8 != null ? payloadUtf8 : payloadJson.getBytes(StandardCharsets.UTF_8);
    }

    /** The payload as a JSON tree (parsed on first use; callers must not modify it). */
    public ObjectNode payload() {
        ObjectNode p = payload;
        if (p == null) {
            try {
                p = (ObjectNode) (payloadUtf8 != null ? TREES.readTree(payloadUtf8) : TREES.readTree(payloadJson));
            } catch (IOException e) {
                throw new UncheckedIOException("payload of " + eventId + " is not JSON", e); // validated when parsed
            }
            payload = p;
        }
        return p;
    }

    /**
     * The canonical envelope text, the form that is stored, published and delivered: the header fields in a fixed
     * order, then the payload.
     */
    public String envelope() {
        String e = envelope;
        if (e == null) {
            String payloadJson = payloadJson();
            StringBuilder b = new StringBuilder(payloadJson.length() + 160);
            field(b, '{', "eventId", eventId);
            field(b, ',', "type", type);
            field(b, ',', "source", source);
            field(b, ',', "hospital", hospital);
            if (key != null) {
                field(b, ',', "key", key);
            }
            field(b, ',', "occurredAt", occurredAtSent);
            b.append(",\"payload\":").append(payloadJson).append('}');
            envelope = e = b.toString();
        }
        return e;
    }

    private static void field(StringBuilder b, char before, String name, String value) {
        b.append(before).append('"').append(name).append("\":\"");
        JsonStringEncoder.getInstance().quoteAsString(value, b);
        b.append('"');
    }

    @Override
    public String toString() {
        return "Event[" + eventId + ", " + type + " from " + source + "@" + hospital + "]";
    }
}
