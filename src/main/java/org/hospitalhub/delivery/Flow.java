package org.hospitalhub.delivery;

import java.util.Set;

/**
 * A delivery flow declared by a per-hospital YAML file (a {@code templatedRoute} of the {@code outbox-source}
 * template): which event types, from which hospitals, it delivers ({@code types}: exact
 * names, {@code prefix.*}, or {@code *}).
 */
public record Flow(String id, Set<String> types, Set<String> hospitals, String routeId) {

    public boolean takes(Event e) {
        return (types.contains("*") || types.contains(e.type()) || types.stream().anyMatch(t -> prefixMatch(t, e.type())))
                && (hospitals.contains("*") || hospitals.contains(e.hospital()));
    }

    /** {@code qc.*} takes every type starting with {@code qc.}. */
    private static boolean prefixMatch(String pattern, String type) {
        return pattern.length() > 2 && pattern.endsWith(".*") && type.startsWith(pattern.substring(0, pattern.length() - 1));
    }
}
