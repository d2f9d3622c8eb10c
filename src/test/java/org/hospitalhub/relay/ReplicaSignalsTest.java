package org.hospitalhub.relay;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;

import org.junit.jupiter.api.Test;

/**
 * What replicas of a relay node tell each other (no database: the payloads one replica writes, read by another).
 * Many hops at once are split over several notifications below PostgreSQL's 8,000-byte limit and all arrive; a
 * replica ignores its own notifications and another node's; an announcement makes a replica publish from then on.
 */
class ReplicaSignalsTest {

    @Test
    void manyHopsAreSplitBelowTheLimitAndAllReachTheOtherReplicaInOrder() {
        List<String> woken = new ArrayList<>();
        ReplicaSignals a = signals("county-1", h -> { });
        ReplicaSignals b = signals("county-1", woken::add);
        // 2,000 clients of a county, each its own hop (a consultation offered to all of them, say)
        List<String> hops = IntStream.range(0, 2_000).mapToObj(i -> "township-clinic-" + i + "@county-1").toList();

        List<String> payloads = a.payloads(hops);
        assertTrue(payloads.size() > 1, "split: " + payloads.size());
        for (String p : payloads) {
            assertTrue(p.length() <= 7_000, "payload of " + p.length() + " characters (hop names are ASCII)");
        }
        payloads.forEach(b::receive);
        assertEquals(hops, woken, "every hop once, in order");

        woken.clear();
        payloads.forEach(a::receive); // a's own notifications come back to it: nothing to wake
        signals("county-2", h -> { }).payloads(hops).forEach(b::receive); // another node's: not this node's hops
        assertEquals(List.of(), woken);
    }

    @Test
    void aReplicaPublishesOnlyAfterItHeardAnother() {
        ReplicaSignals a = signals("county-1", h -> { });
        ReplicaSignals b = signals("county-1", h -> { });
        assertFalse(a.othersHeard(), "alone: packets stored here are not announced to anyone");
        a.receive(b.payloads(List.of()).get(0)); // b's announcement: its header, no hops
        assertTrue(a.othersHeard(), "b is there: a publishes its hops from now on");
        assertFalse(b.othersHeard(), "b has not heard a yet");
    }

    private static ReplicaSignals signals(String node, java.util.function.Consumer<String> onHop) {
        return new ReplicaSignals(node, null, Duration.ofSeconds(4), RelayOptions.defaults(), onHop, () -> { });
    }
}
