package org.hospitalhub.sync;

import java.util.Locale;

/** How the gateway serves one caller of a flow that is being moved off a synchronous legacy call. */
public enum GrayMode {
    /** Forward the request unchanged to the legacy endpoint and return its answer; the hub stores nothing. */
    LEGACY,
    /** Forward to the legacy endpoint (its answer is returned) and also store the event for async delivery. */
    SHADOW,
    /** Validate and store the event, answer 202: the legacy endpoint is no longer called. */
    ASYNC;

    public String label() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Parses a configured value; the message names the key so a bad ConfigMap is found at once. */
    static GrayMode parse(String key, String value) {
        String v = value == null ? "" : value.strip().toLowerCase(Locale.ROOT);
        for (GrayMode m : values()) {
            if (m.label().equals(v)) {
                return m;
            }
        }
        throw new IllegalArgumentException(key + ": unknown mode '" + value + "' (allowed: legacy, shadow, async)");
    }
}
