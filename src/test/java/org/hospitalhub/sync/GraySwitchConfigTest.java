package org.hospitalhub.sync;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

/** Parsing of the hub.gray.* keys and the choice of a caller's mode, without the application. */
class GraySwitchConfigTest {

    private static Map<String, String> base() {
        Map<String, String> p = new HashMap<>();
        p.put("hub.gray.charges.mode", "shadow");
        p.put("hub.gray.charges.legacy-url", "http://hrp.example:8080/ws/charges");
        p.put("unrelated.key", "x");
        return p;
    }

    private static String failure(Map<String, String> p) {
        return assertThrows(IllegalArgumentException.class, () -> GraySwitchConfig.parse(p)).getMessage();
    }

    @Test
    void parsesFlowsWithDefaultsTimeoutsAndHospitalOverrides() {
        Map<String, String> p = base();
        p.put("hub.gray.response-timeout", "10s");
        p.put("hub.gray.charges.canary-percent", " 10 ");
        p.put("hub.gray.charges.connect-timeout", "500ms");
        p.put("hub.gray.charges.hospital.county.1.mode", "ASYNC");
        p.put("hub.gray.charges.hospital.city.canary-percent", "30");
        p.put("hub.gray.stock.mode", "async");
        GrayFlow f = GraySwitchConfig.parse(p).get("charges");
        assertEquals(GrayMode.SHADOW, f.mode());
        assertEquals(10, f.canaryPercent());
        assertEquals(Duration.ofMillis(500), f.connectTimeout());
        assertEquals(Duration.ofSeconds(10), f.responseTimeout());
        assertEquals(GrayMode.ASYNC, f.hospitals().get("county.1").mode());
        assertNull(f.hospitals().get("county.1").canaryPercent());
        assertEquals(30, f.hospitals().get("city").canaryPercent());
        GrayFlow stock = GraySwitchConfig.parse(p).get("stock");
        assertNull(stock.legacyUrl(), "an all-async flow needs no legacy endpoint");
        assertEquals(GraySwitchConfig.DEFAULT_CONNECT_TIMEOUT, stock.connectTimeout());
    }

