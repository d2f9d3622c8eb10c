package org.hospitalhub.delivery;

import java.util.Set;

/**
 * A delivery flow declared by a per-hospital YAML file (a {@code templatedRoute} of the {@code outbox-source}
 * template): which event types, from which hospitals, it delivers.
 */
public record Flow(String id, Set<String> types, Set<String> hospitals, String routeId) {

    public boolean takes(Event e) {
        return (types.contains("*") || types.contains(e.type()))
                && (hospitals.contains("*") || hospitals.contains(e.hospital()));
    }
}
