package org.hospitalhub.relay.client;

import java.time.DateTimeException;
import java.time.Instant;
import java.time.OffsetDateTime;
import java.time.ZoneOffset;

/**
 * ISO-8601 date-times with offset, read without a DateTimeFormatter in their plain form (the JDK's formatter costs
 * more than the rest of an event's validation, and a relay node reads every packet's createdAt). Here in the SDK,
 * which stands alone (no Camel, no hub classes); the hub's envelope parser uses it too.
 */
public final class IsoDateTime {

    private IsoDateTime() {
    }

    /** What {@link OffsetDateTime#parse} gives, as an instant; its exception for anything it refuses. */
    public static Instant instant(String s) {
        OffsetDateTime plain = plain(s);
        return (plain != null ? plain : OffsetDateTime.parse(s)).toInstant();
    }

    /**
     * The plain ISO-8601 form yyyy-MM-ddTHH:mm:ss[.1 to 9 digits](Z|±HH:mm), read without a DateTimeFormatter (which
     * costs more than the rest of an event's validation); null for anything else, which then goes through
     * {@link OffsetDateTime#parse} and gets its verdict and error.
     */
    public static OffsetDateTime plain(String s) {
        int n = s.length();
        if (n < 20 || s.charAt(4) != '-' || s.charAt(7) != '-' || s.charAt(10) != 'T' || s.charAt(13) != ':'
                || s.charAt(16) != ':') {
            return null;
        }
        int year = digits(s, 0, 4);
        int month = digits(s, 5, 2);
        int day = digits(s, 8, 2);
        int hour = digits(s, 11, 2);
        int minute = digits(s, 14, 2);
        int second = digits(s, 17, 2);
        if ((year | month | day | hour | minute | second) < 0) {
            return null;
        }
        int i = 19;
        int nano = 0;
        if (s.charAt(i) == '.') {
            int from = ++i;
            while (i < n && s.charAt(i) >= '0' && s.charAt(i) <= '9') {
                nano = nano * 10 + (s.charAt(i++) - '0');
            }
            int len = i - from;
            if (len == 0 || len > 9) {
                return null;
            }
            for (int k = len; k < 9; k++) {
                nano *= 10;
            }
        }
        ZoneOffset offset;
        if (i == n - 1 && s.charAt(i) == 'Z') {
            offset = ZoneOffset.UTC;
        } else if (i == n - 6 && (s.charAt(i) == '+' || s.charAt(i) == '-') && s.charAt(i + 3) == ':') {
            int h = digits(s, i + 1, 2);
            int m = digits(s, i + 4, 2);
            if ((h | m) < 0 || m > 59) {
                return null;
            }
            try {
                offset = ZoneOffset.ofTotalSeconds((s.charAt(i) == '-' ? -1 : 1) * (h * 3600 + m * 60));
            } catch (DateTimeException outOfRange) {
                return null;
            }
        } else {
            return null;
        }
        try {
            return OffsetDateTime.of(year, month, day, hour, minute, second, nano, offset);
        } catch (DateTimeException invalid) {
            return null;
        }
    }

    private static int digits(String s, int from, int count) {
        int v = 0;
        for (int i = from; i < from + count; i++) {
            char c = s.charAt(i);
            if (c < '0' || c > '9') {
                return -1;
            }
            v = v * 10 + (c - '0');
        }
        return v;
    }
}
