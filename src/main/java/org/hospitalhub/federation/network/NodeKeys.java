package org.hospitalhub.federation.network;

import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.KeyFactory;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.MessageDigest;
import java.security.PrivateKey;
import java.security.PublicKey;
import java.security.Signature;
import java.security.spec.PKCS8EncodedKeySpec;
import java.security.spec.X509EncodedKeySpec;
import java.util.Base64;

/**
 * Ed25519 keys and signatures with the JDK's own provider. Keys are read as PEM ({@code openssl genpkey -algorithm
 * ed25519}, {@code openssl pkey -pubout}) or as the base64 of the same DER bytes (PKCS#8 private, X.509 public).
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
        try {
            Signature s = Signature.getInstance(ALGORITHM);
            s.initSign(key);
            s.update(data.getBytes(StandardCharsets.UTF_8));
            return Base64.getEncoder().encodeToString(s.sign());
        } catch (GeneralSecurityException e) {
            throw new IllegalStateException("cannot sign: " + e.getMessage(), e);
        }
    }

    /** False for any malformed signature as well as for a wrong one. */
    public static boolean verify(PublicKey key, String data, String signature) {
        if (signature == null || signature.isBlank()) {
            return false;
        }
        try {
            Signature s = Signature.getInstance(ALGORITHM);
            s.initVerify(key);
            s.update(data.getBytes(StandardCharsets.UTF_8));
            return s.verify(Base64.getDecoder().decode(signature.strip()));
        } catch (GeneralSecurityException | IllegalArgumentException e) {
            return false;
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
