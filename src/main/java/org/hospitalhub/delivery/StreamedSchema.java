package org.hospitalhub.delivery;

import java.io.IOException;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.Map;
import java.util.Set;

import com.fasterxml.jackson.core.JsonParseException;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.databind.JsonNode;

/**
 * A payload's JSON Schema checked as the parser reads the payload, without building its tree: a payload that is
 * certainly valid is passed at once; for any other ("unsure") the caller builds the tree and asks the JSON Schema
 * library, which gives the verdict and the error message it always gave. In a Kafka flow the payload's tree and the
 * library's walk over it were a quarter of the hub's CPU.
 * <p>
 * Only schemas made of these draft 2020-12 keywords are compiled: {@code type}, {@code properties}, {@code required},
 * {@code additionalProperties} (true or false), {@code items} (one schema), {@code minItems}, {@code maxItems},
 * {@code minLength}, {@code maxLength} (in code points, as the library counts), {@code enum} (of strings),
 * {@code minimum}, {@code exclusiveMinimum}, {@code maximum}, {@code exclusiveMaximum} (whole numbers a double holds
 * exactly), the annotations ({@code title}, {@code description}, ...) and {@code $schema} naming 2020-12 at the root.
 * A schema with anything else ({@code pattern}, {@code $ref}, {@code format}, {@code oneOf} ...) is not compiled
 * ({@link #compile} gives null) and is checked by the library alone. The quick answer is yes only where the
 * specification leaves no doubt: an integer value is compared exactly, a fractional one only when it is strictly
 * inside a bound (on the bound, the library decides from the decimal text; see {@link NumericBounds}); a fractional
 * value for an {@code integer} type, big integers against a bound, and anything else out of the ordinary are "unsure".
 * <p>
 * The walk also refuses a field given twice in any object of the payload, with the error the tree reader gave
 * ({@code Duplicate field 'name'}), so that the caller's tree is never needed for that either. {@code StreamedSchemaTest}
 * compares the verdicts with the library's on generated payloads.
 */
final class StreamedSchema {

    private static final String DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema";
    private static final Set<String> ANNOTATIONS = Set.of("title", "description", "$comment", "examples", "default",
            "deprecated", "readOnly", "writeOnly");
    private static final long EXACT = 1L << 53;

    private static final int OBJECT = 1;
    private static final int ARRAY = 2;
    private static final int STRING = 4;
    private static final int NUMBER = 8;
    private static final int INTEGER = 16;
    private static final int BOOLEAN = 32;
    private static final int NULL = 64;
    private static final Map<String, Integer> TYPES = Map.of("object", OBJECT, "array", ARRAY, "string", STRING,
            "number", NUMBER | INTEGER, "integer", INTEGER, "boolean", BOOLEAN, "null", NULL);

    /** Any value: only its objects' fields are checked for repeats. */
    private static final StreamedSchema ANY = new StreamedSchema();

    private int types = OBJECT | ARRAY | STRING | NUMBER | INTEGER | BOOLEAN | NULL;
    private int minLength;
    private int maxLength = -1;
    private Set<String> enumStrings;
    private boolean bounded;
    private long minimum = Long.MIN_VALUE;
    private boolean minimumExclusive;
    private long maximum = Long.MAX_VALUE;
    private boolean maximumExclusive;
    /**
     * Names of properties and required fields (interned, as the parser's field names are): the place of each is its
     * place in {@link #properties} and its bit in masks. Found by a scan (by identity, then by value): a payload object
     * has a handful of fields, and hashing each name read cost more.
     */
    private String[] names;
    private StreamedSchema[] properties;
    private long declared;
    private long required;
    private boolean closed;
    private StreamedSchema items;
    private int minItems;
    private int maxItems = -1;

    private StreamedSchema() {
    }

    private static final class Unsupported extends Exception {
        Unsupported() {
            super(null, null, false, false);
        }
    }

    /** The schema compiled, or null when it uses a keyword (or a form of one) this check does not know. */
    static StreamedSchema compile(JsonNode schema) {
        try {
            return node(schema, true);
        } catch (Unsupported e) {
            return null;
        }
    }

