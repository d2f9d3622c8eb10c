package org.hospitalhub.federation.network;

/**
 * The hop-by-hop signature of one HTTP transmission of a message: which node sends it, a fresh nonce, the time, and
 * an Ed25519 signature over them and the SHA-256 of the exact body. The receiver refuses an unknown sender, a wrong
 * signature, a time outside its window (expired) and a nonce it has seen (replayed).
 * <p>
 * A sender may send a destination's next transmission before the previous one is acknowledged (pipelining) when the
 * receiver answers with {@link #ACCEPTS_AFTER}: the next then names, in {@link #AFTER} (signed with the rest), the last
 * message of the one before it, and the receiver stores it only once that message is stored, so order is kept; if that
 * message is not stored in time (or was refused) it answers 425 and stores nothing, and the sender sends it again.
 */
public final class Transmission {

    public static final String PATH = "/federation/v1/messages";
    public static final String NODE = "X-Hub-Node";
    public static final String NONCE = "X-Hub-Nonce";
    public static final String TIMESTAMP = "X-Hub-Timestamp";
    public static final String SIGNATURE = "X-Hub-Signature";
    /** The id of the message this transmission follows (the previous transmission's last), when sent before its answer. */
    public static final String AFTER = "X-Hub-After";
    /** On every answer of a receiver that honours {@link #AFTER}: the sender may then pipeline its transmissions. */
    public static final String ACCEPTS_AFTER = "X-Hub-Accepts-After";

    private Transmission() {
    }

    /** What a hop signs. */
    public static String signedText(String node, String nonce, String timestamp, String body) {
        return signedText(node, nonce, timestamp, body, null);
    }

    /** What a hop signs, with the message the transmission follows ({@link #AFTER}; null: none, the v1 text). */
    public static String signedText(String node, String nonce, String timestamp, String body, String after) {
        String v1 = node + "\n" + nonce + "\n" + timestamp + "\n" + NodeKeys.sha256Hex(body);
        return after == null ? "hub-federation-transmission-v1\n" + v1 : "hub-federation-transmission-v2\n" + v1 + "\n" + after;
    }
}
