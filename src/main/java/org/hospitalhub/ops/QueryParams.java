package org.hospitalhub.ops;

import java.util.List;
import java.util.Set;
import java.util.TreeSet;

import jakarta.ws.rs.core.MultivaluedMap;
import jakarta.ws.rs.core.Response;
import jakarta.ws.rs.core.UriInfo;

/**
 * Strict query parameters for the admin APIs: an unknown parameter is refused (a typo must not widen a filtered
 * replay or a report), each parameter at most once and not empty. Errors are 400 naming the parameter and the rule.
 */
public final class QueryParams {

    private QueryParams() {
    }

    /** Bad input: 400 naming the parameter or field and the rule it breaks. */
    public static final class BadInput extends RuntimeException {
        public final String field;
        public final String rule;

        public BadInput(String field, String rule, String message) {
            super(message, null, false, false);
            this.field = field;
            this.rule = rule;
        }

        public Response response() {
            return ApiKeyFilter.ErrorBody.response(400, getMessage(), field, rule);
        }
    }

    /** A dead letter's id from the path: a positive number, else 400 naming {@code id}. */
    public static long deadLetterId(String text) {
        try {
            long id = Long.parseLong(text);
            if (id > 0) {
                return id;
            }
        } catch (NumberFormatException e) {
            // answered below
        }
        throw new BadInput("id", "type", "the dead-letter id must be a positive number, got '" + text + "'");
    }

    /** The query parameters, refusing any not in {@code allowed}. */
    public static MultivaluedMap<String, String> params(UriInfo uri, Set<String> allowed) {
        MultivaluedMap<String, String> q = uri.getQueryParameters();
        for (String name : q.keySet()) {
            if (!allowed.contains(name)) {
                throw new BadInput(name, "unknown", "unknown parameter '" + name + "' (allowed: "
                        + String.join(", ", new TreeSet<>(allowed)) + ")");
            }
        }
        return q;
    }

    /** The parameter's one value, stripped; null when absent. */
    public static String single(MultivaluedMap<String, String> q, String name) {
        List<String> values = q.get(name);
        if (values == null || values.isEmpty()) {
            return null;
        }
        if (values.size() > 1) {
            throw new BadInput(name, "single", name + " may be given once");
        }
        String v = values.get(0).strip();
        if (v.isEmpty()) {
            throw new BadInput(name, "required", name + " must not be empty when given");
        }
        return v;
    }
}
