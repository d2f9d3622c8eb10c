package org.hospitalhub.relay;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Optional;

/**
 * The tokens this node issued to its clients and child nodes, from {@code hub.relay.tokens} (environment variable
 * HUB_RELAY_TOKENS, a Kubernetes Secret) and/or {@code hub.relay.tokens-file} (a Secret mounted as a file: one
 * environment variable holds at most 128 KiB, too little for thousands of clients): {@code id:token} entries
 * separated by ';' or new lines, id a client name or a child node id from the topology, token plain or
 * {@code sha256:<hex>} (then only the hash is in the Secret). A presented token is looked up by its SHA-256 hash (one
 * map lookup, whatever the number of clients: the hash of an unknown token tells an attacker nothing about the stored
 * ones); never logged.
 */
public final class RelayTokens {

    private static final java.util.regex.Pattern SHA256_HEX = java.util.regex.Pattern.compile("[0-9a-fA-F]{64}");

    private final List<String> ids = new ArrayList<>();
    /** hex SHA-256 of a token → the id it was issued to */
    private final Map<String, String> byHash = new HashMap<>();

    private RelayTokens() {
    }

    public static RelayTokens parse(String spec) {
        RelayTokens t = new RelayTokens();
        int n = 0;
        for (String raw : (spec == null ? "" : spec).split("[;\\r\\n]")) {
            String item = raw.strip();
            if (item.isEmpty() || item.startsWith("#")) {
                continue;
            }
            n++;
            int colon = item.indexOf(':');
            if (colon <= 0 || colon == item.length() - 1) {
                throw new IllegalArgumentException("hub.relay.tokens entry " + n + " must be id:token (the token is not shown)");
            }
            String id = item.substring(0, colon).strip();
            String token = item.substring(colon + 1).strip();
            boolean hashed = token.startsWith("sha256:");
            if (hashed && !SHA256_HEX.matcher(token.substring(7)).matches()) {
                throw new IllegalArgumentException("hub.relay.tokens entry " + n + " (" + id + "): sha256: must be followed by "
                        + "64 hex digits");
            }
            String hash = hashed ? token.substring(7).toLowerCase(java.util.Locale.ROOT) : HexFormat.of().formatHex(org.hospitalhub.ops.Callers.sha256(token));
            String previous = t.byHash.putIfAbsent(hash, id);
            if (previous != null && !previous.equals(id)) {
                throw new IllegalArgumentException("hub.relay.tokens entry " + n + " (" + id + ") has the same token as " + previous
                        + ": every client and child node needs its own");
            }
            t.ids.add(id);
        }
        return t;
    }

    public List<String> ids() {
        return List.copyOf(ids);
    }

    /** The id holding this token, if any. */
    public Optional<String> authenticate(String token) {
        if (token == null || token.isBlank()) {
            return Optional.empty();
        }
        return Optional.ofNullable(byHash.get(HexFormat.of().formatHex(org.hospitalhub.ops.Callers.sha256(token.strip()))));
    }
}
