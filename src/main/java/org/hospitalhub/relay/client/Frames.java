package org.hospitalhub.relay.client;

import java.io.DataInputStream;
import java.io.DataOutputStream;
import java.io.EOFException;
import java.io.IOException;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The relay's TCP framing: a 4-byte big-endian length, then that many bytes of UTF-8 JSON (one object with a
 * {@code type}). Frame types: HELLO {token, cursor} / WELCOME {id, node, heartbeatSeconds} / ERROR {status, error};
 * SEND {ref, packets} / ACK {ref, results} / NACK {ref, status, error, field, rule}; DELIVER {packets: [{seq,
 * packet}]} / RECEIVED {cursor}; PING / PONG.
 */
public final class Frames {

    /** Larger frames close the connection. */
    public static final int MAX_FRAME = 4 * 1024 * 1024;
    static final ObjectMapper JSON = new ObjectMapper();

    private Frames() {
    }

    public static ObjectNode frame(String type) {
        return JSON.createObjectNode().put("type", type);
    }

    static void write(DataOutputStream out, JsonNode frame) throws IOException {
        write(out, bytes(frame));
    }

    static byte[] bytes(JsonNode frame) throws IOException {
        return JSON.writeValueAsBytes(frame);
    }

    static void write(DataOutputStream out, byte[] bytes) throws IOException {
        synchronized (out) {
            out.writeInt(bytes.length);
            out.write(bytes);
            out.flush();
        }
    }

    static JsonNode read(DataInputStream in) throws IOException {
        int len;
        try {
            len = in.readInt();
        } catch (EOFException e) {
            throw new IOException("connection closed by the server", e);
        }
        if (len <= 0 || len > MAX_FRAME) {
            throw new IOException("frame length " + len + " out of range");
        }
        byte[] bytes = new byte[len];
        in.readFully(bytes);
        return JSON.readTree(bytes);
    }
}
