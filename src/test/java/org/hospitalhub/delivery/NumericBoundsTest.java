package org.hospitalhub.delivery;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;

import org.junit.jupiter.api.Test;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.networknt.schema.JsonSchema;
import com.networknt.schema.JsonSchemaFactory;
import com.networknt.schema.SpecVersion;
import com.networknt.schema.ValidationMessage;

/**
 * The quick numeric bounds give exactly the library's answers and messages: every bound keyword, bounds the quick path
 * takes and bounds it leaves to the library, values on, next to and far from each bound, read the way the event parser
 * reads them (ints, longs, doubles, big integers, text), for a number, an untyped, an integer and an integer-or-null
 * property.
 */
class NumericBoundsTest {

    private final ObjectMapper mapper = new ObjectMapper();
    private final JsonSchemaFactory quick = NumericBounds.factory();
    private final JsonSchemaFactory library = JsonSchemaFactory.getInstance(SpecVersion.VersionFlag.V202012);

    @Test
    void quickBoundsAgreeWithTheLibraryOnEveryValue() throws Exception {
        List<String> bounds = List.of("0", "1", "-5", "100", "9007199254740992", "-9007199254740992", "9007199254740993",
                "0.5", "0.1", "-2.5", "1e20", "1.0", "123456789012345678901234567890");
        List<String> values = new ArrayList<>(List.of("0", "-0", "0.0", "-0.0", "1", "1.0", "0.9999999999999999",
                "1.0000000000000002", "-5", "-5.0", "-4.999999999999999", "-5.000000000000001", "100", "99.99", "100.01",
                "9007199254740992", "9007199254740993", "9007199254740991", "9007199254740992.0", "-9007199254740992",
                "0.5", "0.1", "0.30000000000000004", "1e20", "1e-300", "-1e300", "2147483648", "-2147483649",
                "123456789012345678901234567890", "123456789012345678901234567890.5", "\"5\"", "null", "true"));
        Random random = new Random(7);
        for (int i = 0; i < 400; i++) {
            values.add(Integer.toString(random.nextInt(400) - 200));
            values.add(Long.toString(random.nextLong()));
            values.add(Double.toString((random.nextDouble() - 0.5) * 400));
            double near = List.of(0d, 1d, -5d, 100d).get(random.nextInt(4));
            values.add(Double.toString(random.nextBoolean() ? Math.nextUp(near) : Math.nextDown(near)));
        }
        int checks = 0;
        int refused = 0;
        for (String keyword : List.of("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum")) {
            for (String bound : bounds) {
                String schema = "{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"type\":\"object\","
                        + "\"properties\":{\"v\":{\"type\":\"number\",\"" + keyword + "\":" + bound + "},"
                        + "\"w\":{\"" + keyword + "\":" + bound + "},"
                        + "\"x\":{\"type\":\"integer\",\"" + keyword + "\":" + bound + "},"
                        + "\"y\":{\"type\":[\"integer\",\"null\"],\"" + keyword + "\":" + bound + "}}}";
                JsonSchema ours = quick.getSchema(mapper.readTree(schema));
                JsonSchema theirs = library.getSchema(mapper.readTree(schema));
                for (String v : values) {
                    JsonNode doc = mapper.readTree("{\"v\":" + v + ",\"w\":" + v + ",\"x\":" + v + ",\"y\":" + v + "}");
                    Set<String> expected = messages(theirs.validate(doc));
                    assertEquals(expected, messages(ours.validate(doc)), keyword + " " + bound + ", value " + v);
                    checks++;
                    refused += expected.isEmpty() ? 0 : 1;
                }
            }
        }
        // both answers were asked for, many times
        assertTrue(refused > checks / 5 && refused < checks * 4 / 5, refused + " of " + checks + " refused");
    }

    private static Set<String> messages(Set<ValidationMessage> found) {
        Set<String> out = new TreeSet<>();
        found.forEach(m -> out.add(m.getType() + " " + m.getInstanceLocation() + " " + m.getMessage()));
        return out;
    }
}
