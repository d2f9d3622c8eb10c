package org.hospitalhub.relay;

import org.hospitalhub.relay.client.Packet;

/**
 * A service inside a relay node, addressed as {@code name@<node>} (e.g. {@code consultation@city-a}). It gets the
 * packets for it in order on its own thread; returning normally settles the packet, throwing leaves it to be handed
 * over again after a pause. It sends with {@link RelayNode#sendLocal}.
 */
@FunctionalInterface
public interface LocalService {

    void onPacket(Packet packet) throws Exception;
}
