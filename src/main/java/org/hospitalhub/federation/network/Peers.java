package org.hospitalhub.federation.network;

import java.net.URI;
import java.security.PublicKey;
import java.sql.Connection;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.atomic.AtomicLong;

import jakarta.enterprise.context.ApplicationScoped;
import jakarta.enterprise.event.Observes;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.hospitalhub.delivery.Database;
import org.jboss.logging.Logger;

import io.quarkus.runtime.StartupEvent;

/**
 * The registry of peer nodes (table {@code fed_node}): id, base URL, Ed25519 public key, and whether this node accepts
 * the projects that peer initiates without asking (auto-accept). Filled from {@code hub.federation.peers} at startup
 * (entries {@code id,baseUrl,publicKey[,auto-accept]} separated by ';') and through the operator API.
 */
@ApplicationScoped
public class Peers {

    private static final Logger LOG = Logger.getLogger(Peers.class);
    public static final String NODE_ID_PATTERN = "[A-Za-z0-9][A-Za-z0-9._-]{0,99}";

    public record Peer(String nodeId, String baseUrl, String publicKey, boolean autoAccept, String source, Instant updatedAt) {

        public PublicKey key() {
            return NodeKeys.publicKey(publicKey);
        }
    }

    private final Database db;
    private final Optional<String> configured;
    private final long cacheTtlNanos;
    /**
     * Registered peers as last read, for {@link #find(String)}: every transmission, received or sent, looks up its peer,
     * and on a loaded database each round trip costs milliseconds. Kept {@code hub.federation.peers.cache-ttl}; a change
     * through this process ({@link #save}, {@link #delete}) applies at once, one through another replica after that time.
     * Only registered nodes are kept (a transmission naming an unknown node is refused without filling memory).
     */
    private final Map<String, Cached> cache = Lru.of(10_000);
    /** Bumped by every change: a read that began before it does not enter the cache. */
    private final AtomicLong changes = new AtomicLong();

    private record Cached(Peer peer, long readAt) {
    }

    public Peers(Database db, @ConfigProperty(name = "hub.federation.peers") Optional<String> configured,
            @ConfigProperty(name = "hub.federation.peers.cache-ttl", defaultValue = "2s") Duration cacheTtl) {
        this.db = db;
        this.configured = configured;
        this.cacheTtlNanos = Math.max(0, cacheTtl.toNanos());
    }

    void loadConfigured(@Observes StartupEvent ev) throws SQLException {
        String spec = configured.orElse("").strip();
        if (spec.isEmpty()) {
            return;
        }
        int n = 0;
        for (String raw : spec.split(";")) {
            String item = raw.strip();
            if (item.isEmpty()) {
                continue;
            }
            n++;
            String[] f = item.split(",");
            if (f.length < 3 || f.length > 4) {
                throw new IllegalStateException("hub.federation.peers entry " + n + " must be id,baseUrl,publicKey[,auto-accept]");
            }
            String problem = check(f[0].strip(), f[1].strip(), f[2].strip());
            if (problem != null) {
                throw new IllegalStateException("hub.federation.peers entry " + n + ": " + problem);
            }
            boolean auto = f.length == 4 && f[3].strip().equalsIgnoreCase("auto-accept");
            if (f.length == 4 && !auto) {
                throw new IllegalStateException("hub.federation.peers entry " + n + ": the 4th field may only be 'auto-accept'");
            }
            save(new Peer(f[0].strip(), stripSlash(f[1].strip()), f[2].strip(), auto, "config", Instant.now()));
        }
        LOG.infof("Research federation: %d peer node(s) from configuration", n);
    }

    /** Null when valid, else what is wrong (naming the field). */
    public static String check(String nodeId, String baseUrl, String publicKey) {
        if (nodeId == null || !nodeId.matches(NODE_ID_PATTERN)) {
            return "nodeId must match " + NODE_ID_PATTERN;
        }
        try {
            URI u = URI.create(baseUrl == null ? "" : baseUrl);
            if (!("http".equals(u.getScheme()) || "https".equals(u.getScheme())) || u.getHost() == null) {
                return "baseUrl must be an absolute http(s) URL";
            }
        } catch (IllegalArgumentException e) {
            return "baseUrl must be an absolute http(s) URL";
        }
        try {
            NodeKeys.publicKey(publicKey == null ? "" : publicKey);
        } catch (IllegalArgumentException e) {
            return "publicKey: " + e.getMessage();
        }
        return null;
    }

