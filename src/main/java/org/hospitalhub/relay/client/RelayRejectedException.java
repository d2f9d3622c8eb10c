package org.hospitalhub.relay.client;

/**
 * The server refused a send or a connection: bad credentials (401), not allowed (403: a client sending as someone
 * else, a node sending for outside its subtree, the wrong transport), invalid packet (400, with field and rule),
 * too large (413). Retrying the same request will not help.
 */
public class RelayRejectedException extends RuntimeException {

    private final int status;
    private final String field;
    private final String rule;

    public RelayRejectedException(int status, String message, String field, String rule) {
        super(status + ": " + message);
        this.status = status;
        this.field = field;
        this.rule = rule;
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
}
