package org.hospitalhub.delivery;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.HexFormat;
import java.util.List;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.inject.Named;

/** JSON forms of a batch for HTTP receivers. */
@ApplicationScoped
@Named("eventJson")
public class EventJson {

    /** The batch as a JSON array of canonical envelopes. */
    public String toArray(List<Event> batch) {
        StringBuilder sb = new StringBuilder(batch.size() * 512).append('[');
        for (int i = 0; i < batch.size(); i++) {
            if (i > 0) {
                sb.append(',');
            }
            sb.append(batch.get(i).envelope());
        }
        return sb.append(']').toString();
    }

    /** A stable key of the batch's events, so a receiver can recognise a batch sent again. */
    public String batchKey(org.apache.camel.Exchange exchange) throws NoSuchAlgorithmException {
        @SuppressWarnings("unchecked")
        List<Event> batch = exchange.getProperty(DeadLetterStore.BATCH, List.class);
        MessageDigest sha = MessageDigest.getInstance("SHA-256");
        for (Event e : batch) {
            sha.update(e.eventId().getBytes(StandardCharsets.UTF_8));
            sha.update((byte) 0);
        }
        return HexFormat.of().formatHex(sha.digest());
    }
}
