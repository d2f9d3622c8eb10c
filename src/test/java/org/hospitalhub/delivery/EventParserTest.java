package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Optional;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

/**
 * The envelope parser without the hub: the payload text is the sender's, the canonical envelope reads back as the same
 * event, the plain date-time reader agrees with {@link OffsetDateTime#parse}, and errors come in the documented order.
 */
class EventParserTest {

    private final ObjectMapper mapper = new ObjectMapper();
    private final EventParser parser;

    EventParserTest() throws Exception {
        parser = new EventParser(new SchemaRegistry(mapper, Optional.empty()));
    }

    private static String charge(String id, String payload) {
        return """
                {"eventId":"%s","type":"his.charge.refunded","source":"his","hospital":"test","key":"P1",
                 "occurredAt":"2026-11-22T08:00:00+08:00","payload":%s}""".formatted(id, payload);
    }

    @Test
    void payloadTextIsThePayloadEvenWhenAHeaderStringLooksLikeIt() throws Exception {
        String tricky = "P1\\\",\\\"payload\\\":{\\\"x\\\":1}\\\\";
        Event e = parser.parseOne("""
                {"eventId":"e-1","type":"his.charge.refunded","source":"his","hospital":"test","key":"%s",
                 "occurredAt":"2026-11-22T08:00:00+08:00",
                 "payload":{"chargeId":"C-1","patientId":"P1","amount":1.50,"reason":"退费 \\"quoted\\", \\\\ back"}}
                """.formatted(tricky));
        assertEquals("P1\",\"payload\":{\"x\":1}\\", e.key());
        // as sent, whitespace outside strings removed, the amount's digits kept
        assertEquals("{\"chargeId\":\"C-1\",\"patientId\":\"P1\",\"amount\":1.50,\"reason\":\"退费 \\\"quoted\\\", \\\\ back\"}",
                e.payloadJson());
        assertEquals(mapper.readTree(e.payloadJson()), e.payload());
        // the canonical envelope reads back as the same event
        Event back = parser.fromStored(e.envelope());
        assertEquals(e.envelope(), back.envelope());
        assertEquals(e.key(), back.key());
        assertEquals(e.payloadJson(), back.payloadJson());
        assertEquals(mapper.readTree(e.envelope()).get("payload"), e.payload());
    }

    @Test
    void prettyPrintedPayloadIsStoredCompactAndLargeAmountsAreNotRounded() throws Exception {
        String payload = """
                {
                  "chargeId" : "C-2",\t"patientId":"P 1",
                  "amount" : 12345678901234567.89,
                  "reason" : "wrong item",
                  "items" : [ {"code":"A 1"} , {"code":"B\\tC"} ]
                }""";
        Event e = parser.parseOne(charge("e-2", payload));
        assertEquals("{\"chargeId\":\"C-2\",\"patientId\":\"P 1\",\"amount\":12345678901234567.89,"
                + "\"reason\":\"wrong item\",\"items\":[{\"code\":\"A 1\"},{\"code\":\"B\\tC\"}]}", e.payloadJson());
        JsonNode envelope = mapper.readTree(e.envelope());
        assertEquals(List.of("eventId", "type", "source", "hospital", "key", "occurredAt", "payload"),
                iterable(envelope.fieldNames()));
        assertEquals("2026-11-22T08:00:00+08:00", envelope.get("occurredAt").asText());
    }

    @Test
    void anArrayIsReadWholeBeforeAnyEnvelopeIsJudged() {
        // element 0 is invalid, but the body is malformed further on: the JSON error is the one reported
        var bad = assertThrows(InvalidEventException.class, () -> parser.parseBody("[{\"eventId\":\"x\"}, {\"a\":1,}]"));
        assertEquals("json", bad.rule());
        var second = assertThrows(InvalidEventException.class,
                () -> parser.parseBody("[" + charge("ok-1", "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}") + ", 7]"));
        assertEquals("[1]", second.field());
        var trailing = assertThrows(InvalidEventException.class,
                () -> parser.parseBody(charge("t-1", "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}") + " {}"));
        assertEquals("json", trailing.rule());
        var duplicate = assertThrows(InvalidEventException.class,
                () -> parser.parseBody(charge("d-1", "{\"chargeId\":\"C\",\"chargeId\":\"D\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}")));
        assertEquals("json", duplicate.rule());
        var unknown = assertThrows(InvalidEventException.class, () -> parser.parseBody("{\"eventId\":\"u\",\"extra\":{\"a\":[1]}}"));
        assertEquals("extra", unknown.field());
        assertEquals("minItems", assertThrows(InvalidEventException.class, () -> parser.parseBody("[ ]")).rule());
        assertEquals("type", assertThrows(InvalidEventException.class, () -> parser.parseBody("42")).rule());
    }