    private static StreamedSchema node(JsonNode s, boolean root) throws Unsupported {
        if (s.isBoolean() && s.booleanValue()) {
            return ANY;
        }
        if (!s.isObject()) {
            throw new Unsupported();
        }
        StreamedSchema c = new StreamedSchema();
        JsonNode properties = null;
        JsonNode required = null;
        for (Iterator<Map.Entry<String, JsonNode>> it = s.fields(); it.hasNext();) {
            var field = it.next();
            String k = field.getKey();
            JsonNode v = field.getValue();
            if (ANNOTATIONS.contains(k)) {
                continue;
            }
            switch (k) {
                case "$schema" -> {
                    if (!root || !DRAFT_2020_12.equals(v.textValue())) {
                        throw new Unsupported();
                    }
                }
                case "type" -> c.types = types(v);
                case "minLength" -> c.minLength = count(v);
                case "maxLength" -> c.maxLength = count(v);
                case "minItems" -> c.minItems = count(v);
                case "maxItems" -> c.maxItems = count(v);
                case "minimum" -> c.minimum = Math.max(c.minimum, bound(v));
                case "maximum" -> c.maximum = Math.min(c.maximum, bound(v));
                case "exclusiveMinimum", "exclusiveMaximum" -> {
                    // kept apart from the inclusive bound: with both, the stricter one decides
                    long b = bound(v);
                    if (k.equals("exclusiveMinimum")) {
                        if (b >= c.minimum) {
                            c.minimum = b;
                            c.minimumExclusive = true;
                        }
                    } else if (b <= c.maximum) {
                        c.maximum = b;
                        c.maximumExclusive = true;
                    }
                }
                case "enum" -> {
                    if (!v.isArray() || v.isEmpty()) {
                        throw new Unsupported();
                    }
                    c.enumStrings = new HashSet<>();
                    for (JsonNode e : v) {
                        if (!e.isTextual()) {
                            throw new Unsupported();
                        }
                        c.enumStrings.add(e.textValue());
                    }
                }
                case "properties" -> {
                    if (!v.isObject()) {
                        throw new Unsupported();
                    }
                    properties = v;
                }
                case "required" -> {
                    if (!v.isArray()) {
                        throw new Unsupported();
                    }
                    required = v;
                }
                case "additionalProperties" -> {
                    if (!v.isBoolean()) {
                        throw new Unsupported();
                    }
                    c.closed = !v.booleanValue();
                }
                case "items" -> c.items = node(v, false);
                default -> throw new Unsupported();
            }
        }
        c.bounded = c.minimum != Long.MIN_VALUE || c.maximum != Long.MAX_VALUE;
        if (properties != null || required != null) {
            c.names = new String[0];
            Map<Integer, StreamedSchema> byPlace = new HashMap<>();
            if (properties != null) {
                for (Iterator<Map.Entry<String, JsonNode>> it = properties.fields(); it.hasNext();) {
                    var p = it.next();
                    int at = c.place(p.getKey());
                    byPlace.put(at, node(p.getValue(), false));
                    c.declared |= 1L << at;
                }
            }
            if (required != null) {
                for (JsonNode r : required) {
                    if (!r.isTextual()) {
                        throw new Unsupported();
                    }
                    c.required |= 1L << c.place(r.textValue());
                }
            }
            c.properties = new StreamedSchema[c.names.length];
            for (int i = 0; i < c.properties.length; i++) {
                c.properties[i] = byPlace.getOrDefault(i, ANY);
            }
        }
        return c;
    }

    private int place(String name) throws Unsupported {
        int at = find(name);
        if (at < 0) {
            if (names.length == Long.SIZE) {
                throw new Unsupported(); // more names than bits in a mask
            }
            at = names.length;
            names = Arrays.copyOf(names, at + 1);
            names[at] = name.intern();
        }
        return at;
    }

    /** The name's place in {@link #names}, or -1. */
    private int find(String name) {
        String[] ns = names;
        for (int i = 0; i < ns.length; i++) {
            if (ns[i] == name) {
                return i;
            }
        }
        for (int i = 0; i < ns.length; i++) {
            if (ns[i].equals(name)) {
                return i; // a parser that does not intern its names
            }
        }
        return -1;
    }

    private static int types(JsonNode v) throws Unsupported {
        if (v.isTextual()) {
            return type(v.textValue());
        }
        if (!v.isArray() || v.isEmpty()) {
            throw new Unsupported();
        }
        int bits = 0;
        for (JsonNode t : v) {
            if (!t.isTextual()) {
                throw new Unsupported();
            }
            bits |= type(t.textValue());
        }
        return bits;
    }

    private static int type(String name) throws Unsupported {
        Integer bits = TYPES.get(name);
        if (bits == null) {
            throw new Unsupported();
        }
        return bits;
    }

    private static int count(JsonNode v) throws Unsupported {
        if (!v.isIntegralNumber() || !v.canConvertToInt() || v.intValue() < 0) {
            throw new Unsupported();
        }
        return v.intValue();
    }

