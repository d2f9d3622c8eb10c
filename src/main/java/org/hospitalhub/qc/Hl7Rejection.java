package org.hospitalhub.qc;

/**
 * An HL7 message the hub does not accept, with the acknowledgment code to answer: {@code AR} (rejected: unparsable,
 * sender not allowed, message type or trigger event not supported) or {@code AE} (error in the content: a missing
 * segment or field, a value the event's schema refuses). The message is dead-lettered for correction.
 */
public class Hl7Rejection extends RuntimeException {

    private static final long serialVersionUID = 1L;

    private final String code;

    private Hl7Rejection(String code, String reason) {
        super(reason);
        this.code = code;
    }

    static Hl7Rejection rejected(String reason) {
        return new Hl7Rejection("AR", reason);
    }

    static Hl7Rejection error(String reason) {
        return new Hl7Rejection("AE", reason);
    }

    /** AR or AE. */
    public String code() {
        return code;
    }
}
