package org.hospitalhub.relay.client;

/**
 * Receives packets, one at a time and in order, on the client's own receive thread. Returning normally acknowledges
 * the packet (the server then drops it from the mailbox); throwing leaves it unacknowledged, and it comes again after
 * a pause, before any later packet.
 */
@FunctionalInterface
public interface PacketHandler {

    void onPacket(Packet packet) throws Exception;
}
