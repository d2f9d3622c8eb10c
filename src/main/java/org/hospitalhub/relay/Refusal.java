package org.hospitalhub.relay;

/** A request refused as a whole: HTTP status (or NACK status) with the field and rule, nothing stored. */
public class Refusal extends RuntimeException {

    private final int status;
    private final String field;
    private final String rule;
    private final String packetId;

    public Refusal(int status, String message, String field, String rule, String packetId) {
        super(message);
        this.status = status;
        this.field = field;
        this.rule = rule;
        this.packetId = packetId;
    }

    public int status() {
        return status;
    }

    public String field() {
        return field;
    }

    public String rule() {
        return rule;
    }

    public String packetId() {
        return packetId;
    }
}
