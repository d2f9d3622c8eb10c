package org.hospitalhub.delivery;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import jakarta.enterprise.context.ApplicationScoped;

import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.exc.MismatchedInputException;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.databind.node.TextNode;
import com.networknt.schema.ValidationMessage;

import io.quarkus.arc.ClientProxy;

/**
 * Parses and validates canonical event envelopes: the envelope's own rules first, then the payload against its
 * type's JSON Schema. Every error names the field and the rule it breaks.
 */
@ApplicationScoped
public class EventParser {

    /**
     * The identifier rules: a letter or digit (ASCII), then up to {@code max - 1} letters, digits and {@code . _ -}
     * ({@code :} too in an eventId). Checked by a loop rather than a regular expression: three matches per event were
     * 3 % of a Kafka flow's CPU. EventParserTest holds the regular expressions they stand for.
     */
    record IdRule(int max, boolean colon) {
        boolean matches(String s) {
            int n = s.length();
            if (n == 0 || n > max) {
                return false;
            }
            for (int i = 0; i < n; i++) {
                char c = s.charAt(i);
                boolean alnum = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9';
                if (!alnum && (i == 0 || !(c == '.' || c == '_' || c == '-' || colon && c == ':'))) {
                    return false;
                }
            }
            return true;
        }
    }

    static final IdRule EVENT_ID = new IdRule(200, true);
    static final IdRule CODE = new IdRule(100, false);

    private final SchemaRegistry schemas;
    /**
     * Strict reader: duplicate keys are errors, not silently accepted. Inside a tree (the payload, a header value that
     * is not a string) the tree reader finds them as it puts each field, at no extra cost; the envelope's own fields
     * are checked by {@link #readEnvelope}. The parser's STRICT_DUPLICATE_DETECTION did both with a set of names per
     * object: 6 % of a Kafka flow's CPU. Trailing garbage after the body is checked by {@link #parseBody} (the mapper's
     * own check would also fire on each value read from the middle of a body).
     */
    private final ObjectMapper strict = JsonMapper.builder()
            .enable(DeserializationFeature.FAIL_ON_READING_DUP_TREE_KEY)
            .build();

    private final com.fasterxml.jackson.databind.ObjectReader decimals = strict.reader()
            .with(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS);

    public EventParser(SchemaRegistry schemas) {
        // the instance behind the client proxy: the proxy looks the bean up in its context on every call, once per event
        this.schemas = ClientProxy.unwrap(schemas);
    }

    /**
     * Parses a body holding one envelope or a JSON array of envelopes. The whole body is read first (malformed JSON is
     * reported before any rule of an envelope), then each envelope is validated in order.
     */
    public List<Event> parseBody(String body) {
        if (body == null || body.isBlank()) {
            throw emptyBody();
        }
        try (JsonParser p = strict.createParser(body)) {
            return parseBody(p, body, null);
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a String cannot fail to be read
        }
    }

    /**
     * {@link #parseBody(String)} of a body in UTF-8 (a Kafka record's value): Jackson reads the bytes as they are, which
     * is cheaper than decoding them into a String first (its byte parser matches field names four bytes at a time), and
     * only the payload's text is decoded. Bytes that are not UTF-8 are malformed JSON.
     */
    public List<Event> parseBody(byte[] utf8) {
        if (utf8 == null || utf8.length == 0) {
            throw emptyBody();
        }
        try (JsonParser p = strict.createParser(utf8)) {
            if (!(p instanceof com.fasterxml.jackson.core.json.UTF8StreamJsonParser)) {
                // Jackson took the bytes for UTF-16 or UTF-32 (by their first bytes): read them as UTF-8 text, as the
                // String path would, so the payload's text is never cut by offsets of another encoding
                return parseBody(new String(utf8, StandardCharsets.UTF_8));
            }
            return parseBody(p, null, utf8);
        } catch (IOException e) {
            throw new UncheckedIOException(e); // a byte array cannot fail to be read
        }
    }

