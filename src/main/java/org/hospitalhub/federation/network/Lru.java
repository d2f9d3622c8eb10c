package org.hospitalhub.federation.network;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A small bounded map for facts that never change once written (a project's initiator and invited nodes, the project
 * of a step): read from the database once per process instead of at every message. Least recently used out first.
 */
final class Lru {

    private Lru() {
    }

    static <K, V> Map<K, V> of(int max) {
        return Collections.synchronizedMap(new LinkedHashMap<>(64, 0.75f, true) {
            @Override
            protected boolean removeEldestEntry(Map.Entry<K, V> eldest) {
                return size() > max;
            }
        });
    }
}
