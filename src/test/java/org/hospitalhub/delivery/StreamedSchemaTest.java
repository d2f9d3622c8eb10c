package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.SpecVersion;

/**
 * The streamed check never says "valid" where the JSON Schema library says "invalid", and says "valid" for nearly
 * everything the library finds valid: generated payloads (values next to every length, count and numeric bound, strings
 * with characters outside the BMP and lone surrogates, wrong types, missing and extra fields, nesting) against the
 * shipped schemas and against schemas made for each keyword. Also: which schemas it compiles, and repeats refused at
 * any depth.
 */
class StreamedSchemaTest {

    private static final String DRAFT = "\"$schema\":\"https://json-schema.org/draft/2020-12/schema\"";
    private final ObjectMapper mapper = new ObjectMapper();
    private final JsonSchemaFactory ours = NumericBounds.factory();
    private final JsonSchemaFactory library = JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012);

    private static final List<String> SCHEMAS = List.of(
            "{" + DRAFT + ",\"type\":\"object\",\"required\":[\"a\",\"b\"],\"properties\":{"
                    + "\"a\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":3},"
                    + "\"b\":{\"type\":\"number\",\"minimum\":0,\"maximum\":100},"
                    + "\"c\":{\"type\":\"integer\",\"exclusiveMinimum\":-5,\"exclusiveMaximum\":5},"
                    + "\"d\":{\"type\":[\"string\",\"null\"],\"enum\":[\"x\",\"yy\",\"中\"]},"
                    + "\"e\":{\"type\":\"array\",\"minItems\":1,\"maxItems\":3,\"items\":{\"type\":\"object\","
                    + "\"required\":[\"k\"],\"properties\":{\"k\":{\"type\":\"string\",\"minLength\":1},\"q\":{\"type\":\"number\",\"exclusiveMinimum\":0}}}}}}",
            "{\"type\":\"object\",\"additionalProperties\":false,\"required\":[\"a\"],\"properties\":{"
                    + "\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"},\"c\":{\"type\":[\"integer\",\"string\"],\"maxLength\":1,\"minimum\":1},"
                    + "\"d\":true,\"e\":{\"items\":{\"type\":\"integer\"},\"maxItems\":2}}}",
            "{\"required\":[\"z\"],\"properties\":{\"a\":{\"minLength\":1,\"maximum\":9007199254740992},\"b\":{\"minimum\":1,\"exclusiveMinimum\":1},"
                    + "\"c\":{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\"}},\"required\":[\"a\"]},"
                    + "\"d\":{\"type\":\"number\",\"exclusiveMaximum\":-1,\"maximum\":5},\"e\":{\"type\":\"array\"}}}");

    @Test
    void compilesTheKeywordsItKnowsAndNothingElse() throws Exception {
        for (String s : SCHEMAS) {
            assertNotNull(StreamedSchema.compile(mapper.readTree(s)), s);
        }
        for (String s : List.of("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"pattern\":\"^a\"}}}",
                "{\"$schema\":\"http://json-schema.org/draft-07/schema#\",\"type\":\"object\"}",
                "{\"properties\":{\"a\":{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\"}}}",
                "{\"properties\":{\"a\":{\"$ref\":\"#/$defs/x\"}},\"$defs\":{\"x\":{}}}",
                "{\"properties\":{\"a\":{\"minimum\":0.5}}}", "{\"properties\":{\"a\":{\"maximum\":9007199254740993}}}",
                "{\"properties\":{\"a\":{\"minLength\":1.5}}}", "{\"properties\":{\"a\":{\"enum\":[1,\"a\"]}}}",
                "{\"properties\":{\"a\":{\"format\":\"date-time\"}}}", "{\"properties\":{\"a\":false}}",
                "{\"additionalProperties\":{\"type\":\"string\"}}", "{\"items\":[{\"type\":\"string\"}]}",
                "{\"type\":\"decimal\"}", "{\"oneOf\":[{\"type\":\"string\"}]}", "{\"properties\":{\"a\":{\"const\":1}}}")) {
            assertNull(StreamedSchema.compile(mapper.readTree(s)), s);
        }
        int compiled = 0;
        List<String> types = shippedTypes();
        for (String type : types) {
            JsonNode schema = shipped(type);
            boolean usesPattern = schema.toString().contains("\"pattern\"");
            assertEquals(!usesPattern, StreamedSchema.compile(schema) != null, type);
            compiled += usesPattern ? 0 : 1;
        }
        assertTrue(compiled >= types.size() - 2, "the shipped schemas are checked as they are read: " + compiled);
    }

    @Test
    void neverPassesWhatTheLibraryRefusesOnSchemasMadeForEachKeyword() throws Exception {
        Random random = new Random(11);
        for (String s : SCHEMAS) {
            compare(s, mapper.readTree(s), random, 6000);
        }
    }

    @Test
    void neverPassesWhatTheLibraryRefusesOnTheShippedSchemas() throws Exception {
        Random random = new Random(5);
        for (String type : shippedTypes()) {
            JsonNode schema = shipped(type);
            if (StreamedSchema.compile(schema) != null) {
                compare(type, schema, random, 1500);
            }
        }
    }

    /** Generated payloads, half built from the schema's own field names; the verdicts compared. */
    private void compare(String name, JsonNode schemaNode, Random random, int n) throws Exception {
        StreamedSchema quick = StreamedSchema.compile(schemaNode);
        JsonSchema a = ours.getSchema(schemaNode);
        JsonSchema b = library.getSchema(schemaNode);
        List<String> fields = new ArrayList<>();
        schemaNode.findParents("properties").forEach(p -> p.get("properties").fieldNames().forEachRemaining(fields::add));
        fields.add("other");
        int valid = 0;
        int passed = 0;
        for (int i = 0; i < n; i++) {
            clean = random.nextBoolean();
            String json = object(random, fields, schemaNode, 0);
            boolean libraryValid = valid(a, json);
            assertEquals(libraryValid, valid(b, json), json);
            boolean streamed = streamed(quick, json);
            if (streamed) {
                assertTrue(libraryValid, name + ": passed what the library refuses: " + json);
                passed++;
            }
            valid += libraryValid ? 1 : 0;
            if (libraryValid && !streamed && System.getenv("DEBUG_STREAMED") != null) System.out.println("UNSURE " + json);
        }
        assertTrue(valid >= n / 20, name + ": too few valid payloads generated to compare: " + valid + " of " + n);
        assertTrue(passed >= valid * 8 / 10, name + ": the streamed check left " + (valid - passed) + " of " + valid
                + " valid payloads to the library");
    }

    /** The library's verdict as the event parser asks for it (a number beyond a double's range: exact decimals). */
    private boolean valid(JsonSchema schema, String json) throws Exception {
        try {
            return schema.validate(mapper.readTree(json)).isEmpty();
        } catch (NumberFormatException e) {
            return schema.validate(mapper.reader().with(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS).readTree(json)).isEmpty();
        }
    }

    private boolean streamed(StreamedSchema quick, String json) throws Exception {
        try (JsonParser p = mapper.createParser(json.getBytes(StandardCharsets.UTF_8))) {
            assertEquals(JsonToken.START_OBJECT, p.nextToken());
            boolean bytes = quick.check(p);
            assertEquals(JsonToken.END_OBJECT, p.currentToken(), "the check stops on the payload's last token");
            assertNull(p.nextToken(), json);
            try (JsonParser text = mapper.createParser(json)) {
                text.nextToken();
                assertEquals(bytes, quick.check(text), "same verdict from bytes and from text: " + json);
            }
            return bytes;
        }
    }

    /** Whether the payload being generated keeps to its schema (it may still break it where the schema is strict). */
    private boolean clean;

    /** An object whose fields are mostly the schema's (sometimes a valid-looking value, sometimes any value). */
    private String object(Random r, List<String> fields, JsonNode schema, int depth) {
        StringBuilder o = new StringBuilder("{");
        int count = r.nextInt(8);
        List<String> used = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            List<String> own = schema == null ? List.of() : iterable(schema.path("properties").fieldNames());
            String f = !own.isEmpty() && (clean || r.nextInt(5) > 0) ? own.get(r.nextInt(own.size())) : fields.get(r.nextInt(fields.size()));
            if (used.contains(f)) {
                continue;
            }
            used.add(f);
            JsonNode fieldSchema = schema == null ? null : schema.path("properties").get(f);
            o.append(o.length() > 1 ? "," : "").append('"').append(f).append("\":")
                    .append((clean || r.nextInt(3) > 0) && fieldSchema != null ? fitting(r, fields, fieldSchema, depth) : value(r, fields, depth));
        }
        // the required fields, most of the time
        if (schema != null && (clean || r.nextInt(8) > 0)) {
            for (JsonNode req : schema.path("required")) {
                if (!used.contains(req.textValue())) {
                    JsonNode fieldSchema = schema.path("properties").get(req.textValue());
                    o.append(o.length() > 1 ? "," : "").append('"').append(req.textValue()).append("\":")
                            .append(fieldSchema != null && (clean || r.nextInt(8) > 0) ? fitting(r, fields, fieldSchema, depth) : value(r, fields, depth));
                }
            }
        }
        return o.append('}').toString();
    }

    private static final String[] NUMBERS = {"0", "-0", "0.0", "1", "1.0", "-1", "-1.0", "2", "5", "5.0", "4.999999999999999",
        "-5", "-4", "-5.000000000000001", "4", "99", "100", "100.0", "100.00000000000001", "99.99999999999999", "101",
        "0.5", "1e2", "1E-2", "-1e-300", "1e400", "9007199254740992", "9007199254740993", "9007199254740992.5",
        "123456789012345678901234567890", "-123456789012345678901234567890", "3.14159", "2147483648", "1.5e1"};
    private static final String[] CHARS = {"a", "b", "中", "x", "😀", "\\ud800", "\\u0041", "\\\"", " ", "é", "\\n"};

    /** A value of the kind the field's schema asks for: mostly within its bounds, sometimes next to or beyond them. */
    private String fitting(Random r, List<String> fields, JsonNode s, int depth) {
        String type = s.path("type").isArray() ? s.path("type").get(r.nextInt(s.path("type").size())).asText() : s.path("type").asText("");
        if (s.has("enum") && (clean || r.nextInt(4) > 0)) {
            return mapper.valueToTree(s.get("enum").get(r.nextInt(s.get("enum").size()))).toString();
        }
        boolean within = clean || r.nextInt(3) > 0;
        return switch (type) {
            case "string" -> {
                int min = s.path("minLength").asInt(0);
                int max = s.path("maxLength").asInt(min + 4);
                yield within ? string(r, min, max) : string(r, 0, max + 1);
            }
            case "number", "integer" -> {
                if (!within) {
                    yield NUMBERS[r.nextInt(NUMBERS.length)];
                }
                List<String> inside = new ArrayList<>();
                for (String n : NUMBERS) {
                    java.math.BigDecimal v = new java.math.BigDecimal(n);
                    boolean ok = (!s.has("minimum") || v.compareTo(s.get("minimum").decimalValue()) >= 0)
                            && (!s.has("maximum") || v.compareTo(s.get("maximum").decimalValue()) <= 0)
                            && (!s.has("exclusiveMinimum") || v.compareTo(s.get("exclusiveMinimum").decimalValue()) > 0)
                            && (!s.has("exclusiveMaximum") || v.compareTo(s.get("exclusiveMaximum").decimalValue()) < 0);
                    boolean fraction = n.contains(".") || n.toLowerCase().contains("e");
                    // a clean payload leaves out the values the streamed check rightly leaves to the library: a big
                    // integer against a bound, a fraction that may lie on a whole-number bound
                    boolean edge = !fraction && v.abs().compareTo(java.math.BigDecimal.valueOf(Long.MAX_VALUE)) > 0
                            || fraction && v.stripTrailingZeros().scale() <= 0;
                    if (ok && (type.equals("number") || !fraction) && !(clean && edge)) {
                        inside.add(n);
                    }
                }
                yield inside.isEmpty() ? NUMBERS[r.nextInt(NUMBERS.length)] : inside.get(r.nextInt(inside.size()));
            }
            case "boolean" -> r.nextBoolean() ? "true" : "false";
            case "null" -> "null";
            case "object" -> depth < 3 ? object(r, fields, s, depth + 1) : "{}";
            case "array" -> {
                int min = s.path("minItems").asInt(0);
                int max = Math.min(s.path("maxItems").asInt(min + 3), min + 4);
                int n = within ? min + r.nextInt(max - min + 1) : r.nextInt(max + 2);
                StringBuilder a = new StringBuilder("[");
                for (int i = 0; i < n; i++) {
                    a.append(i > 0 ? "," : "").append(s.has("items") ? fitting(r, fields, s.get("items"), depth + 1) : value(r, fields, depth + 1));
                }
                yield a.append(']').toString();
            }
            default -> value(r, fields, depth);
        };
    }

    private String value(Random r, List<String> fields, int depth) {
        return switch (r.nextInt(depth < 3 ? 8 : 6)) {
            case 0, 1 -> string(r, 5);
            case 2, 3 -> NUMBERS[r.nextInt(NUMBERS.length)];
            case 4 -> r.nextBoolean() ? "true" : "false";
            case 5 -> "null";
            case 6 -> object(r, fields, null, depth + 1);
            default -> "[" + value(r, fields, depth + 1) + "," + value(r, fields, depth + 1) + "]";
        };
    }

    private static String string(Random r, int max) {
        return string(r, 0, max);
    }

    /** A JSON string of min to max characters (code points: a character outside the BMP and a lone surrogate count one). */
    private static String string(Random r, int min, int max) {
        StringBuilder s = new StringBuilder("\"");
        int n = min + r.nextInt(max - min + 1);
        for (int i = 0; i < n; i++) {
            s.append(CHARS[r.nextInt(CHARS.length)]);
        }
        return s.append('"').toString();
    }

    @Test
    void lengthsAreCodePointsAsTheLibraryCountsThem() throws Exception {
        String schema = "{\"properties\":{\"a\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":2}}}";
        StreamedSchema quick = StreamedSchema.compile(mapper.readTree(schema));
        JsonSchema lib = library.getSchema(mapper.readTree(schema));
        for (String v : List.of("ab", "中文", "😀😀", "😀", "a😀", "😀😀😀", "a", "abc", "\\ud800\\ud800", "\\ud800")) {
            String json = "{\"a\":\"" + v + "\"}";
            assertEquals(valid(lib, json), streamed(quick, json), json);
        }
    }

    @Test
    void aFieldGivenTwiceIsRefusedAtAnyDepthWhateverTheVerdict() throws Exception {
        StreamedSchema quick = StreamedSchema.compile(mapper.readTree(SCHEMAS.get(0)));
        for (String json : List.of("{\"a\":\"ab\",\"a\":\"cd\",\"b\":1}", "{\"a\":\"ab\",\"b\":1,\"x\":1,\"x\":2}",
                "{\"a\":\"ab\",\"b\":1,\"e\":[{\"k\":\"v\",\"k\":\"w\"}]}", "{\"a\":1,\"b\":\"wrong\",\"y\":{\"z\":[{\"q\":1,\"q\":1}]}}")) {
            var e = assertThrows(JsonParseException.class, () -> streamed(quick, json), json);
            assertTrue(e.getOriginalMessage().startsWith("Duplicate field '"), e.getOriginalMessage());
        }
        assertFalse(streamed(quick, "{\"a\":\"ab\"}"), "required b missing");
        assertTrue(streamed(quick, "{\"a\":\"ab\",\"b\":1,\"e\":[{\"k\":\"v\",\"q\":0.5}],\"x\":{\"x\":{}}}"));
    }

    private static <T> List<T> iterable(java.util.Iterator<T> it) {
        List<T> out = new ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }

    private List<String> shippedTypes() throws Exception {
        try (InputStream in = getClass().getClassLoader().getResourceAsStream("schemas/index.txt")) {
            return new String(in.readAllBytes(), StandardCharsets.UTF_8).lines().map(String::strip)
                    .filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
        }
    }

    private JsonNode shipped(String type) throws Exception {
        try (InputStream in = getClass().getClassLoader().getResourceAsStream("schemas/" + type + ".json")) {
            return mapper.readTree(in);
        }
    }
}