    /** Parses the body from {@code text} or from {@code utf8}, whichever is given (the payload's text is cut from it). */
    private List<Event> parseBody(JsonParser p, String text, byte[] utf8) throws IOException {
        List<Object> read = new ArrayList<>(); // a Fields per envelope, or a String naming what else an element was
        boolean array;
        try {
            JsonToken t = p.nextToken();
            if (t == null) {
                throw emptyBody();
            }
            array = t == JsonToken.START_ARRAY;
            if (t == JsonToken.START_OBJECT) {
                read.add(readEnvelope(p, text, utf8, true));
            } else if (array) {
                while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
                    if (t == JsonToken.START_OBJECT) {
                        read.add(readEnvelope(p, text, utf8, true));
                    } else {
                        p.skipChildren();
                        read.add("not an object");
                    }
                }
            } else {
                p.skipChildren();
            }
            t = p.nextToken();
            if (t != null) {
                throw new JsonParseException(p, "Trailing token (of type " + t + ") found after value");
            }
            if (read.isEmpty() && !array) {
                throw new InvalidEventException("", "type", "the body must be an event object or an array of event objects");
            }
        } catch (JsonProcessingException e) {
            throw malformed(e);
        }
        if (!array) {
            return List.of(build((Fields) read.get(0), true));
        }
        if (read.isEmpty()) {
            throw new InvalidEventException("", "minItems", "the array holds no events");
        }
        List<Event> events = new ArrayList<>(read.size());
        for (int i = 0; i < read.size(); i++) {
            String at = "[" + i + "]";
            if (!(read.get(i) instanceof Fields f)) {
                throw new InvalidEventException(at, "type", at + ": each element must be an event object");
            }
            try {
                events.add(build(f, true));
            } catch (InvalidEventException e) {
                throw e.at(at);
            }
        }
        return events;
    }

    private static InvalidEventException emptyBody() {
        return new InvalidEventException("", "required", "the request body is empty; send one event or a JSON array of events");
    }

    private static InvalidEventException malformed(JsonProcessingException e) {
        var where = e.getLocation();
        String message = e.getOriginalMessage();
        if (e instanceof MismatchedInputException && message != null && message.startsWith(DUPLICATE)) {
            // the tree reader's words name its own feature: say it as the envelope's check does
            int end = message.indexOf("' for `ObjectNode`");
            message = end > 0 ? message.substring(0, end + 1) : message;
        }
        return new InvalidEventException("", "json", "malformed JSON at line " + (where == null ? 0 : where.getLineNr())
                + ", column " + (where == null ? 0 : where.getColumnNr()) + ": " + message);
    }

    private static final String DUPLICATE = "Duplicate field '";

    /** Parses one envelope from its JSON text (a Kafka record, a RabbitMQ message, a stored event). */
    public Event parseOne(String json) {
        return one(parseBody(json));
    }

    /** Parses one envelope from its UTF-8 bytes (a Kafka record's value). */
    public Event parseOne(byte[] utf8) {
        return one(parseBody(utf8));
    }

    private static Event one(List<Event> events) {
        if (events.size() != 1) {
            throw new InvalidEventException("", "type", "expected one event, got an array of " + events.size());
        }
        return events.get(0);
    }

    /** Validates an envelope built as a tree (XML, HL7, a polled row). */
    public Event validate(ObjectNode node) {
        Fields f = new Fields();
        for (var it = node.fields(); it.hasNext();) {
            var field = it.next();
            f.put(field.getKey(), field.getValue());
        }
        return build(f, true);
    }

    /** The envelope's fields as read, before validation. */
    private static final class Fields {
        final JsonNode[] values = new JsonNode[NAMES.size()];
        String unknown;
        /** The payload object's text as it stands in the body, when it was read from text (or decoded from bytes). */
        String payloadText;
        /** The body's bytes and the payload object's place in them, when it was read from bytes. */
        byte[] payloadBytes;
        int payloadFrom;
        int payloadTo;
        /**
         * The schema's verdict given while the payload was read ({@link StreamedSchema}): null when it was read as a
         * tree instead, true when certainly valid, false when the library is to judge it.
         */
        Boolean streamedValid;

        /** The payload's text when it was cut from the body (decoded from the bytes when read from bytes), else null. */
        String payloadText() {
            if (payloadText == null && payloadBytes != null) {
                payloadText = new String(payloadBytes, payloadFrom, payloadTo - payloadFrom, StandardCharsets.UTF_8);
            }
            return payloadText;
        }

        void put(String name, JsonNode value) {
            int i = NAMES.indexOf(name);
            if (i < 0) {
                if (unknown == null) {
                    unknown = name;
                }
            } else {
                values[i] = value;
            }
        }

        JsonNode get(String name) {
            return values[NAMES.indexOf(name)];
        }
    }

    /** The envelope's fields, in the canonical envelope's order. */
    private static final List<String> NAMES = List.of("eventId", "type", "source", "hospital", "key", "occurredAt", "payload");
    private static final int PAYLOAD = NAMES.indexOf("payload");
    private static final int TYPE = NAMES.indexOf("type");

    /**
     * Reads one envelope object (the parser is on its START_OBJECT) without building a tree of it: the header values
     * as small nodes, the payload as a tree only when it is to be checked against its schema, and the payload's text
     * cut from the body by the parser's character offsets. A field given twice is refused here (a bit per envelope
     * field; a set only for unknown names, which are refused anyway), duplicates inside a tree by the tree reader.
     */
    private Fields readEnvelope(JsonParser p, String text, byte[] utf8, boolean payloadTree) throws IOException {
        Fields f = new Fields();
        int seen = 0;
        Set<String> unknownSeen = null;
        while (p.nextToken() == JsonToken.FIELD_NAME) {
            String name = p.currentName();
            int i = NAMES.indexOf(name);
            boolean again;
            if (i >= 0) {
                again = (seen & (1 << i)) != 0;
                seen |= 1 << i;
            } else {
                if (unknownSeen == null) {
                    unknownSeen = new HashSet<>();
                }
                again = !unknownSeen.add(name);
            }
            if (again) {
                throw new JsonParseException(p, DUPLICATE + name + "'");
            }
            JsonToken t = p.nextToken();
            if (i == PAYLOAD && t == JsonToken.START_OBJECT) {
                long from = offset(p, text);
                // checked as it is read when the type came before it (the canonical order) and its schema allows
                StreamedSchema quick = payloadTree && f.values[TYPE] instanceof TextNode type ? schemas.streamed(type.textValue()) : null;
                if (quick != null) {
                    f.streamedValid = quick.check(p);
                    f.values[i] = strict.getNodeFactory().objectNode(); // stands for "an object"; text below
                } else if (payloadTree) {
                    f.values[i] = p.readValueAsTree();
                } else {
                    p.skipChildren();
                    f.values[i] = strict.getNodeFactory().objectNode(); // stands for "an object"; text below
                }
                long to = offset(p, text) + 1; // after the closing brace (one byte in UTF-8 too)
                if (text != null) {
                    f.payloadText = text.substring((int) from, (int) to);
                } else {
                    f.payloadBytes = utf8; // kept as bytes: a sink writing bytes never decodes it
                    f.payloadFrom = (int) from;
                    f.payloadTo = (int) to;
                }
            } else if (i >= 0 && t == JsonToken.VALUE_STRING) {
                // the header fields are strings: a node of the text, without a tree reader (and its context) per field
                f.values[i] = TextNode.valueOf(p.getText());
            } else if (i >= 0) {
                f.values[i] = p.readValueAsTree();
            } else {
                f.put(name, null);
                p.skipChildren();
            }
        }
        return f;
    }

    /** Where the current token starts in the body: in characters when it is read from text, else in bytes. */
    private static long offset(JsonParser p, String text) {
        var at = p.currentTokenLocation();
        return text != null ? at.getCharOffset() : at.getByteOffset();
    }

    private Event build(Fields node, boolean checkSchema) {
        if (node.unknown != null) {
            String f = node.unknown;
            throw new InvalidEventException(f, "additionalProperties",
                    "unknown envelope field '" + f + "' (allowed: " + String.join(", ", NAMES.stream().sorted().toList()) + ")");
        }
        String eventId = requiredText(node, "eventId", EVENT_ID,
                "1 to 200 characters: letters, digits and . _ : - (starting with a letter or digit)");
        String type = requiredText(node, "type", null, null);
        String source = requiredText(node, "source", CODE, "a system code of 1 to 100 letters, digits and . _ -");
        String hospital = requiredText(node, "hospital", CODE, "a hospital code of 1 to 100 letters, digits and . _ -");
        String key = optionalText(node, "key");
        String occurred = requiredText(node, "occurredAt", null, null);
        OffsetDateTime occurredAt = org.hospitalhub.relay.client.IsoDateTime.plain(occurred);
        boolean plain = occurredAt != null;
        if (!plain) {
            try {
                occurredAt = OffsetDateTime.parse(occurred);
            } catch (DateTimeParseException e) {
                throw new InvalidEventException("occurredAt", "format",
                        "occurredAt must be an ISO-8601 date-time with offset, e.g. 2026-11-22T08:30:00+08:00; got '" + occurred + "'");
            }
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
        Set<ValidationMessage> errors;
        if (!checkSchema || Boolean.TRUE.equals(node.streamedValid)) {
            errors = Set.of();
        } else {
            // unsure while streamed: the library's verdict, on the tree
            errors = validate(schema, node.streamedValid != null ? tree(node.payloadText(), false) : payload, node);
        }
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
        String text = null;
        byte[] utf8 = null;
        ObjectNode tree = null;
        if (node.payloadBytes != null) {
            utf8 = checkSchema ? compact(node.payloadBytes, node.payloadFrom, node.payloadTo)
                    : Arrays.copyOfRange(node.payloadBytes, node.payloadFrom, node.payloadTo);
        } else if (node.payloadText != null) {
            text = checkSchema ? compact(node.payloadText) : node.payloadText; // a stored envelope was compacted when accepted
        } else {
            tree = (ObjectNode) payload;
            try {
                text = strict.writeValueAsString(tree);
            } catch (JsonProcessingException e) {
                throw new IllegalStateException(e);
            }
        }
        return new Event(eventId, type, source, hospital, key, occurredAt, occurred, plain, text, utf8, tree);
    }


    /**
     * Valid JSON text without its insignificant whitespace (the text itself when it has none). Strings are skipped
     * with {@link String#indexOf(int, int)} to their closing quote (one preceded by an even number of backslashes), so
     * the text, mostly string values, is not walked character by character; what lies between strings is copied in
     * runs, without the whitespace.
     */
    static String compact(String json) {
        int n = json.length();
        StringBuilder out = null;
        int copied = 0; // json[copied, i) is still to be copied into out
        int i = 0;
        while (i < n) {
            char c = json.charAt(i);
            if (c == '"') {
                int from = i + 1;
                while (true) {
                    int q = json.indexOf('"', from);
                    if (q < 0) {
                        return json; // not valid JSON (an unterminated string): the caller's parser has refused it already
                    }
                    int b = q - 1;
                    while (b > i && json.charAt(b) == '\\') {
                        b--;
                    }
                    from = q + 1;
                    if (((q - 1 - b) & 1) == 0) {
                        break; // not escaped: the string ends here
                    }
                }
                i = from;
            } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                if (out == null) {
                    out = new StringBuilder(n);
                }
                out.append(json, copied, i);
                copied = ++i;
            } else {
                i++;
            }
        }
        return out == null ? json : out.append(json, copied, n).toString();
    }

    /**
     * The library's verdict. A number beyond a double's range is read into the tree as infinity, which the library
     * cannot compare with a bound (it makes a BigDecimal of the number's text): such a payload is judged again read
     * with exact decimals.
     */
    private Set<ValidationMessage> validate(com.networknt.schema.JsonSchema schema, JsonNode payload, Fields node) {
        try {
            return schema.validate(payload);
        } catch (NumberFormatException e) {
            String payloadText = node.payloadText();
            if (payloadText == null) {
                throw new InvalidEventException("payload", "type", "payload holds a number beyond the range of a double (about ±1.8e308)");
            }
            return schema.validate(tree(payloadText, true));
        }
    }

    /** A payload text the parser has read once already (well formed, no field given twice) as a tree. */
    private JsonNode tree(String payloadText, boolean exactDecimals) {
        try {
            return exactDecimals ? decimals.readTree(payloadText) : strict.readTree(payloadText);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("payload read once already is not JSON: " + e.getMessage(), e);
        }
    }

    /**
     * {@link #compact(String)} of a payload in UTF-8, {@code utf8[from, to)}, as a new array: the bytes of a character
     * beyond ASCII are never a quote, a backslash or whitespace, so the same walk serves; strings are skipped to their
     * closing quote (a backslash skips the byte after it), what lies between them is copied without its whitespace.
     */
    static byte[] compact(byte[] utf8, int from, int to) {
        byte[] out = null;
        int o = 0;
        int copied = from; // utf8[copied, i) is still to be copied into out
        int i = from;
        while (i < to) {
            byte c = utf8[i];
            if (c == '"') {
                i++;
                while (i < to && utf8[i] != '"') {
                    i += utf8[i] == '\\' ? 2 : 1;
                }
                if (i >= to) {
                    return Arrays.copyOfRange(utf8, from, to); // not valid JSON: the parser has refused it already
                }
                i++;
            } else if (c == ' ' || c == '\n' || c == '\r' || c == '\t') {
                if (out == null) {
                    out = new byte[to - from];
                }
                System.arraycopy(utf8, copied, out, o, i - copied);
                o += i - copied;
                copied = ++i;
            } else {
                i++;
            }
        }
        if (out == null) {
            return Arrays.copyOfRange(utf8, from, to);
        }
        System.arraycopy(utf8, copied, out, o, to - copied);
        return Arrays.copyOf(out, o + to - copied);
    }

    private static String requiredText(Fields node, String field, IdRule pattern, String patternText) {
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
        if (pattern != null && !pattern.matches(s)) {
            throw new InvalidEventException(field, "pattern", field + " must be " + patternText);
        }
        return s;
    }

    private static String optionalText(Fields node, String field) {
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
        try (JsonParser p = strict.createParser(envelope)) {
            if (p.nextToken() != JsonToken.START_OBJECT) {
                throw new IllegalStateException("stored envelope is not a JSON object");
            }
            return build(readEnvelope(p, envelope, null, false), false);
        } catch (IOException e) {
            throw new IllegalStateException("stored envelope is not JSON: " + e.getMessage(), e);
        }
    }
}
