package org.hospitalhub.qc;

import static org.junit.jupiter.api.Assertions.assertEquals;

import java.time.Duration;

import org.junit.jupiter.api.Test;

/** The scheduled reconciliation's pace: it works the configured share of the time, resting at most 5 s at once. */
class ReconciliationPaceTest {

    private static final long MS = Duration.ofMillis(1).toNanos();

    @Test
    void restsSoThatWorkIsTheConfiguredShareOfTheTime() {
        assertEquals(60 * MS, Reconciliation.pauseAfter(20 * MS, 0.25), "a quarter: three times the work");
        assertEquals(20 * MS, Reconciliation.pauseAfter(20 * MS, 0.5), "a half: as long as the work");
        assertEquals(0, Reconciliation.pauseAfter(20 * MS, 1.0), "all the time: no rest");
        assertEquals(Duration.ofSeconds(5).toNanos(), Reconciliation.pauseAfter(Duration.ofSeconds(4).toNanos(), 0.25),
                "never more than 5 s at once");
    }
}
