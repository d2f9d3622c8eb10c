package org.hospitalhub.federation.study;

import java.time.LocalDate;
import java.time.format.DateTimeParseException;
import java.util.Iterator;
import java.util.Set;
import java.util.regex.Pattern;

import com.fasterxml.jackson.databind.JsonNode;

import org.hospitalhub.federation.StepDefinitionException;

/** Strict reading of definition JSON: unknown keys, wrong types and out-of-range values name their JSON path. */
final class Json {

    static final Pattern NAME = Pattern.compile("[a-z][a-z0-9_]{0,39}");

    private Json() {
    }

    static JsonNode object(JsonNode node, String path, Set<String> allowed) throws StepDefinitionException {
        if (node == null || !node.isObject()) {
            throw new StepDefinitionException(path, "must be a JSON object");
        }
        for (Iterator<String> it = node.fieldNames(); it.hasNext();) {
            String f = it.next();
            if (!allowed.contains(f)) {
                throw new StepDefinitionException(path + "." + f, "unknown field (allowed: "
                        + String.join(", ", allowed.stream().sorted().toList()) + ")");
            }
        }
        return node;
    }

    static JsonNode array(JsonNode node, String path, int min, int max) throws StepDefinitionException {
        if (node == null || !node.isArray()) {
            throw new StepDefinitionException(path, "must be a JSON array");
        }
        if (node.size() < min || node.size() > max) {
            throw new StepDefinitionException(path, "must hold " + min + " to " + max + " items, got " + node.size());
        }
        return node;
    }

    static String text(JsonNode parent, String field, String path, boolean required) throws StepDefinitionException {
        JsonNode v = parent.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw new StepDefinitionException(path + "." + field, "is required");
            }
            return null;
        }
        if (!v.isTextual()) {
            throw new StepDefinitionException(path + "." + field, "must be a string");
        }
        return v.asText();
    }

    static String name(JsonNode parent, String field, String path) throws StepDefinitionException {
        String s = text(parent, field, path, true);
        if (!NAME.matcher(s).matches()) {
            throw new StepDefinitionException(path + "." + field,
                    "must be 1 to 40 lower-case letters, digits and _, starting with a letter");
        }
        return s;
    }

    static Integer integer(JsonNode parent, String field, String path, boolean required, long min, long max)
            throws StepDefinitionException {
        JsonNode v = parent.get(field);
        if (v == null || v.isNull()) {
            if (required) {
                throw new StepDefinitionException(path + "." + field, "is required");
            }
            return null;
        }
        if (!v.isIntegralNumber() || !v.canConvertToLong() || v.asLong() < min || v.asLong() > max) {
            throw new StepDefinitionException(path + "." + field, "must be an integer from " + min + " to " + max);
        }
        return (int) v.asLong();
    }

    static Double number(JsonNode parent, String field, String path) throws StepDefinitionException {
        JsonNode v = parent.get(field);
        if (v == null || v.isNull()) {
            return null;
        }
        if (!v.isNumber() || !Double.isFinite(v.asDouble())) {
            throw new StepDefinitionException(path + "." + field, "must be a finite number");
        }
        return v.asDouble();
    }

    static boolean bool(JsonNode parent, String field, String path, boolean dflt) throws StepDefinitionException {
        JsonNode v = parent.get(field);
        if (v == null || v.isNull()) {
            return dflt;
        }
        if (!v.isBoolean()) {
            throw new StepDefinitionException(path + "." + field, "must be true or false");
        }
        return v.asBoolean();
    }

    static LocalDate date(JsonNode parent, String field, String path) throws StepDefinitionException {
        String s = text(parent, field, path, false);
        if (s == null) {
            return null;
        }
        try {
            return LocalDate.parse(s);
        } catch (DateTimeParseException e) {
            throw new StepDefinitionException(path + "." + field, "must be a date like 2024-01-31, got '" + s + "'");
        }
    }

    static void version(JsonNode def, String path) throws StepDefinitionException {
        Integer v = integer(def, "version", path, true, 1, Integer.MAX_VALUE);
        if (v != 1) {
            throw new StepDefinitionException(path + ".version", "unsupported definition version " + v + " (supported: 1)");
        }
    }
}