    static String stripSlash(String url) {
        return url.endsWith("/") ? url.substring(0, url.length() - 1) : url;
    }

    public void save(Peer p) throws SQLException {
        db.inTransaction(c -> {
            try (PreparedStatement up = c.prepareStatement(
                    "UPDATE fed_node SET base_url = ?, public_key = ?, auto_accept = ?, source = ?, updated_at = ? WHERE node_id = ?")) {
                up.setString(1, stripSlash(p.baseUrl()));
                up.setString(2, p.publicKey());
                up.setBoolean(3, p.autoAccept());
                up.setString(4, p.source());
                up.setObject(5, Database.utc(Instant.now()));
                up.setString(6, p.nodeId());
                if (up.executeUpdate() == 1) {
                    return null;
                }
            }
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO fed_node (node_id, base_url, public_key, auto_accept, "
                    + "source, updated_at) VALUES (?, ?, ?, ?, ?, ?)")) {
                ins.setString(1, p.nodeId());
                ins.setString(2, stripSlash(p.baseUrl()));
                ins.setString(3, p.publicKey());
                ins.setBoolean(4, p.autoAccept());
                ins.setString(5, p.source());
                ins.setObject(6, Database.utc(Instant.now()));
                ins.executeUpdate();
            }
            return null;
        });
        changed();
    }

    public boolean delete(String nodeId) throws SQLException {
        boolean deleted = db.inTransaction(c -> {
            try (PreparedStatement del = c.prepareStatement("DELETE FROM fed_node WHERE node_id = ?")) {
                del.setString(1, nodeId);
                return del.executeUpdate() == 1;
            }
        });
        changed();
        return deleted;
    }

    /** After a change is committed: what was cached before it is dropped, a read begun before it is not cached. */
    private void changed() {
        changes.incrementAndGet();
        cache.clear();
    }

    /** The registered peer (as read at most {@code hub.federation.peers.cache-ttl} ago), or empty. */
    public Optional<Peer> find(String nodeId) throws SQLException {
        if (nodeId == null) {
            return Optional.empty();
        }
        Cached hit = cache.get(nodeId);
        if (hit != null && System.nanoTime() - hit.readAt() < cacheTtlNanos) {
            return Optional.of(hit.peer());
        }
        long before = changes.get();
        long readAt = System.nanoTime();
        Optional<Peer> peer;
        try (Connection c = db.connection()) {
            peer = find(c, nodeId);
        }
        if (peer.isPresent() && cacheTtlNanos > 0 && changes.get() == before) {
            cache.put(nodeId, new Cached(peer.get(), readAt));
        }
        return peer;
    }

    public Optional<Peer> find(Connection c, String nodeId) throws SQLException {
        if (nodeId == null) {
            return Optional.empty();
        }
        try (PreparedStatement q = c.prepareStatement("SELECT node_id, base_url, public_key, auto_accept, source, updated_at "
                + "FROM fed_node WHERE node_id = ?")) {
            q.setString(1, nodeId);
            try (ResultSet rs = q.executeQuery()) {
                return rs.next() ? Optional.of(read(rs)) : Optional.empty();
            }
        }
    }

    public List<Peer> all() throws SQLException {
        List<Peer> out = new ArrayList<>();
        try (Connection c = db.connection(); PreparedStatement q = c.prepareStatement(
                "SELECT node_id, base_url, public_key, auto_accept, source, updated_at FROM fed_node ORDER BY node_id");
                ResultSet rs = q.executeQuery()) {
            while (rs.next()) {
                out.add(read(rs));
            }
        }
        return out;
    }

    private static Peer read(ResultSet rs) throws SQLException {
        return new Peer(rs.getString(1), rs.getString(2), rs.getString(3), rs.getBoolean(4), rs.getString(5),
                rs.getObject(6, java.time.OffsetDateTime.class).toInstant());
    }
}
