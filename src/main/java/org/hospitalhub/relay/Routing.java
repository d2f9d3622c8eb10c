package org.hospitalhub.relay;

import java.util.Optional;
import java.util.Set;
import java.util.function.Predicate;

import org.hospitalhub.relay.client.Address;
import org.hospitalhub.relay.client.Packet;

/**
 * Where a packet goes next, and whether its sender may send it. Up the tree toward the common ancestor, then down:
 * a packet from below whose target is outside this node's subtree goes to the parent; a packet for this node's
 * subtree goes down to the child toward it, or to the client or service here. Unless {@code localShortcut} is on, a
 * packet from below goes up even when its target is below this node, so the top server sees (and audits) every
 * packet; the top and any node with the shortcut deliver within their subtree directly.
 */
final class Routing {

    /** A hop name (a mailbox) or, when the packet cannot go anywhere, the reason. */
    record Decision(String hop, String deadReason) {
        static Decision to(String hop) {
            return new Decision(hop, null);
        }

        static Decision dead(String reason) {
            return new Decision(null, reason);
        }
    }

    static final String SERVICE_PREFIX = "svc:";

    private final Topology t;
    private final Predicate<String> isService;

    Routing(Topology topology, Predicate<String> isService) {
        this.t = topology;
        this.isService = isService;
    }

    /**
     * Refuses what the sender may not send: a client only as itself, a child node only for senders in its subtree, a
     * local service only as a service of this node. From the parent every sender is fine (the check for the target
     * is in {@link #route}: outside this subtree becomes a dead letter).
     */
    void authorize(Packet p, Peer origin) {
        switch (origin.kind()) {
            case CLIENT -> {
                if (!p.from().equals(origin.id())) {
                    throw new Refusal(403, "from '" + p.from() + "' is not the authenticated client '" + origin.id()
                            + "': a client can only send as itself", "from", "sender-is-caller", p.packetId());
                }
            }
            case CHILD -> {
                String n = Address.node(p.from());
                Optional<Topology.Child> c = t.childToward(n);
                if (c.isEmpty() || !c.get().id().equals(origin.id())) {
                    throw new Refusal(403, "from '" + p.from() + "' is not in the subtree of child node '" + origin.id()
                            + "'", "from", "sender-in-subtree", p.packetId());
                }
            }
            case LOCAL -> {
                if (!Address.node(p.from()).equals(t.node()) || Address.local(p.from()) == null) {
                    throw new Refusal(403, "a service of node " + t.node() + " sends as name@" + t.node(), "from",
                            "sender-is-service", p.packetId());
                }
            }
            case PARENT -> {
                // anything from the parent; targets outside the subtree are dead-lettered by route()
            }
        }
    }

    Decision route(Packet p, Peer origin) {
        String target = p.to();
        String targetNode = Address.node(target);
        boolean mine = t.inSubtree(targetNode);
        String service = Address.local(target);
        boolean knownNode = mine || t.parent().map(up -> up.id().equals(targetNode)).orElse(false);
        if (!knownNode && origin.fromBelow() && targetNode.equals(t.level()) && service != null && isService.test(service)) {
            // a level address (consultation@city) reaches the first node of that level up the tree
            return Decision.to(SERVICE_PREFIX + service);
        }
        if (origin.kind() == Peer.Kind.PARENT && !mine) {
            return Decision.dead("target node '" + targetNode + "' is not in the subtree of node " + t.node()
                    + " (a node accepts packets from its parent for its subtree only)");
        }
        if (origin.fromBelow() && !t.localShortcut() && t.parent().isPresent()) {
            return Decision.to(t.parent().get().id()); // via the top, which audits every packet
        }
        if (!mine) {
            return t.parent().isPresent() ? Decision.to(t.parent().get().id())
                    : Decision.dead("no node '" + targetNode + "' in the relay tree (unknown at the top server " + t.node() + ")");
        }
        if (!targetNode.equals(t.node())) {
            return Decision.to(t.childToward(targetNode).orElseThrow().id());
        }
        String local = Address.local(target);
        if (local == null) {
            return Decision.dead("node address '" + target + "' has no receiver: address a client or service as name@" + t.node());
        }
        if (t.clients().containsKey(local)) {
            return Decision.to(target);
        }
        if (isService.test(local)) {
            return Decision.to(SERVICE_PREFIX + local);
        }
        return Decision.dead("no client or service '" + local + "' at node " + t.node());
    }

    Set<String> childIds() {
        return t.children().keySet();
    }
}
