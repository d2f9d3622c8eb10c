package org.hospitalhub.relay;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;

/**
 * The tokens this node issued to its clients and child nodes, from {@code hub.relay.tokens} (environment variable
 * HUB_RELAY_TOKENS, a Kubernetes Secret): {@code id:token} entries separated by ';', id a client name or a child
 * node id from the topology, token plain or {@code sha256:<hex>} (then only the hash is in the Secret). Compared by
 * hash in constant time; never logged.
 */
public final class RelayTokens {

    private record Entry(String id, byte[] hash) {
    }

    private final List<Entry> entries = new ArrayList<>();

    private RelayTokens() {
    }

    public static RelayTokens parse(String spec) {
        RelayTokens t = new RelayTokens();
        int n = 0;
        for (String raw : (spec == null ? "" : spec).split(";")) {
            String item = raw.strip();
            if (item.isEmpty()) {
                continue;
            }
            n++;
            int colon = item.indexOf(':');
            if (colon <= 0 || colon == item.length() - 1) {
                throw new IllegalArgumentException("hub.relay.tokens entry " + n + " must be id:token (the token is not shown)");
            }
            String id = item.substring(0, colon).strip();
            String token = item.substring(colon + 1).strip();
            byte[] hash = token.startsWith("sha256:") ? HexFormat.of().parseHex(token.substring(7)) : sha256(token);
            t.entries.add(new Entry(id, hash));
        }
        return t;
    }

    public List<String> ids() {
        return entries.stream().map(Entry::id).toList();
    }

    /** The id holding this token, if any. */
    public Optional<String> authenticate(String token) {
        if (token == null || token.isBlank()) {
            return Optional.empty();
        }
        byte[] hash = sha256(token.strip());
        String found = null;
        for (Entry e : entries) { // no early exit: the time taken does not tell which entry matched
            if (MessageDigest.isEqual(e.hash(), hash) && found == null) {
                found = e.id();
            }
        }
        return Optional.ofNullable(found);
    }

    static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
