package org.hospitalhub.relay.client;

import java.util.List;

/**
 * Receives packets in batches (all that arrived together, in order) on the client's own receive thread: for a
 * receiver that stores what it gets, one transaction per batch instead of one per packet. Returning normally
 * acknowledges the whole batch; throwing acknowledges none of it, and the batch comes again after a pause.
 */
@FunctionalInterface
public interface BatchHandler {

    void onPackets(List<Packet> packets) throws Exception;
}
