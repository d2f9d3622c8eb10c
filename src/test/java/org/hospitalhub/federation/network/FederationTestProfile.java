package org.hospitalhub.federation.network;

import java.security.KeyPair;
import java.util.Map;

import io.quarkus.test.junit.QuarkusTestProfile;

/** The hub under test as research node {@code hub-test}, with a key pair made for this run and the table executor. */
public class FederationTestProfile implements QuarkusTestProfile {

    static final String NODE = "hub-test";
    private static final KeyPair KEYS = NodeKeys.generate();

    @Override
    public Map<String, String> getConfigOverrides() {
        return Map.of(
                "hub.federation.node-id", NODE,
                "hub.federation.private-key", NodeKeys.encode(KEYS.getPrivate()),
                "hub.federation.public-key", NodeKeys.encode(KEYS.getPublic()),
                "quarkus.arc.selected-alternatives", TableStepExecutor.class.getName(),
                "hub.federation.max-clock-skew", "1m",
                "hub.federation.relay-node", NODE); // this node is also the central hub: it relays between the peers
    }
}
