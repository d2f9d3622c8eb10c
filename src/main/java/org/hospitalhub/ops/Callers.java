package org.hospitalhub.ops;

import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * The systems and operators allowed to call the hub, from {@code hub.auth.clients} (environment variable
 * HUB_AUTH_CLIENTS, a Kubernetes Secret in production): {@code name:role:key} entries separated by ';', role
 * {@code source}, {@code operator} or {@code doctor} (name = the doctor's id, for the qc task push), key plain or
 * {@code sha256:<hex>}. Keys are compared by hash in constant time and never logged.
 */
@ApplicationScoped
public class Callers {

    private static final Logger LOG = Logger.getLogger(Callers.class);

    public enum Role {
        SOURCE,
        OPERATOR,
        /** A doctor: the entry's name is the doctor's id; may only subscribe to their own qc task push. */
        DOCTOR
    }

    public record Caller(String name, Role role) {
    }

    private record Entry(String name, Role role, byte[] keyHash) {
    }

    private final List<Entry> entries = new ArrayList<>();

    public Callers(@ConfigProperty(name = "hub.auth.clients", defaultValue = "") Optional<String> spec) {
        String s = spec.orElse("").strip();
        int n = 0;
        for (String raw : s.split(";")) {
            String item = raw.strip();
            if (item.isEmpty()) {
                continue;
            }
            n++;
            String[] parts = item.split(":", 3);
            if (parts.length != 3 || parts[0].isBlank() || parts[2].isBlank()) {
                throw new IllegalStateException("hub.auth.clients entry " + n
                        + " must be name:role:key (role source or operator); the key itself is not shown");
            }
            Role role;
            try {
                role = Role.valueOf(parts[1].strip().toUpperCase());
            } catch (IllegalArgumentException e) {
                throw new IllegalStateException("hub.auth.clients entry " + n + " (" + parts[0]
                        + "): role must be source, operator or doctor, got '" + parts[1] + "'");
            }
            String key = parts[2].strip();
            byte[] hash = key.startsWith("sha256:") ? HexFormat.of().parseHex(key.substring(7)) : sha256(key);
            entries.add(new Entry(parts[0].strip(), role, hash));
        }
        if (entries.isEmpty()) {
            LOG.warn("hub.auth.clients (HUB_AUTH_CLIENTS) is empty: every API call will be refused with 401");
        } else {
            LOG.infof("%d API callers configured: %s", entries.size(), entries.stream().map(e -> e.name() + "(" + e.role() + ")").toList());
        }
    }

    public Optional<Caller> authenticate(String key) {
        if (key == null || key.isBlank()) {
            return Optional.empty();
        }
        byte[] hash = sha256(key.strip());
        Caller found = null;
        for (Entry e : entries) { // no early exit: the time taken does not tell which entry matched
            if (MessageDigest.isEqual(e.keyHash(), hash) && found == null) {
                found = new Caller(e.name(), e.role());
            }
        }
        return Optional.ofNullable(found);
    }

    /** SHA-256 of the UTF-8 bytes of {@code s}. */
    public static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
