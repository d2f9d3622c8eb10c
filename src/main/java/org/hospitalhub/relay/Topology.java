package org.hospitalhub.relay;

import java.io.IOException;
import java.net.URI;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Optional;
import java.util.Set;

import org.hospitalhub.relay.client.Address;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.dataformat.yaml.YAMLFactory;

/**
 * One relay node's place in the tree, from its deployment's YAML file: its id and level, its parent and how to reach
 * it (the transport is the parent's choice for this link), its children (with the nodes below them, for routing
 * down) and its clients, each with the transport the node accepts from it. Secrets are not in this file (tokens come
 * from {@code hub.relay.tokens} / {@code hub.relay.parent-token}).
 *
 * <pre>
 * node: city-a
 * level: city
 * parent: {id: province, transport: tcp, host: province.example, port: 7700}   # or transport: http, url: https://...
 * localShortcut: false      # true: packets between this node's subtree members skip the top server
 * children:
 *   - {id: county-1, transport: http}
 *   - {id: county-2, transport: tcp, children: [{id: county-2-east}]}   # nodes below county-2
 * clients:
 *   - {id: dr-wang, transport: any}
 * </pre>
 */
public record Topology(String node, String level, Optional<Parent> parent, Map<String, Child> children,
        Map<String, Transport> clients, boolean localShortcut, boolean audit, Optional<Consultation> consultation) {

    /**
     * The consultation service of this node ({@code consultation@<node>}, or {@code consultation@<level>} from below):
     * the hospitals a request is offered to, how long they have to accept, and where an unaccepted request goes
     * (another consultation service's address) — without one the requester is told nobody accepted.
     */
    public record Consultation(List<String> hospitals, java.time.Duration acceptWithin, Optional<String> escalateTo) {
    }

    /** How a link is carried; {@code ANY} for a client or child that may use either. */
    public enum Transport {
        HTTP,
        TCP,
        ANY;

        static Transport parse(String s, String where) {
            try {
                return Transport.valueOf((s == null ? "any" : s).strip().toUpperCase(Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException(where + ".transport must be http, tcp or any, got '" + s + "'");
            }
        }

        boolean allows(Transport used) {
            return this == ANY || this == used;
        }
    }

    public record Parent(String id, Transport transport, URI url, String host, int port) {
    }

    /** A child node and every node id below it (the packets for those go down through this child). */
    public record Child(String id, Transport transport, Set<String> below) {
    }

    public boolean isTop() {
        return parent.isEmpty();
    }

    /** The child whose subtree holds {@code nodeId} (the child itself included), if any. */
    public Optional<Child> childToward(String nodeId) {
        for (Child c : children.values()) {
            if (c.id().equals(nodeId) || c.below().contains(nodeId)) {
                return Optional.of(c);
            }
        }
        return Optional.empty();
    }

    public boolean inSubtree(String nodeId) {
        return node.equals(nodeId) || childToward(nodeId).isPresent();
    }

    public String clientAddress(String clientName) {
        return clientName + "@" + node;
    }

    public static Topology load(Path file) {
        try {
            return parse(Files.readString(file), file.toString());
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read the relay topology file " + file + ": " + e.getMessage(), e);
        }
    }

    public static Topology parse(String yaml, String source) {
        JsonNode root;
        try {
            root = new ObjectMapper(new YAMLFactory()).readTree(yaml);
        } catch (IOException e) {
            throw new IllegalArgumentException(source + ": not valid YAML: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException(source + ": the topology must be a YAML mapping with at least 'node'");
        }
        only(root, source, Set.of("node", "level", "parent", "children", "clients", "localShortcut", "audit", "consultation"));
        String node = id(root, "node", source);
        String level = root.path("level").asText("");
        Optional<Parent> parent = Optional.empty();
        if (root.hasNonNull("parent")) {
            JsonNode p = root.get("parent");
            String where = source + ": parent";
            only(p, where, Set.of("id", "transport", "url", "host", "port"));
            String pid = id(p, "id", where);
            Transport t = Transport.parse(p.path("transport").asText(null), where);
            if (t == Transport.ANY) {
                throw new IllegalArgumentException(where + ".transport must be http or tcp (the parent chose one for this link)");
            }
            URI url = null;
            String host = null;
            int port = 0;
            if (t == Transport.HTTP) {
                if (!p.hasNonNull("url")) {
                    throw new IllegalArgumentException(where + ".url is required with transport http");
                }
                url = URI.create(p.get("url").asText());
            } else {
                if (!p.hasNonNull("host") || !p.path("port").canConvertToInt() || p.path("port").asInt() <= 0) {
                    throw new IllegalArgumentException(where + ".host and .port are required with transport tcp");
                }
                if (p.hasNonNull("url")) { // with TCP, the parent's HTTP address for files
                    url = URI.create(p.get("url").asText());
                }
                host = p.get("host").asText();
                port = p.get("port").asInt();
            }
            parent = Optional.of(new Parent(pid, t, url, host, port));
        }
        Map<String, Child> children = new LinkedHashMap<>();
        int i = 0;
        for (JsonNode c : root.path("children")) {
            String where = source + ": children[" + i++ + "]";
            only(c, where, Set.of("id", "transport", "children"));
            String cid = id(c, "id", where);
            Set<String> below = new java.util.LinkedHashSet<>();
            collect(c.path("children"), below, where);
            if (children.put(cid, new Child(cid, Transport.parse(c.path("transport").asText(null), where), below)) != null) {
                throw new IllegalArgumentException(where + ": child " + cid + " is listed twice");
            }
        }
        Map<String, Transport> clients = new LinkedHashMap<>();
        i = 0;
        for (JsonNode c : root.path("clients")) {
            String where = source + ": clients[" + i++ + "]";
            only(c, where, Set.of("id", "transport"));
            String cid = id(c, "id", where);
            if (clients.put(cid, Transport.parse(c.path("transport").asText(null), where)) != null) {
                throw new IllegalArgumentException(where + ": client " + cid + " is listed twice");
            }
        }
        List<String> all = new ArrayList<>();
        all.add(node);
        parent.ifPresent(p -> all.add(p.id()));
        children.values().forEach(c -> {
            all.add(c.id());
            all.addAll(c.below());
        });
        Set<String> seen = new java.util.HashSet<>();
        for (String n : all) {
            if (!seen.add(n)) {
                throw new IllegalArgumentException(source + ": node id '" + n + "' appears twice in the tree");
            }
        }
        boolean audit = root.has("audit") ? root.get("audit").asBoolean() : parent.isEmpty();
        Optional<Consultation> consultation = Optional.empty();
        if (root.hasNonNull("consultation")) {
            JsonNode c = root.get("consultation");
            String where = source + ": consultation";
            only(c, where, Set.of("hospitals", "acceptWithin", "escalateTo"));
            List<String> hospitals = new ArrayList<>();
            for (JsonNode h : c.path("hospitals")) {
                if (!Address.isValid(h.asText()) || !h.asText().contains("@")) {
                    throw new IllegalArgumentException(where + ".hospitals: '" + h.asText() + "' is not a name@node address");
                }
                hospitals.add(h.asText());
            }
            if (hospitals.isEmpty()) {
                throw new IllegalArgumentException(where + ".hospitals must list at least one name@node address");
            }
            String escalate = c.path("escalateTo").asText(null);
            if (escalate != null && !Address.isValid(escalate)) {
                throw new IllegalArgumentException(where + ".escalateTo must be an address, got '" + escalate + "'");
            }
            consultation = Optional.of(new Consultation(List.copyOf(hospitals),
                    duration(c.path("acceptWithin").asText("10m"), where + ".acceptWithin"), Optional.ofNullable(escalate)));
        }
        return new Topology(node, level, parent, Map.copyOf(children), Map.copyOf(clients),
                root.path("localShortcut").asBoolean(false), audit, consultation);
    }

    /** {@code 30s}, {@code 10m}, {@code 2h}, {@code 1d} or ISO-8601 ({@code PT10M}). */
    static java.time.Duration duration(String v, String where) {
        try {
            if (v.matches("\\d+(ms|s|m|h|d)")) {
                long n = Long.parseLong(v.replaceAll("\\D", ""));
                return switch (v.replaceAll("\\d", "")) {
                    case "ms" -> java.time.Duration.ofMillis(n);
                    case "s" -> java.time.Duration.ofSeconds(n);
                    case "m" -> java.time.Duration.ofMinutes(n);
                    case "h" -> java.time.Duration.ofHours(n);
                    default -> java.time.Duration.ofDays(n);
                };
            }
            return java.time.Duration.parse(v);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException(where + " must be a duration like 30s, 10m, 2h or PT10M, got '" + v + "'");
        }
    }

    private static void collect(JsonNode list, Set<String> into, String where) {
        int i = 0;
        for (JsonNode c : list) {
            String w = where + ".children[" + i++ + "]";
            into.add(id(c, "id", w));
            collect(c.path("children"), into, w);
        }
    }

    private static String id(JsonNode n, String field, String where) {
        String v = n.path(field).asText(null);
        if (v == null || v.isBlank() || !Address.isValid(v) || v.contains("@")) {
            throw new IllegalArgumentException(where + "." + field + " is required: letters, digits, . _ - (got '" + v + "')");
        }
        return v;
    }

    private static void only(JsonNode n, String where, Set<String> allowed) {
        for (Iterator<String> it = n.fieldNames(); it.hasNext();) {
            String f = it.next();
            if (!allowed.contains(f)) {
                throw new IllegalArgumentException(where + ": unknown key '" + f + "' (allowed: " + new java.util.TreeSet<>(allowed) + ")");
            }
        }
    }
}
