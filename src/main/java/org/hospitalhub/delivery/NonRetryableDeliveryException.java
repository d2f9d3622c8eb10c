package org.hospitalhub.delivery;

/** A failure that retrying cannot fix: the message goes to the dead-letter channel at once. */
public class NonRetryableDeliveryException extends RuntimeException {

    public NonRetryableDeliveryException(String message) {
        super(message);
    }

    public NonRetryableDeliveryException(String message, Throwable cause) {
        super(message, cause);
    }
}
