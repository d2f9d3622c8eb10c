package org.hospitalhub.federation.network;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A small bounded map for facts read from the database once per process (or for a while) instead of at every message:
 * a project's initiator and invited nodes, the project of a step (they never change once written), the registered peers
 * (kept a short time, see {@link Peers}). Least recently used out first.
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
