package org.hospitalhub.relay.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;

import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Random;

import org.junit.jupiter.api.Test;

/** The hand-read date-time gives what OffsetDateTime.parse gives, and leaves every other verdict to it. */
class IsoDateTimeTest {

    @Test
    void theInstantFormReadsAsTheJdkReadsIt() {
        Random r = new Random(42);
        for (int i = 0; i < 20_000; i++) {
            Instant t = Instant.ofEpochSecond(r.nextLong(-62_000_000_000L, 250_000_000_000L), r.nextInt(1_000_000_000));
            if (i % 4 == 0) {
                t = t.truncatedTo(java.time.temporal.ChronoUnit.SECONDS);
            } else if (i % 4 == 1) {
                t = t.truncatedTo(java.time.temporal.ChronoUnit.MILLIS);
            }
            String s = t.toString();
            if (s.length() < 20 || s.charAt(0) == '+' || s.charAt(0) == '-') {
                continue; // years beyond 9999 or before 0: not this form
            }
            assertEquals(OffsetDateTime.parse(s).toInstant(), IsoDateTime.instant(s), s);
        }
        for (String s : List.of("2026-12-04T16:18:23Z", "2026-12-04T16:18:23.3Z", "2026-12-04T16:18:23.306680Z",
                "2026-12-04T16:18:23.123456789Z", "2024-02-29T00:00:00Z", "0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z",
                "2026-12-04T16:18:23+08:00", "2026-12-04T16:18:23.5-03:30", "2026-12-04t16:18:23z",
                "2026-12-04T16:18:23.Z")) {
            assertEquals(OffsetDateTime.parse(s).toInstant(), IsoDateTime.instant(s), s);
        }
    }

    @Test
    void whatTheJdkRefusesIsRefused() {
        for (String s : List.of("2023-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-13-01T00:00:00Z", "2026-00-10T00:00:00Z",
                "2026-12-04T24:00:00Z", "2026-12-04T16:60:00Z", "2026-12-04T16:18:60Z",
                "2026-12-04T16:18:23.1234567890Z", "2026-12-04T16:18:2xZ", "2026-12-04 16:18:23Z", "2026-12-04T16:18:23",
                "２０２６-12-04T16:18:23Z", "")) {
            assertThrows(DateTimeParseException.class, () -> IsoDateTime.instant(s), s);
            assertThrows(DateTimeParseException.class, () -> OffsetDateTime.parse(s), s);
        }
    }
}
