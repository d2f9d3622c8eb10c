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
            createdAt = parseInstant(created);
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

    /**
     * An ISO-8601 date-time with offset, as {@link java.time.OffsetDateTime#parse} reads it. The form every packet of
     * this SDK carries ({@code Instant.toString()}: {@code 2026-12-04T16:18:23.306680Z}) is read by hand, the rest by
     * the JDK's parser, which also gives the verdict on anything the fast path does not accept: the formatter cost
     * each node about 8 % of its CPU, as every node reads every packet.
     */
    static Instant parseInstant(String s) {
        int n = s.length();
        if (n >= 20 && n <= 30 && s.charAt(n - 1) == 'Z' && s.charAt(4) == '-' && s.charAt(7) == '-' && s.charAt(10) == 'T'
                && s.charAt(13) == ':' && s.charAt(16) == ':') {
            int year = digits(s, 0, 4);
            int month = digits(s, 5, 7);
            int day = digits(s, 8, 10);
            int hour = digits(s, 11, 13);
            int minute = digits(s, 14, 16);
            int second = digits(s, 17, 19);
            int nanos = 0;
            boolean ok = year >= 0 && month >= 1 && month <= 12 && day >= 1 && day <= 31 && hour >= 0 && hour <= 23
                    && minute >= 0 && minute <= 59 && second >= 0 && second <= 59;
            if (ok && n > 20) { // a fraction: '.' and 1 to 9 digits before the Z
                int f = digits(s, 20, n - 1);
                ok = s.charAt(19) == '.' && n - 21 >= 1 && n - 21 <= 9 && f >= 0;
                nanos = ok ? f * POW10[9 - (n - 21)] : 0;
            }
            if (ok && (month != 2 || day <= 28 || java.time.Year.isLeap(year) && day == 29)
                    && day <= java.time.Month.of(month).maxLength()) {
                long epochDay = java.time.LocalDate.of(year, month, day).toEpochDay();
                return Instant.ofEpochSecond(epochDay * 86_400 + hour * 3_600 + minute * 60 + second, nanos);
            }
        }
        return java.time.OffsetDateTime.parse(s).toInstant();
    }

    private static final int[] POW10 = {1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000};

    /** The decimal value of s[from, to), or -1 if a character there is not an ASCII digit. */
    private static int digits(String s, int from, int to) {
        int v = 0;
        for (int i = from; i < to; i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            v = v * 10 + (c - '0');
        }
        return v;
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
