package org.hospitalhub.federation;

/** A study step definition that is invalid or hostile; {@link #field()} names the offending field (JSON path). */
public class StepDefinitionException extends Exception {

    private final String field;

    public StepDefinitionException(String field, String message) {
        super(field + ": " + message);
        this.field = field;
    }

    public String field() {
        return field;
    }
}
