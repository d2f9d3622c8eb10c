package org.hospitalhub.federation.network;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

import org.bouncycastle.crypto.params.AsymmetricKeyParameter;
import org.bouncycastle.crypto.params.Ed25519PrivateKeyParameters;
import org.bouncycastle.crypto.params.Ed25519PublicKeyParameters;
import org.bouncycastle.crypto.signers.Ed25519Signer;
import org.bouncycastle.crypto.util.PrivateKeyFactory;
import org.bouncycastle.crypto.util.PublicKeyFactory;

/**
 * Ed25519 keys and signatures. Keys are read as PEM ({@code openssl genpkey -algorithm ed25519}, {@code openssl pkey
 * -pubout}) or as the base64 of the same DER bytes (PKCS#8 private, X.509 public), and kept as the JDK's key types.
 * Signing and verifying go through Bouncy Castle's lightweight API: the same RFC 8032 signatures (Ed25519 is
 * deterministic, so both give the same bytes; {@code NodeKeysTest} checks it), about ten times faster than the JDK's
 * provider (0.16 against 1.7 ms per signature with the C1 compiler, 0.1 against 1.2 ms with C2, on this project's
 * 2-core machine). Every federation message is signed once and verified at least once, so on a busy initiator that
 * difference is CPU taken from the nodes' queries.
 */
public final class NodeKeys {

    private static final String ALGORITHM = "Ed25519";

    private NodeKeys() {
    }

    public static KeyPair generate() {
        try {
            return KeyPairGenerator.getInstance(ALGORITHM).generateKeyPair();
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The public key as this hub writes it in the registry: base64 of the X.509 SubjectPublicKeyInfo. */
    public static String encode(PublicKey key) {
        return Base64.getEncoder().encodeToString(key.getEncoded());
    }

    /** The private key as HUB_FEDERATION_PRIVATE_KEY expects it: base64 of PKCS#8 (PEM also accepted). */
    public static String encode(PrivateKey key) {
        return Base64.getEncoder().encodeToString(key.getEncoded());
    }

    public static PublicKey publicKey(String text) {
        try {
            return KeyFactory.getInstance(ALGORITHM).generatePublic(new X509EncodedKeySpec(der(text)));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            throw new IllegalArgumentException("not an Ed25519 public key (X.509 SubjectPublicKeyInfo, PEM or base64)");
        }
    }

    public static PrivateKey privateKey(String text) {
        try {
            return KeyFactory.getInstance(ALGORITHM).generatePrivate(new PKCS8EncodedKeySpec(der(text)));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            // never echo the text: it is a secret
            throw new IllegalArgumentException("not an Ed25519 private key (PKCS#8, PEM or base64)");
        }
    }

    private static byte[] der(String text) {
        String s = text.strip();
        if (s.startsWith("-----BEGIN")) {
            s = s.replaceAll("-----(BEGIN|END)[^-]*-----", "");
        }
        return Base64.getMimeDecoder().decode(s.replaceAll("\\s", ""));
    }

    public static String sign(PrivateKey key, String data) {
        Ed25519Signer s = new Ed25519Signer();
        s.init(true, signing(key));
        byte[] bytes = data.getBytes(StandardCharsets.UTF_8);
        s.update(bytes, 0, bytes.length);
        return Base64.getEncoder().encodeToString(s.generateSignature());
    }

    /** False for any malformed signature as well as for a wrong one. */
    public static boolean verify(PublicKey key, String data, String signature) {
        if (signature == null || signature.isBlank()) {
            return false;
        }
        byte[] sig;
        try {
            sig = Base64.getDecoder().decode(signature.strip());
        } catch (IllegalArgumentException e) {
            return false;
        }
        if (sig.length != Ed25519PrivateKeyParameters.SIGNATURE_SIZE) {
            return false;
        }
        Ed25519PublicKeyParameters k = verifying(key);
        if (k == null) {
            return false;
        }
        Ed25519Signer s = new Ed25519Signer();
        s.init(false, k);
        byte[] bytes = data.getBytes(StandardCharsets.UTF_8);
        s.update(bytes, 0, bytes.length);
        return s.verifySignature(sig);
    }

    /**
     * Keys decoded for Bouncy Castle, by their encoded bytes (a node has one private key and a public key per peer;
     * decoding a public key decompresses its point, and a private key derives its public half, on every use otherwise).
     * Cleared rather than grown past {@link #CACHED_KEYS}.
     */
    private static final Map<ByteBuffer, AsymmetricKeyParameter> DECODED = new ConcurrentHashMap<>();
    static final int CACHED_KEYS = 1000;

    private static AsymmetricKeyParameter decoded(byte[] encoded, boolean isPrivate) throws java.io.IOException {
        ByteBuffer k = ByteBuffer.wrap(encoded);
        AsymmetricKeyParameter p = DECODED.get(k);
        if (p == null) {
            p = isPrivate ? PrivateKeyFactory.createKey(encoded) : PublicKeyFactory.createKey(encoded);
            if (DECODED.size() >= CACHED_KEYS) {
                DECODED.clear();
            }
            DECODED.put(k, p);
        }
        return p;
    }

    private static Ed25519PrivateKeyParameters signing(PrivateKey key) {
        try {
            AsymmetricKeyParameter p = decoded(key.getEncoded(), true);
            if (p instanceof Ed25519PrivateKeyParameters ed) {
                return ed;
            }
        } catch (java.io.IOException | RuntimeException e) {
            // below, without the key's text: it is a secret
        }
        throw new IllegalStateException("cannot sign: not an Ed25519 private key");
    }

    /** Null when the key is not an Ed25519 public key (or not a valid point). */
    private static Ed25519PublicKeyParameters verifying(PublicKey key) {
        try {
            AsymmetricKeyParameter p = decoded(key.getEncoded(), false);
            return p instanceof Ed25519PublicKeyParameters ed ? ed : null;
        } catch (java.io.IOException | RuntimeException e) {
            return null;
        }
    }

    public static String sha256Hex(String data) {
        return sha256Hex(data.getBytes(StandardCharsets.UTF_8));
    }

    public static String sha256Hex(byte[] data) {
        try {
            return java.util.HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException(e);
        }
    }
}
