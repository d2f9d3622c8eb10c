package org.hospitalhub.federation.network;

import java.security.PrivateKey;
import java.security.PublicKey;
import java.util.Optional;

import jakarta.enterprise.context.ApplicationScoped;

import org.eclipse.microprofile.config.inject.ConfigProperty;
import org.jboss.logging.Logger;

/**
 * This node in the research network: its id and its Ed25519 key pair. The private key comes from the environment
 * (HUB_FEDERATION_PRIVATE_KEY, a Kubernetes Secret) and is never logged or served; the public key is what peers
 * register. Without a node id the node takes no part in the network (its federation endpoints answer 503).
 */
@ApplicationScoped
public class NodeIdentity {

    private static final Logger LOG = Logger.getLogger(NodeIdentity.class);

    private final String nodeId;
    private final PrivateKey privateKey;
    private final PublicKey publicKey;

    public NodeIdentity(@ConfigProperty(name = "hub.federation.node-id") Optional<String> nodeId,
            @ConfigProperty(name = "hub.federation.private-key") Optional<String> privateKey,
            @ConfigProperty(name = "hub.federation.public-key") Optional<String> publicKey) {
        String id = nodeId.map(String::strip).filter(s -> !s.isEmpty()).orElse(null);
        if (id == null) {
            this.nodeId = null;
            this.privateKey = null;
            this.publicKey = null;
            LOG.info("Research federation off on this node (hub.federation.node-id / HUB_FEDERATION_NODE_ID not set)");
            return;
        }
        if (!id.matches(Peers.NODE_ID_PATTERN)) {
            throw new IllegalStateException("hub.federation.node-id must match " + Peers.NODE_ID_PATTERN + ", got '" + id + "'");
        }
        if (privateKey.isEmpty() || privateKey.get().isBlank() || publicKey.isEmpty() || publicKey.get().isBlank()) {
            throw new IllegalStateException("node " + id + ": hub.federation.private-key (HUB_FEDERATION_PRIVATE_KEY) and "
                    + "hub.federation.public-key (HUB_FEDERATION_PUBLIC_KEY) are both required");
        }
        PrivateKey priv;
        PublicKey pub;
        try {
            priv = NodeKeys.privateKey(privateKey.get());
            pub = NodeKeys.publicKey(publicKey.get());
        } catch (IllegalArgumentException e) {
            throw new IllegalStateException("node " + id + ": " + e.getMessage());
        }
        String probe = "hub-federation-key-check:" + id;
        if (!NodeKeys.verify(pub, probe, NodeKeys.sign(priv, probe))) {
            throw new IllegalStateException("node " + id + ": hub.federation.public-key is not the public half of the private key");
        }
        this.nodeId = id;
        this.privateKey = priv;
        this.publicKey = pub;
        LOG.infof("Research federation node %s, public key %s", id, NodeKeys.encode(pub));
    }

    public boolean enabled() {
        return nodeId != null;
    }

    public String nodeId() {
        requireEnabled();
        return nodeId;
    }

    public String publicKey() {
        requireEnabled();
        return NodeKeys.encode(publicKey);
    }

    public String sign(String data) {
        requireEnabled();
        return NodeKeys.sign(privateKey, data);
    }

    private void requireEnabled() {
        if (nodeId == null) {
            throw new FederationDisabledException();
        }
    }

    /** Federation is not configured on this node. */
    public static class FederationDisabledException extends IllegalStateException {
        public FederationDisabledException() {
            super("research federation is off on this node: set hub.federation.node-id (HUB_FEDERATION_NODE_ID) and its keys");
        }
    }
}