    @Test
    void unknownModeFailsNamingTheKey() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.mode", "asnyc");
        assertTrue(failure(p).contains("hub.gray.charges.mode: unknown mode 'asnyc' (allowed: legacy, shadow, async)"));
        p = base();
        p.put("hub.gray.charges.hospital.county.mode", "big-bang");
        assertTrue(failure(p).contains("hub.gray.charges.hospital.county.mode: unknown mode 'big-bang'"));
    }

    @Test
    void percentOutsideZeroToHundredFailsNamingTheKey() {
        for (String bad : new String[] { "101", "-1", "ten", "12.5", "" }) {
            Map<String, String> p = base();
            p.put("hub.gray.charges.canary-percent", bad);
            assertTrue(failure(p).contains("hub.gray.charges.canary-percent must be a whole number from 0 to 100, got '"
                    + bad + "'"), bad);
        }
        Map<String, String> p = base();
        p.put("hub.gray.charges.hospital.city.canary-percent", "150");
        assertTrue(failure(p).contains("hub.gray.charges.hospital.city.canary-percent must be a whole number"));
    }

    @Test
    void typosAndMissingKeysFailNamingTheKey() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.mdoe", "async");
        assertTrue(failure(p).contains("hub.gray.charges.mdoe: unknown setting 'mdoe'"));
        p = base();
        p.put("hub.gray.charges.hospital.city.legacy-url", "http://x");
        assertTrue(failure(p).contains("hub.gray.charges.hospital.city.legacy-url: unknown setting"));
        p = base();
        p.put("hub.gray.timeout", "5s");
        assertTrue(failure(p).contains("hub.gray.timeout: unknown key"));
        p = base();
        p.remove("hub.gray.charges.mode");
        assertTrue(failure(p).contains("hub.gray.charges.mode is required"));
        p = base();
        p.remove("hub.gray.charges.legacy-url");
        assertTrue(failure(p).contains("hub.gray.charges.legacy-url is required"));
        p = new HashMap<>();
        p.put("hub.gray.stock.mode", "async");
        p.put("hub.gray.stock.hospital.city.mode", "legacy");
        assertTrue(failure(p).contains("hub.gray.stock.legacy-url is required"),
                "a hospital pinned to legacy needs the legacy endpoint");
    }

    @Test
    void badUrlAndDurationFailWithoutEchoingCredentials() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.legacy-url", "ftp://user:secret@hrp.example/x?token=abc");
        String m = failure(p);
        assertTrue(m.contains("hub.gray.charges.legacy-url must be an absolute http(s) URL"), m);
        assertFalse(m.contains("secret") || m.contains("abc"), m);
        p = base();
        p.put("hub.gray.charges.response-timeout", "soon");
        assertTrue(failure(p).contains("hub.gray.charges.response-timeout must be a positive duration"));
        p = base();
        p.put("hub.gray.connect-timeout", "0s");
        assertTrue(failure(p).contains("hub.gray.connect-timeout must be a positive duration"));
    }

    @Test
    void everyProblemIsReportedAtOnce() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.mode", "x");
        p.put("hub.gray.charges.canary-percent", "200");
        String m = failure(p);
        assertTrue(m.contains("hub.gray.charges.mode") && m.contains("hub.gray.charges.canary-percent"), m);
    }

    @Test
    void canaryIsStablePerCallerAndRaisingTheShareOnlyMovesMoreCallers() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.canary-percent", "10");
        GrayFlow ten = GraySwitchConfig.parse(p).get("charges");
        p.put("hub.gray.charges.canary-percent", "50");
        GrayFlow half = GraySwitchConfig.parse(p).get("charges");
        int asyncAtTen = 0;
        int asyncAtHalf = 0;
        for (int h = 0; h < 40; h++) {
            for (String source : new String[] { "his", "lis", "pacs" }) {
                String hospital = "hosp-" + h;
                GrayMode m10 = ten.decide(hospital, source).mode();
                GrayMode m50 = half.decide(hospital, source).mode();
                assertEquals(m10, ten.decide(hospital, source).mode(), "same caller, same mode");
                assertEquals(GrayFlow.bucket(hospital, source) < 10 ? GrayMode.ASYNC : GrayMode.SHADOW, m10);
                if (m10 == GrayMode.ASYNC) {
                    asyncAtTen++;
                    assertEquals(GrayMode.ASYNC, m50, "a caller moved at 10 % stays moved at 50 %");
                }
                asyncAtHalf += m50 == GrayMode.ASYNC ? 1 : 0;
            }
        }
        assertTrue(asyncAtTen > 0 && asyncAtTen < 30, "about 10 % of 120 callers, was " + asyncAtTen);
        assertTrue(asyncAtHalf > 40 && asyncAtHalf < 80, "about half of 120 callers, was " + asyncAtHalf);
    }

    @Test
    void hospitalOverrideWinsAndPinsItsMode() {
        Map<String, String> p = base();
        p.put("hub.gray.charges.canary-percent", "100");
        p.put("hub.gray.charges.hospital.pinned.mode", "legacy");
        p.put("hub.gray.charges.hospital.half.canary-percent", "0");
        GrayFlow f = GraySwitchConfig.parse(p).get("charges");
        assertEquals(GrayMode.ASYNC, f.decide("anyone", "his").mode(), "flow canary 100 %");
        assertEquals(GrayMode.LEGACY, f.decide("pinned", "his").mode(), "an overridden mode is not moved by the flow's canary");
        assertEquals(GrayMode.SHADOW, f.decide("half", "his").mode(), "own canary share 0, flow mode");
        assertEquals(GrayMode.SHADOW, f.decide(null, "his").mode(), "an unreadable request gets the flow mode");
    }
}
