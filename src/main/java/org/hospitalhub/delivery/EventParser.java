package org.hospitalhub.delivery;

import java.io.IOException;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Set;
import java.util.regex.Pattern;

import jakarta.enterprise.context.ApplicationScoped;

import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.networknt.schema.ValidationMessage;

/**
 * Parses and validates canonical event envelopes: the envelope's own rules first, then the payload against its
 * type's JSON Schema. Every error names the field and the rule it breaks.
 */
@ApplicationScoped
public class EventParser {

    static final Pattern EVENT_ID = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:\\-]{0,199}");
    static final Pattern CODE = Pattern.compile("[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}");
    private static final Set<String> FIELDS = Set.of("eventId", "type", "source", "hospital", "key", "occurredAt",
            "payload");

    private final SchemaRegistry schemas;
    /** Strict reader: duplicate keys and trailing garbage are errors, not silently accepted. */
    private final ObjectMapper strict = JsonMapper.builder()
            .enable(JsonParser.Feature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    public EventParser(SchemaRegistry schemas) {
        this.schemas = schemas;
    }

    /** Parses a body holding one envelope or a JSON array of envelopes. */
    public List<Event> parseBody(String body) {
        if (body == null || body.isBlank()) {
            throw new InvalidEventException("", "required", "the request body is empty; send one event or a JSON array of events");
        }
        JsonNode root;
        try {
            root = strict.readTree(body);
        } catch (JsonProcessingException e) {
            throw new InvalidEventException("", "json",
                    "malformed JSON at line " + e.getLocation().getLineNr() + ", column " + e.getLocation().getColumnNr()
                            + ": " + e.getOriginalMessage());
        }
        if (root.isObject()) {
            return List.of(validate((ObjectNode) root));
        }
        if (root.isArray()) {
            ArrayNode array = (ArrayNode) root;
            if (array.isEmpty()) {
                throw new InvalidEventException("", "minItems", "the array holds no events");
            }
            List<Event> events = new ArrayList<>(array.size());
            for (int i = 0; i < array.size(); i++) {
                JsonNode n = array.get(i);
                String at = "[" + i + "]";
                if (!n.isObject()) {
                    throw new InvalidEventException(at, "type", at + ": each element must be an event object");
                }
                try {
                    events.add(validate((ObjectNode) n));
                } catch (InvalidEventException e) {
                    throw e.at(at);
                }
            }
            return events;
        }
        throw new InvalidEventException("", "type", "the body must be an event object or an array of event objects");
    }

    /** Parses one envelope from its JSON text (a Kafka record, a RabbitMQ message, a stored event). */
    public Event parseOne(String json) {
        List<Event> events = parseBody(json);
        if (events.size() != 1) {
            throw new InvalidEventException("", "type", "expected one event, got an array of " + events.size());
        }
        return events.get(0);
    }

    public Event validate(ObjectNode node) {
        return validate(node, true);
    }

    private Event validate(ObjectNode node, boolean checkSchema) {
        for (var it = node.fieldNames(); it.hasNext();) {
            String f = it.next();
            if (!FIELDS.contains(f)) {
                throw new InvalidEventException(f, "additionalProperties",
                        "unknown envelope field '" + f + "' (allowed: " + String.join(", ", FIELDS.stream().sorted().toList()) + ")");
            }
        }
        String eventId = requiredText(node, "eventId", EVENT_ID,
                "1 to 200 characters: letters, digits and . _ : - (starting with a letter or digit)");
        String type = requiredText(node, "type", null, null);
        String source = requiredText(node, "source", CODE, "a system code of 1 to 100 letters, digits and . _ -");
        String hospital = requiredText(node, "hospital", CODE, "a hospital code of 1 to 100 letters, digits and . _ -");
        String key = optionalText(node, "key");
        String occurred = requiredText(node, "occurredAt", null, null);
        OffsetDateTime occurredAt;
        try {
            occurredAt = OffsetDateTime.parse(occurred);
        } catch (DateTimeParseException e) {
            throw new InvalidEventException("occurredAt", "format",
                    "occurredAt must be an ISO-8601 date-time with offset, e.g. 2026-11-22T08:30:00+08:00; got '" + occurred + "'");
        }
        JsonNode payload = node.get("payload");
        if (payload == null || payload.isNull()) {
            throw new InvalidEventException("payload", "required", "payload is required");
        }
        if (!payload.isObject()) {
            throw new InvalidEventException("payload", "type", "payload must be a JSON object, got " + kind(payload));
        }
        var schema = schemas.schema(type).orElseThrow(() -> new InvalidEventException(InvalidEventException.Kind.UNKNOWN_TYPE,
                "type", "known-type", "unknown event type '" + type + "'; known types: " + schemas.types()));
        Set<ValidationMessage> errors = checkSchema ? schema.validate(payload) : Set.of();
        if (!errors.isEmpty()) {
            ValidationMessage first = errors.stream()
                    .min(Comparator.comparing((ValidationMessage m) -> m.getInstanceLocation().toString())
                            .thenComparing(ValidationMessage::getMessage))
                    .orElseThrow();
            String loc = first.getInstanceLocation().toString().replaceFirst("^\\$\\.?", "");
            String property = first.getProperty();
            String field = "payload" + (loc.isEmpty() ? "" : "." + loc)
                    + ("required".equals(first.getType()) && property != null ? "." + property : "");
            throw new InvalidEventException(field, first.getType(),
                    field + ": " + first.getMessage().replaceFirst("^\\$[^:]*: ", "") + " (schema of " + type + ")");
        }
        ObjectNode canonical = strict.createObjectNode();
        canonical.put("eventId", eventId);
        canonical.put("type", type);
        canonical.put("source", source);
        canonical.put("hospital", hospital);
        if (key != null) {
            canonical.put("key", key);
        }
        canonical.put("occurredAt", occurred);
        canonical.set("payload", payload);
        String text;
        try {
            text = strict.writeValueAsString(canonical);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
        return new Event(eventId, type, source, hospital, key, occurredAt, (ObjectNode) payload, text);
    }

    private static String requiredText(ObjectNode node, String field, Pattern pattern, String patternText) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            throw new InvalidEventException(field, "required", field + " is required");
        }
        if (!v.isTextual()) {
            throw new InvalidEventException(field, "type", field + " must be a string, got " + kind(v));
        }
        String s = v.asText();
        if (s.isBlank()) {
            throw new InvalidEventException(field, "required", field + " must not be blank");
        }
        if (pattern != null && !pattern.matcher(s).matches()) {
            throw new InvalidEventException(field, "pattern", field + " must be " + patternText);
        }
        return s;
    }

    private static String optionalText(ObjectNode node, String field) {
        JsonNode v = node.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isTextual() || v.asText().length() > 200) {
            throw new InvalidEventException(field, "type", field + " must be a string of at most 200 characters");
        }
        return v.asText();
    }

    private static String kind(JsonNode n) {
        return n.getNodeType().name().toLowerCase();
    }

    /** Reads a stored canonical envelope back (validated against its schema when it was accepted). */
    public Event fromStored(String envelope) {
        try {
            return validate((ObjectNode) strict.readTree(envelope), false);
        } catch (IOException e) {
            throw new IllegalStateException("stored envelope is not JSON: " + e.getMessage(), e);
        }
    }
}
