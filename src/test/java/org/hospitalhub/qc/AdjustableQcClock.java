package org.hospitalhub.qc;

import java.time.Duration;
import java.time.Instant;

import jakarta.annotation.Priority;
import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.inject.Alternative;

/** The qc clock of the tests: the system clock unless a test fixes it, then moved by hand. */
@Alternative
@Priority(1)
@ApplicationScoped
public class AdjustableQcClock extends QcClock {

    private volatile Instant fixed;

    @Override
    public Instant instant() {
        Instant f = fixed;
        return f != null ? f : Instant.now();
    }

    public void set(Instant at) {
        fixed = at;
    }

    public void advance(Duration d) {
        fixed = instant().plus(d);
    }

    public void useSystem() {
        fixed = null;
    }
}
