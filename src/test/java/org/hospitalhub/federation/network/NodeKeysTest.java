package org.hospitalhub.federation.network;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.security.KeyPair;
import java.security.KeyPairGenerator;
import java.security.Signature;
import java.util.Base64;

import org.junit.jupiter.api.Test;

/**
 * NodeKeys signs and verifies with Bouncy Castle but keeps the keys the JDK reads: its signatures must be the JDK
 * provider's, byte for byte (nodes of an older release verify them), and it must accept what that provider signed.
 */
class NodeKeysTest {

    private static final String TEXT = "hub-federation-transmission-v1\nn01\nnonce\n2026-12-05T23:59:00Z\n"
            + "发热门诊 0123456789abcdef";

    private static String jdkSign(KeyPair kp, String data) throws Exception {
        Signature s = Signature.getInstance("Ed25519");
        s.initSign(kp.getPrivate());
        s.update(data.getBytes(StandardCharsets.UTF_8));
        return Base64.getEncoder().encodeToString(s.sign());
    }

    private static boolean jdkVerify(KeyPair kp, String data, String signature) throws Exception {
        Signature s = Signature.getInstance("Ed25519");
        s.initVerify(kp.getPublic());
        s.update(data.getBytes(StandardCharsets.UTF_8));
        return s.verify(Base64.getDecoder().decode(signature));
    }

    @Test
    void signaturesAreTheJdkProvidersByteForByteAndEachVerifiesTheOthers() throws Exception {
        for (int i = 0; i < 20; i++) {
            KeyPair kp = NodeKeys.generate();
            // keys as a node reads them from its environment and registry
            KeyPair read = new KeyPair(NodeKeys.publicKey(NodeKeys.encode(kp.getPublic())),
                    NodeKeys.privateKey(NodeKeys.encode(kp.getPrivate())));
            String data = TEXT + i;
            String ours = NodeKeys.sign(read.getPrivate(), data);
            assertEquals(jdkSign(kp, data), ours, "Ed25519 is deterministic: the same key and text give the same signature");
            assertTrue(jdkVerify(kp, data, ours));
            assertTrue(NodeKeys.verify(read.getPublic(), data, jdkSign(kp, data)));
        }
    }

    @Test
    void aChangedTextAnotherKeyOrAMalformedSignatureIsRefused() throws Exception {
        KeyPair kp = NodeKeys.generate();
        KeyPair other = NodeKeys.generate();
        String sig = NodeKeys.sign(kp.getPrivate(), TEXT);
        assertTrue(NodeKeys.verify(kp.getPublic(), TEXT, sig));
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT + " ", sig), "one character more");
        assertFalse(NodeKeys.verify(other.getPublic(), TEXT, sig), "another node's key");
        byte[] flipped = Base64.getDecoder().decode(sig);
        flipped[10] ^= 1;
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, Base64.getEncoder().encodeToString(flipped)), "one bit changed");
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, sig.substring(0, 40)), "cut short");
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, "not base64 !"), "not base64");
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, ""), "empty");
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, null), "absent");
        // S + L: the same signature with a non-canonical scalar (RFC 8032 5.1.7 requires S < L)
        byte[] s = Base64.getDecoder().decode(sig);
        java.math.BigInteger l = java.math.BigInteger.TWO.pow(252).add(new java.math.BigInteger("27742317777372353535851937790883648493"));
        byte[] le = new byte[32];
        System.arraycopy(s, 32, le, 0, 32);
        java.math.BigInteger scalar = new java.math.BigInteger(1, reverse(le)).add(l);
        byte[] big = reverse(toFixed(scalar.toByteArray(), 32));
        System.arraycopy(big, 0, s, 32, 32);
        assertFalse(NodeKeys.verify(kp.getPublic(), TEXT, Base64.getEncoder().encodeToString(s)), "non-canonical S");
    }

    @Test
    void aKeyOfAnotherAlgorithmNeitherVerifiesNorSigns() throws Exception {
        KeyPair ec = KeyPairGenerator.getInstance("EC").generateKeyPair();
        KeyPair kp = NodeKeys.generate();
        String sig = NodeKeys.sign(kp.getPrivate(), TEXT);
        assertFalse(NodeKeys.verify(ec.getPublic(), TEXT, sig));
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> NodeKeys.sign(ec.getPrivate(), TEXT));
        assertEquals("cannot sign: not an Ed25519 private key", e.getMessage());
    }

    private static byte[] reverse(byte[] b) {
        byte[] r = new byte[b.length];
        for (int i = 0; i < b.length; i++) {
            r[i] = b[b.length - 1 - i];
        }
        return r;
    }

    private static byte[] toFixed(byte[] bigEndian, int n) {
        byte[] r = new byte[n];
        int copy = Math.min(n, bigEndian.length);
        System.arraycopy(bigEndian, bigEndian.length - copy, r, n - copy, copy);
        return r;
    }
}
