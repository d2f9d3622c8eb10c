package org.hospitalhub.qc;

import java.time.Clock;
import java.time.Instant;

import jakarta.enterprise.context.ApplicationScoped;

/**
 * The time qc judges deadlines by (overdue or not, on time or late, reconciliation). A CDI bean so that tests
 * replace it (an {@code @Alternative}) and check deadlines hours away without waiting. The timer sweep
 * ({@link DeadlineTimers}) takes the timers due by the system clock; a fired deadline is judged by this one.
 */
@ApplicationScoped
public class QcClock {

    private final Clock clock = Clock.systemUTC();

    public Instant instant() {
        return clock.instant();
    }
}