    @Test
    void aFieldGivenTwiceIsMalformedJsonWhereverItStands() {
        String ok = "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}";
        String[][] cases = {
            // the payload's own field; a field of an object inside an array of the payload; deeper still
            {charge("d-1", ok.replace("{\"chargeId\":\"C\",", "{\"chargeId\":\"C\",\"chargeId\":\"D\",")), "chargeId"},
            {charge("d-2", ok.replace("}", ",\"items\":[{\"code\":\"A\"},{\"code\":\"B\",\"name\":\"n\",\"code\":\"C\"}]}")), "code"},
            {charge("d-3", ok.replace("}", ",\"extra\":{\"a\":{\"b\":1,\"b\":2}}}")), "b"},
            // an envelope field, before and after the payload; an unknown envelope field; a duplicate inside a header
            // value that is not a string (refused for its type too, but the JSON is judged first)
            {charge("d-4", ok).replace("\"source\":\"his\",", "\"source\":\"his\",\"source\":\"his\","), "source"},
            {charge("d-5", ok).replace("}\n", "}").replaceFirst("}$", ",\"eventId\":\"d-5\"}"), "eventId"},
            {charge("d-6", ok).replace("\"key\":\"P1\",", "\"x\":1,\"key\":\"P1\",\"x\":2,"), "x"},
            {charge("d-7", ok).replace("\"key\":\"P1\"", "\"key\":{\"k\":1,\"k\":1}"), "k"},
        };
        for (String[] c : cases) {
            for (var read : List.<java.util.function.Supplier<Event>>of(() -> parser.parseOne(c[0]),
                    () -> parser.parseOne(c[0].getBytes(java.nio.charset.StandardCharsets.UTF_8)),
                    () -> parser.parseBody("[" + c[0] + "]").get(0))) {
                var e = assertThrows(InvalidEventException.class, read::get, c[0]);
                assertEquals("json", e.rule(), e.getMessage());
                assertTrue(e.getMessage().startsWith("malformed JSON at line ") && e.getMessage().endsWith(
                        ": Duplicate field '" + c[1] + "'"), e.getMessage());
            }
        }
        // the same documents without the repeat are fine (or, for the unknown field, refused for what it is)
        assertEquals("d-ok", parser.parseOne(charge("d-ok", ok)).eventId());
        var unknown = assertThrows(InvalidEventException.class,
                () -> parser.parseOne(charge("d-6", ok).replace("\"key\":\"P1\",", "\"x\":1,\"key\":\"P1\",")));
        assertEquals("x", unknown.field());
    }

