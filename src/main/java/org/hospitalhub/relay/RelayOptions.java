package org.hospitalhub.relay;

import java.time.Duration;

/**
 * Tunables of a relay node ({@code hub.relay.*}). {@code retention} must exceed {@code maxTtl}: a settled packet is
 * remembered that long, which is the window in which a copy of it is recognised as a duplicate.
 */
public record RelayOptions(Duration heartbeat, Duration pollMaxWait, Duration parentPollWait, Duration requestTimeout,
        int maxPacketBytes, int maxPacketsPerRequest, Duration maxTtl, Duration retryMin, Duration retryMax,
        Duration sweepPeriod, Duration retention, int window) {

    public static RelayOptions defaults() {
        return new RelayOptions(Duration.ofSeconds(10), Duration.ofSeconds(30), Duration.ofSeconds(20),
                Duration.ofSeconds(15), 64 * 1024, 500, Duration.ofDays(7), Duration.ofMillis(500), Duration.ofSeconds(30),
                Duration.ofSeconds(5), Duration.ofDays(8), 256);
    }

    public RelayOptions {
        if (retention.compareTo(maxTtl) <= 0) {
            throw new IllegalArgumentException("hub.relay.retention (" + retention + ") must be longer than hub.relay.max-ttl ("
                    + maxTtl + "): duplicates are recognised only while a packet is remembered");
        }
    }

    public RelayOptions withTimings(Duration heartbeat, Duration parentPollWait, Duration requestTimeout, Duration retryMin,
            Duration retryMax, Duration sweepPeriod) {
        return new RelayOptions(heartbeat, pollMaxWait, parentPollWait, requestTimeout, maxPacketBytes, maxPacketsPerRequest,
                maxTtl, retryMin, retryMax, sweepPeriod, retention, window);
    }
}
