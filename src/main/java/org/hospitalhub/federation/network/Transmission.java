package org.hospitalhub.federation.network;

/**
 * The hop-by-hop signature of one HTTP transmission of a message: which node sends it, a fresh nonce, the time, and
 * an Ed25519 signature over them and the SHA-256 of the exact body. The receiver refuses an unknown sender, a wrong
 * signature, a time outside its window (expired) and a nonce it has seen (replayed).
 */
public final class Transmission {

    public static final String PATH = "/federation/v1/messages";
    public static final String NODE = "X-Hub-Node";
    public static final String NONCE = "X-Hub-Nonce";
    public static final String TIMESTAMP = "X-Hub-Timestamp";
    public static final String SIGNATURE = "X-Hub-Signature";

    private Transmission() {
    }

    /** What a hop signs. */
    public static String signedText(String node, String nonce, String timestamp, String body) {
        return "hub-federation-transmission-v1\n" + node + "\n" + nonce + "\n" + timestamp + "\n" + NodeKeys.sha256Hex(body);
    }
}