    /**
     * The payload's schema is checked as the payload is read when it allows (StreamedSchema), else on a tree by the
     * library; either way the same events pass and the same messages come out, and a number beyond a double's range is
     * judged by its decimal text instead of breaking the check (it used to escape as a NumberFormatException).
     */
    @Test
    void streamedAndTreeChecksGiveTheSameAnswersAndMessages(@org.junit.jupiter.api.io.TempDir java.nio.file.Path dir) throws Exception {
        String bounds = "{\"type\":\"number\",\"minimum\":0,\"maximum\":100}";
        java.nio.file.Files.writeString(dir.resolve("test.streamed.json"), "{\"type\":\"object\",\"required\":[\"v\"],"
                + "\"properties\":{\"v\":" + bounds + ",\"s\":{\"type\":\"string\",\"maxLength\":2},\"c\":{\"enum\":[\"CNY\"]}}}");
        // the same schema with a keyword the streamed check does not know: the library alone, on the tree
        java.nio.file.Files.writeString(dir.resolve("test.tree.json"), "{\"type\":\"object\",\"required\":[\"v\"],"
                + "\"properties\":{\"v\":" + bounds + ",\"s\":{\"type\":\"string\",\"maxLength\":2,\"pattern\":\"^\"},\"c\":{\"enum\":[\"CNY\"]}}}");
        SchemaRegistry registry = new SchemaRegistry(mapper, Optional.of(dir.toString()));
        assertTrue(registry.streamed("test.streamed") != null && registry.streamed("test.tree") == null);
        EventParser own = new EventParser(registry);
        String[][] cases = {
            {"{\"v\":5,\"s\":\"ab\"}", null},
            {"{\"v\":1e2}", null},
            {"{\"v\":100.0}", null},
            {"{\"v\":-0.0}", null},
            {"{\"v\":1e400}", "payload.v: must have a maximum value of 100 (schema of %s)"},
            {"{\"v\":-1e400}", "payload.v: must have a minimum value of 0 (schema of %s)"},
            {"{\"v\":100.00000000000001}", "payload.v: must have a maximum value of 100 (schema of %s)"},
            {"{\"v\":5,\"s\":\"abc\"}", "payload.s: must be at most 2 characters long (schema of %s)"},
            {"{\"s\":\"a\"}", "payload.v: required property 'v' not found (schema of %s)"},
            {"{\"v\":\"5\"}", "payload.v: string found, number expected (schema of %s)"},
            {"{\"v\":5,\"c\":\"CNY\"}", null},
            {"{\"v\":5,\"c\":1e400}", "payload.c: does not have a value in the enumeration [\"CNY\"] (schema of %s)"},
        };
        for (String type : List.of("test.streamed", "test.tree")) {
            for (String[] c : cases) {
                // the type before the payload (streamed when the schema allows) and after it (always on the tree)
                String before = "{\"eventId\":\"e-1\",\"type\":\"" + type + "\",\"source\":\"his\",\"hospital\":\"h\","
                        + "\"occurredAt\":\"2026-11-22T08:00:00+08:00\",\"payload\":" + c[0] + "}";
                String after = "{\"eventId\":\"e-1\",\"source\":\"his\",\"hospital\":\"h\","
                        + "\"occurredAt\":\"2026-11-22T08:00:00+08:00\",\"payload\":" + c[0] + ",\"type\":\"" + type + "\"}";
                for (String body : List.of(before, after)) {
                    if (c[1] == null) {
                        assertEquals(c[0], own.parseOne(body.getBytes(java.nio.charset.StandardCharsets.UTF_8)).payloadJson(), body);
                        assertEquals(c[0], own.parseOne(body).payloadJson(), body);
                    } else {
                        for (var read : List.<org.junit.jupiter.api.function.Executable>of(() -> own.parseOne(body),
                                () -> own.parseOne(body.getBytes(java.nio.charset.StandardCharsets.UTF_8)))) {
                            var e = assertThrows(InvalidEventException.class, read, body);
                            assertEquals(c[1].formatted(type), e.getMessage(), body);
                        }
                    }
                }
            }
        }
    }

    @Test
    void plainDateTimesAreReadAsOffsetDateTimeParseReadsThem() {
        for (String s : List.of("2026-11-22T08:30:00+08:00", "2026-11-22T08:30:00Z", "2026-11-22T08:30:00.5Z",
                "2026-11-22T08:30:00.123456789-03:30", "2024-02-29T23:59:59+14:00", "0001-01-01T00:00:00-18:00",
                "2026-11-22T08:30:00.000+00:00", "2026-11-22T08:30:00-00:00")) {
            OffsetDateTime fast = org.hospitalhub.relay.client.IsoDateTime.plain(s);
            assertEquals(OffsetDateTime.parse(s), fast, s);
        }
        // not the plain form, or not a valid date-time: left to OffsetDateTime.parse and its verdict
        for (String s : List.of("2026-11-22T08:30+08:00", "2026-11-22t08:30:00Z", "2026-11-22T08:30:00.Z",
                "2026-11-22T08:30:00.1234567890Z", "2026-02-30T08:30:00Z", "2026-11-22T24:00:00Z", "2026-11-22T08:30:60Z",
                "2026-11-22T08:30:00+19:00", "2026-11-22T08:30:00+08:60", "2026-11-22T08:30:00+0800",
                "2026-11-22 08:30:00+08:00", "+2026-11-22T08:30:00Z", "2026-11-22T08:30:00")) {
            assertNull(org.hospitalhub.relay.client.IsoDateTime.plain(s), s);
        }
        assertThrows(DateTimeParseException.class, () -> OffsetDateTime.parse("2026-02-30T08:30:00Z"));
        Event minutes = parser.parseOne(charge("m-1", "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}")
                .replace("2026-11-22T08:00:00+08:00", "2026-11-22T08:00+08:00"));
        assertEquals(OffsetDateTime.parse("2026-11-22T08:00+08:00"), minutes.occurredAt());
        assertEquals("2026-11-22T08:00+08:00", minutes.occurredAtText());
        var invalid = assertThrows(InvalidEventException.class, () -> parser.parseOne(charge("f-1",
                "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":1,\"reason\":\"r\"}").replace("2026-11-22T08:00:00", "2026-02-30T08:00:00")));
        assertEquals("occurredAt", invalid.field());
        assertEquals("format", invalid.rule());
    }

