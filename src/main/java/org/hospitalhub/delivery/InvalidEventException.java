package org.hospitalhub.delivery;

/**
 * An event that breaks the envelope or its type's schema. Retrying cannot fix it.
 * {@code field} names the offending field as a JSON path ({@code events[2].payload.amount}).
 */
public class InvalidEventException extends NonRetryableDeliveryException {

    public enum Kind {
        /** Malformed or breaking a rule: HTTP 400. */
        INVALID,
        /** Well-formed, but of a type the hub has no schema for: HTTP 422. */
        UNKNOWN_TYPE
    }

    private final String field;
    private final String rule;
    private final Kind kind;

    public InvalidEventException(Kind kind, String field, String rule, String message) {
        super(message);
        this.kind = kind;
        this.field = field;
        this.rule = rule;
    }

    public InvalidEventException(String field, String rule, String message) {
        this(Kind.INVALID, field, rule, message);
    }

    public String field() {
        return field;
    }

    public String rule() {
        return rule;
    }

    public Kind kind() {
        return kind;
    }

    public InvalidEventException at(String prefix) {
        String f = field == null || field.isEmpty() ? prefix : prefix + "." + field;
        InvalidEventException e = new InvalidEventException(kind, f, rule, prefix + ": " + getMessage());
        return e;
    }
}
