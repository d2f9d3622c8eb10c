package org.hospitalhub.relay.client;

/**
 * The server's acknowledgement of one packet: {@code STORED} (stored at the first hop, it will be forwarded),
 * {@code DUPLICATE} (that packetId was already stored: nothing new) or {@code DEAD} (stored straight into the
 * dead-letter store, e.g. its ttl had already passed; {@code reason} says why). When the client had to send again
 * because an earlier attempt's acknowledgement was lost (a timeout, a dropped connection), a packet that attempt
 * stored is reported STORED, with a {@code reason} saying so, not DUPLICATE: the caller sent it once.
 */
public record SendResult(String packetId, Status status, String reason) {

    public enum Status {
        STORED,
        DUPLICATE,
        DEAD
    }
}