    @Test
    void anEventIsNamedWithoutItsPayloadAndEqualOnlyToItself() {
        String body = charge("n-1", "{\"chargeId\":\"C\",\"patientId\":\"SECRET-PATIENT\",\"amount\":1,\"reason\":\"r\"}");
        Event a = parser.parseOne(body);
        Event b = parser.parseOne(body);
        assertEquals(false, a.toString().contains("SECRET-PATIENT"));
        assertEquals(false, a.equals(b));
        assertSame(a.payload(), a.payload());
    }

    private static <T> List<T> iterable(java.util.Iterator<T> it) {
        List<T> out = new java.util.ArrayList<>();
        it.forEachRemaining(out::add);
        return out;
    }

    /** The plain character-by-character form of {@link EventParser#compact}: the reference for the faster one. */
    private static String compactReference(String json) {
        StringBuilder out = new StringBuilder();
        boolean inString = false;
        for (int i = 0; i < json.length(); i++) {
            char c = json.charAt(i);
            if (inString) {
                out.append(c);
                if (c == '\\') {
                    out.append(json.charAt(++i));
                } else if (c == '"') {
                    inString = false;
                }
            } else if (c == '"') {
                inString = true;
                out.append(c);
            } else if (c != ' ' && c != '\n' && c != '\r' && c != '\t') {
                out.append(c);
            }
        }
        return out.toString();
    }

