package org.hospitalhub.relay;

/**
 * Who handed a packet to this node: one of its clients ({@code id} = {@code name@node}), one of its child nodes, its
 * parent, or a service running in the node itself. {@code id} is also the hop name of the peer's mailbox here.
 */
public record Peer(String id, Kind kind) {

    public enum Kind {
        CLIENT,
        CHILD,
        PARENT,
        LOCAL
    }

    public boolean fromBelow() {
        return kind == Kind.CLIENT || kind == Kind.CHILD || kind == Kind.LOCAL;
    }
}
