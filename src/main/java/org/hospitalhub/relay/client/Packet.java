package org.hospitalhub.relay.client;

import java.time.Instant;
import java.time.format.DateTimeParseException;
import java.util.Objects;
import java.util.UUID;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * A relay command packet. The relay routes and stores it and never reads {@code command} or {@code parameters}.
 * Addresses: a client {@code name@node} (e.g. {@code clinic-7@county-1}), a node {@code county-1}, or a service of a
 * node {@code consultation@city-a}. {@code ttl} is in seconds from {@code createdAt}.
 */
public record Packet(String packetId, String from, String to, String command, JsonNode parameters, Instant createdAt,
        long ttl, String correlationId) {

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final java.util.regex.Pattern PACKET_ID = java.util.regex.Pattern.compile("[A-Za-z0-9._:-]+");

    public Packet {
        Objects.requireNonNull(packetId, "packetId");
    }

    /** A new packet with a random id, created now. */
    public static Packet create(String from, String to, String command, JsonNode parameters, long ttlSeconds) {
        return new Packet(UUID.randomUUID().toString(), from, to, command,
                parameters == null ? JSON.createObjectNode() : parameters, Instant.now(), ttlSeconds, null);
    }

    /** A reply to this packet: from its recipient back to its sender, correlated by this packet's id. */
    public Packet reply(String command, JsonNode parameters, long ttlSeconds) {
        return new Packet(UUID.randomUUID().toString(), to, from, command,
                parameters == null ? JSON.createObjectNode() : parameters, Instant.now(), ttlSeconds, packetId);
    }

    public Instant expiresAt() {
        return createdAt.plusSeconds(ttl);
    }

    public ObjectNode toJson() {
        ObjectNode n = JSON.createObjectNode();
        n.put("packetId", packetId);
        n.put("from", from);
        n.put("to", to);
        n.put("command", command);
        n.set("parameters", parameters == null ? JSON.createObjectNode() : parameters);
        n.put("createdAt", createdAt == null ? null : createdAt.toString());
        n.put("ttl", ttl);
        if (correlationId != null) {
            n.put("correlationId", correlationId);
        }
        return n;
    }

    /**
     * Reads a packet, checking every field; {@link InvalidPacketException} names the field and the rule broken.
     */
    public static Packet fromJson(JsonNode n) {
        if (n == null || !n.isObject()) {
            throw new InvalidPacketException(null, "packet", "object", "a packet must be a JSON object");
        }
        String id = text(n, null, "packetId", true, 100);
        if (!PACKET_ID.matcher(id).matches()) {
            throw new InvalidPacketException(id, "packetId", "pattern", "packetId may hold only letters, digits and . _ : -");
        }
        String from = address(n, id, "from");
        String to = address(n, id, "to");
        String command = text(n, id, "command", true, 200);
        JsonNode params = n.get("parameters");
        if (params != null && !params.isNull() && !params.isObject()) {
            throw new InvalidPacketException(id, "parameters", "type", "parameters must be a JSON object");
        }
        String created = text(n, id, "createdAt", true, 64);
        Instant createdAt;
        try {
            createdAt = IsoDateTime.instant(created);
        } catch (DateTimeParseException e) {
            throw new InvalidPacketException(id, "createdAt", "format", "createdAt must be an ISO-8601 date-time with offset, got '" + created + "'");
        }
        JsonNode ttl = n.get("ttl");
        if (ttl == null || !ttl.canConvertToLong() || !ttl.isIntegralNumber() || ttl.asLong() <= 0) {
            throw new InvalidPacketException(id, "ttl", "positive-integer", "ttl must be a positive number of seconds");
        }
        String corr = text(n, id, "correlationId", false, 100);
        return new Packet(id, from, to, command, params == null || params.isNull() ? JSON.createObjectNode() : params,
                createdAt, ttl.asLong(), corr);
    }

    private static String address(JsonNode n, String id, String field) {
        String a = text(n, id, field, true, 200);
        if (!Address.isValid(a)) {
            throw new InvalidPacketException(id, field, "address", field + " must be name@node or node (letters, digits, . _ -), got '" + a + "'");
        }
        return a;
    }

    private static String text(JsonNode n, String id, String field, boolean required, int max) {
        JsonNode v = n.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw new InvalidPacketException(id, field, "required", field + " is required");
            }
            return null;
        }
        if (!v.isTextual() || v.asText().isBlank()) {
            throw new InvalidPacketException(id, field, "type", field + " must be a non-empty string");
        }
        if (v.asText().length() > max) {
            throw new InvalidPacketException(id, field, "max-length", field + " must be at most " + max + " characters");
        }
        return v.asText();
    }

    /** A packet that breaks a rule, naming the field and the rule. */
    public static class InvalidPacketException extends IllegalArgumentException {
        private final String packetId;
        private final String field;
        private final String rule;

        public InvalidPacketException(String packetId, String field, String rule, String message) {
            super(message);
            this.packetId = packetId;
            this.field = field;
            this.rule = rule;
        }

        public String packetId() {
            return packetId;
        }

        public String field() {
            return field;
        }

        public String rule() {
            return rule;
        }
    }
}