    @Test
    void aRecordsUtf8BytesReadAsItsTextDoes() throws Exception {
        // multi-byte characters before the payload (a key in Chinese, an emoji of 4 bytes) put its byte offsets far
        // from its character offsets: the payload's text must still be cut at its own braces
        String[] docs = {
            charge("b-1", "{\"chargeId\":\"C-1\",\"patientId\":\"P1\",\"amount\":1.50,\"reason\":\"多收\"}").replace("\"P1\"", "\"患者一号😀\""),
            charge("b-2", "{ \"chargeId\" : \"退费 😀 \\\" }\" ,\n \"patientId\":\"P 1\", \"amount\": 12345678901234567.89,"
                    + " \"reason\": \"重复\", \"items\": [ {\"code\":\"药品\"} ] }").replace("\"test\"", "\"H-1\""),
            "  " + charge("b-3", "{\"chargeId\":\"C\",\"patientId\":\"P\",\"amount\":0,\"reason\":\"\\u00e9 é\"}") + "\n",
        };
        for (String doc : docs) {
            Event text = parser.parseOne(doc);
            Event bytes = parser.parseOne(doc.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            assertEquals(text.envelope(), bytes.envelope(), doc);
            assertEquals(text.payloadJson(), bytes.payloadJson(), doc);
            assertEquals(text.key(), bytes.key(), doc);
            assertEquals(mapper.readTree(bytes.payloadJson()), bytes.payload(), doc);
        }
        // a Kafka record's rules are the same as a request's, with a clear reason
        assertEquals("required", assertThrows(InvalidEventException.class, () -> parser.parseOne(new byte[0])).rule());
        byte[] latin1 = charge("b-4", "{\"chargeId\":\"C\",\"patientId\":\"P1\",\"amount\":1,\"reason\":\"Ré\"}")
                .getBytes(java.nio.charset.StandardCharsets.ISO_8859_1);
        var notUtf8 = assertThrows(InvalidEventException.class, () -> parser.parseOne(latin1));
        assertEquals("json", notUtf8.rule(), notUtf8.getMessage());
        assertTrue(notUtf8.getMessage().contains("UTF-8"), notUtf8.getMessage());
        // UTF-16 (Jackson recognises it by its first bytes) is read as UTF-8 text would be: refused, not cut wrong
        byte[] utf16 = docs[0].getBytes(java.nio.charset.StandardCharsets.UTF_16BE);
        assertEquals("json", assertThrows(InvalidEventException.class, () -> parser.parseOne(utf16)).rule());
    }

    @Test
    void identifierRulesAreTheRegularExpressionsTheyStandFor() {
        var eventId = java.util.regex.Pattern.compile("[A-Za-z0-9][A-Za-z0-9._:\\-]{0,199}");
        var code = java.util.regex.Pattern.compile("[A-Za-z0-9][A-Za-z0-9._\\-]{0,99}");
        String alphabet = "aZ09._:-/ é住\t+Ａ"; // letters, digits, the allowed marks, and near misses (a full-width A)
        java.util.Random random = new java.util.Random(20261205L);
        for (int round = 0; round < 20_000; round++) {
            int length = random.nextInt(4) == 0 ? 95 + random.nextInt(110) : random.nextInt(6);
            StringBuilder b = new StringBuilder();
            for (int i = 0; i < length; i++) {
                b.append(random.nextInt(3) == 0 ? alphabet.charAt(random.nextInt(alphabet.length())) : (char) ('a' + random.nextInt(26)));
            }
            String s = b.toString();
            assertEquals(eventId.matcher(s).matches(), EventParser.EVENT_ID.matches(s), s);
            assertEquals(code.matcher(s).matches(), EventParser.CODE.matches(s), s);
        }
        for (String s : new String[] {"", "a", "-a", ".a", ":a", "a:b", "a-b.c_d", "x".repeat(100), "x".repeat(101),
            "x".repeat(200), "x".repeat(201)}) {
            assertEquals(eventId.matcher(s).matches(), EventParser.EVENT_ID.matches(s), s);
            assertEquals(code.matcher(s).matches(), EventParser.CODE.matches(s), s);
        }
    }

    @Test
    void compactDropsWhitespaceOutsideStringsOnlyAndKeepsEscapesAndDigits() throws Exception {
        var mapper = new com.fasterxml.jackson.databind.ObjectMapper();
        assertEquals("{\"a\":\"x y\",\"b\":[1.50,2]}", EventParser.compact("{ \"a\" : \"x y\" ,\n\t\"b\": [ 1.50 , 2 ] }"));
        String already = "{\"a\":\"no whitespace to drop\"}";
        assertSame(already, EventParser.compact(already), "a compact text is returned as it is");
        assertEquals("{\"q\":\"say \\\"hi \\\" \",\"z\":1}", EventParser.compact("{\"q\" : \"say \\\"hi \\\" \" , \"z\" : 1}"));
        assertEquals("{\"p\":\"C:\\\\ \",\"z\":1}", EventParser.compact("{\"p\": \"C:\\\\ \" , \"z\": 1}"),
                "a string ending in an escaped backslash ends at its quote");
        java.util.Random random = new java.util.Random(20261204L);
        String[] pieces = {"\\\"", "\\\\", " ", "\\n", "\\u00e9", "住院", "a", "\\/", "\"", "\\t "};
        String[] gaps = {"", " ", "\n  ", "\t", "\r\n"};
        for (int round = 0; round < 5_000; round++) {
            StringBuilder doc = new StringBuilder("{");
            int fields = 1 + random.nextInt(6);
            for (int f = 0; f < fields; f++) {
                StringBuilder value = new StringBuilder();
                int parts = random.nextInt(6);
                for (int k = 0; k < parts; k++) {
                    String piece = pieces[random.nextInt(pieces.length)];
                    value.append(piece.equals("\"") ? "\\\"" : piece);
                }
                String gap = gaps[random.nextInt(gaps.length)];
                doc.append(f == 0 ? "" : ",").append(gap).append("\"f").append(f).append("\"").append(gap).append(':').append(gap);
                doc.append(random.nextBoolean() ? "\"" + value + "\"" : "[" + gap + random.nextInt(1000) + ".0" + gap + "," + gap + "-3e2" + gap + "]");
            }
            String json = doc.append(gaps[random.nextInt(gaps.length)]).append('}').toString();
            String compact = EventParser.compact(json);
            assertEquals(compactReference(json), compact, json);
            assertEquals(mapper.readTree(json), mapper.readTree(compact), json);
            // the same on UTF-8 bytes (a Kafka record), with bytes around the payload that are not its own
            byte[] body = ("{\"payload\": " + json + " }").getBytes(java.nio.charset.StandardCharsets.UTF_8);
            int from = "{\"payload\": ".length();
            byte[] bytes = EventParser.compact(body, from, body.length - 2);
            assertEquals(compact, new String(bytes, java.nio.charset.StandardCharsets.UTF_8), json);
        }
        byte[] unterminated = "{\"a\":\"b}".getBytes(java.nio.charset.StandardCharsets.UTF_8);
        assertEquals("{\"a\":\"b}", new String(EventParser.compact(unterminated, 0, unterminated.length),
                java.nio.charset.StandardCharsets.UTF_8), "a text that is not JSON is left as it is");
    }
}