    private static long bound(JsonNode v) throws Unsupported {
        if (!v.isIntegralNumber() || !v.canConvertToLong() || Math.abs(v.longValue()) > EXACT) {
            throw new Unsupported(); // fractional or huge: the library compares it
        }
        return v.longValue();
    }

    /**
     * Reads the value at the parser's current token through to its last token and says whether it is certainly valid.
     * Throws, as the tree reader did, for a field given twice in an object, and for JSON that is not well formed.
     */
    boolean check(JsonParser p) throws IOException {
        JsonToken t = p.currentToken();
        if (t == null) {
            throw new JsonParseException(p, "Unexpected end-of-input");
        }
        return switch (t) {
            case START_OBJECT -> object(p);
            case START_ARRAY -> array(p);
            case VALUE_STRING -> string(p);
            case VALUE_NUMBER_INT -> integer(p);
            case VALUE_NUMBER_FLOAT -> fraction(p);
            case VALUE_TRUE, VALUE_FALSE -> (types & BOOLEAN) != 0 && enumStrings == null;
            case VALUE_NULL -> (types & NULL) != 0 && enumStrings == null;
            default -> false;
        };
    }

    private boolean object(JsonParser p) throws IOException {
        boolean ok = (types & OBJECT) != 0 && enumStrings == null;
        long seen = 0;
        Set<String> others = null;
        JsonToken t;
        while ((t = p.nextToken()) == JsonToken.FIELD_NAME) {
            String name = p.currentName();
            int at = names == null ? -1 : find(name);
            StreamedSchema value = ANY;
            if (at >= 0) {
                long bit = 1L << at;
                if ((seen & bit) != 0) {
                    throw duplicate(p, name);
                }
                seen |= bit;
                value = properties[at];
                ok &= !closed || (declared & bit) != 0;
            } else {
                if (others == null) {
                    others = new HashSet<>();
                }
                if (!others.add(name)) {
                    throw duplicate(p, name);
                }
                ok &= !closed;
            }
            p.nextToken();
            ok &= value.check(p); // always walked: a repeat deeper in is refused whatever the verdict so far
        }
        if (t != JsonToken.END_OBJECT) {
            throw new JsonParseException(p, "Unexpected end-of-input in an object");
        }
        return ok && (seen & required) == required;
    }

    private boolean array(JsonParser p) throws IOException {
        boolean ok = (types & ARRAY) != 0 && enumStrings == null;
        StreamedSchema each = items == null ? ANY : items;
        int n = 0;
        JsonToken t;
        while ((t = p.nextToken()) != JsonToken.END_ARRAY) {
            if (t == null) {
                throw new JsonParseException(p, "Unexpected end-of-input in an array");
            }
            ok &= each.check(p);
            n++;
        }
        return ok && n >= minItems && (maxItems < 0 || n <= maxItems);
    }

    private boolean string(JsonParser p) throws IOException {
        if ((types & STRING) == 0) {
            return false;
        }
        if (minLength > 0 || maxLength >= 0) {
            int chars = p.getTextLength();
            // code points: at most the chars, at least half of them; counted only when that does not settle it
            boolean sure = chars <= maxLength || maxLength < 0;
            sure &= (chars + 1) / 2 >= minLength;
            if (!sure) {
                int points = Character.codePointCount(p.getTextCharacters(), p.getTextOffset(), chars);
                if (points < minLength || maxLength >= 0 && points > maxLength) {
                    return false;
                }
            }
        }
        return enumStrings == null || enumStrings.contains(p.getText());
    }

    private boolean integer(JsonParser p) throws IOException {
        if ((types & INTEGER) == 0 || enumStrings != null) {
            return false;
        }
        if (!bounded) {
            return true;
        }
        JsonParser.NumberType nt = p.getNumberType();
        if (nt != JsonParser.NumberType.INT && nt != JsonParser.NumberType.LONG) {
            return false; // a big integer against a bound: the library compares it
        }
        long v = p.getLongValue();
        return (minimumExclusive ? v > minimum : v >= minimum) && (maximumExclusive ? v < maximum : v <= maximum);
    }

    private boolean fraction(JsonParser p) throws IOException {
        if ((types & NUMBER) == 0 || enumStrings != null) {
            return false; // a fraction where only an integer is allowed: the library judges 1.0 and the rest
        }
        if (!bounded) {
            return true;
        }
        double d = p.getDoubleValue();
        // strictly inside: on a bound the double may stand for a decimal text on either side of it
        return (minimum == Long.MIN_VALUE || d > minimum) && (maximum == Long.MAX_VALUE || d < maximum);
    }

    private static JsonParseException duplicate(JsonParser p, String name) {
        return new JsonParseException(p, "Duplicate field '" + name + "'");
    }
}
