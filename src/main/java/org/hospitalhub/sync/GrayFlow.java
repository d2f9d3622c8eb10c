package org.hospitalhub.sync;

import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.Map;

/**
 * The gray switch of one flow: its mode, the legacy endpoint it replaces, the share of callers already moved to
 * async (canary), and per-hospital overrides. Built by {@link GraySwitchConfig} from {@code hub.gray.<flowId>.*}.
 *
 * @param legacyUrl null when every caller of the flow is async (no legacy endpoint needed)
 */
public record GrayFlow(String id, GrayMode mode, int canaryPercent, URI legacyUrl, Duration connectTimeout,
        Duration responseTimeout, Map<String, HospitalOverride> hospitals) {

    /** A hospital's own setting; a null field falls back as described in {@link #decide}. */
    public record HospitalOverride(GrayMode mode, Integer canaryPercent) {
    }

    /** The mode chosen for one caller and why (shown by the config view and logged at debug level). */
    public record Decision(GrayMode mode, String reason) {
    }

    /**
     * The mode for a caller, identified by its hospital and source system. A hospital override wins over the flow:
     * an overridden mode pins the hospital (its canary share is then 0 unless it sets its own canary-percent).
     * Callers whose bucket (0-99, a stable hash of hospital and source) is below the canary share are async, so one
     * caller never flips between modes, and raising the share only moves more callers, never back.
     *
     * @param hospital null when the request could not be read: the flow's (not the canary's) mode applies
     */
    public Decision decide(String hospital, String source) {
        HospitalOverride o = hospital == null ? null : hospitals.get(hospital);
        GrayMode base = o != null && o.mode() != null ? o.mode() : mode;
        int percent = o != null && o.canaryPercent() != null ? o.canaryPercent()
                : o != null && o.mode() != null ? 0 : canaryPercent;
        String scope = o != null ? "hospital " + hospital : "flow";
        if (base == GrayMode.ASYNC || percent == 0 || hospital == null) {
            return new Decision(base, scope + " mode " + base.label()
                    + (hospital == null && percent > 0 ? " (request unreadable: no canary)" : ""));
        }
        int bucket = bucket(hospital, source);
        if (bucket < percent) {
            return new Decision(GrayMode.ASYNC, "canary: bucket " + bucket + " < " + scope + " canary-percent " + percent);
        }
        return new Decision(base, scope + " mode " + base.label() + " (bucket " + bucket + " >= canary-percent " + percent + ")");
    }

    /** The caller's stable position 0-99: the first four bytes of SHA-256("hospital/source") modulo 100. */
    public static int bucket(String hospital, String source) {
        try {
            byte[] h = MessageDigest.getInstance("SHA-256")
                    .digest((hospital + "/" + source).getBytes(StandardCharsets.UTF_8));
            long v = ((h[0] & 0xFFL) << 24) | ((h[1] & 0xFFL) << 16) | ((h[2] & 0xFFL) << 8) | (h[3] & 0xFFL);
            return (int) (v % 100);
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The legacy URL without user info and query, which may hold credentials: for logs, errors and the view. */
    public String legacyUrlForDisplay() {
        return display(legacyUrl);
    }

    static String display(URI u) {
        if (u == null) {
            return null;
        }
        return u.getScheme() + "://" + u.getHost() + (u.getPort() >= 0 ? ":" + u.getPort() : "")
                + (u.getRawPath() == null ? "" : u.getRawPath()) + (u.getRawQuery() != null ? "?..." : "");
    }
}
