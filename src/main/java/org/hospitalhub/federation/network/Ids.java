package org.hospitalhub.federation.network;

import java.security.SecureRandom;
import java.time.Clock;
import java.util.UUID;

/**
 * Globally unique, time-ordered ids (UUID version 7, RFC 9562): 48 bits of Unix milliseconds, then random bits. Any
 * node can make them without coordination, so no node needs a per-node id offset; they sort roughly by creation time.
 */
public final class Ids {

    private static final SecureRandom RANDOM = new SecureRandom();

    private Ids() {
    }

    public static String next() {
        return next(Clock.systemUTC());
    }

    static String next(Clock clock) {
        long millis = clock.millis();
        long randA = RANDOM.nextInt(1 << 12);
        long msb = (millis << 16) | (0x7L << 12) | randA;
        long lsb = (RANDOM.nextLong() & 0x3FFFFFFFFFFFFFFFL) | 0x8000000000000000L;
        return new UUID(msb, lsb).toString();
    }
}
