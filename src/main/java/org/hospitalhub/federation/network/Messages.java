package org.hospitalhub.federation.network;

import java.time.Instant;

import jakarta.enterprise.context.ApplicationScoped;

import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;

/**
 * The signed messages nodes exchange. A message is {@code {"envelope": "<JSON text>", "signature": "<base64>"}}: the
 * envelope (id, type, origin, to, projectId, createdAt, payload) is kept as the exact text its origin signed, so a
 * central hub relays it byte for byte and the destination verifies the origin's own signature, whatever the hops.
 * Each hop additionally signs the HTTP transmission (see {@link Transmission}).
 */
@ApplicationScoped
public class Messages {

    static final String SIGNED_PREFIX = "hub-federation-message-v1\n";

    public static final String INVITATION = "invitation";
    public static final String INVITATION_RESPONSE = "invitation-response";
    public static final String STEP = "step";
    public static final String STEP_STATUS = "step-status";
    public static final String STEP_RETRY = "step-retry";
    static final java.util.Set<String> TYPES = java.util.Set.of(INVITATION, INVITATION_RESPONSE, STEP, STEP_STATUS, STEP_RETRY);

    /** A verified-shape message. {@code wire} is the exact text to send or relay. */
    public record Message(String id, String type, String origin, String to, String projectId, Instant createdAt,
            JsonNode payload, String envelope, String signature, String wire) {
    }

    /** A message whose shape is wrong; {@link #field()} names what. */
    public static class MalformedMessageException extends Exception {
        private final String field;

        public MalformedMessageException(String field, String message) {
            super(field + ": " + message);
            this.field = field;
        }

        public String field() {
            return field;
        }
    }

    private final ObjectMapper mapper;
    private final NodeIdentity identity;

    public Messages(ObjectMapper mapper, NodeIdentity identity) {
        this.mapper = mapper;
        this.identity = identity;
    }

    /**
     * A new message from this node, not yet signed: its {@code wire} is {@code {"envelope": …}} with no signature, to be
     * completed by {@link #signed} when it is sent. The envelope (id, time, content) is fixed here and Ed25519 is
     * deterministic, so the message sent is the one written, signed with this node's key; a step fanned out to twenty
     * nodes is twenty envelopes, and their signatures are made by the senders (in parallel, outside the request that
     * wrote them) instead of one after the other inside it.
     */
    public Message draft(String type, String to, String projectId, JsonNode payload) {
        ObjectNode env = mapper.createObjectNode();
        env.put("id", Ids.next());
        env.put("type", type);
        env.put("origin", identity.nodeId());
        env.put("to", to);
        env.put("projectId", projectId);
        env.put("createdAt", Instant.now().toString());
        env.set("payload", payload);
        try {
            String envelope = mapper.writeValueAsString(env);
            ObjectNode wire = mapper.createObjectNode();
            wire.put("envelope", envelope);
            return new Message(env.get("id").asText(), type, identity.nodeId(), to, projectId,
                    Instant.parse(env.get("createdAt").asText()), payload, envelope, null, mapper.writeValueAsString(wire));
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** The wire of a message ready to send: as it is if signed (a relayed message), else signed now with this node's key. */
    public String signed(String wire) {
        try {
            JsonNode w = mapper.readTree(wire);
            if (w.hasNonNull("signature")) {
                return wire;
            }
            String envelope = w.path("envelope").asText();
            ObjectNode out = mapper.createObjectNode();
            out.put("envelope", envelope);
            out.put("signature", identity.sign(SIGNED_PREFIX + envelope));
            return mapper.writeValueAsString(out);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException("an outbox message that is not JSON: " + e.getOriginalMessage(), e);
        }
    }

    /** Parses a message's shape (the origin's signature is checked by the caller, which knows the origin's key). */
    public Message open(String wire) throws MalformedMessageException {
        JsonNode w;
        try {
            w = mapper.readTree(wire);
        } catch (JsonProcessingException e) {
            throw new MalformedMessageException("$", "not JSON");
        }
        if (w == null || !w.isObject()) {
            throw new MalformedMessageException("$", "must be an object with envelope and signature");
        }
        String envelope = text(w, "envelope", "$.envelope");
        String signature = text(w, "signature", "$.signature");
        JsonNode env;
        try {
            env = mapper.readTree(envelope);
        } catch (JsonProcessingException e) {
            throw new MalformedMessageException("$.envelope", "not JSON");
        }
        if (env == null || !env.isObject()) {
            throw new MalformedMessageException("$.envelope", "must be a JSON object");
        }
        String id = text(env, "id", "envelope.id");
        if (!id.matches("[0-9a-fA-F-]{36}")) {
            throw new MalformedMessageException("envelope.id", "must be a UUID");
        }
        String type = text(env, "type", "envelope.type");
        if (!TYPES.contains(type)) {
            throw new MalformedMessageException("envelope.type", "must be one of " + TYPES);
        }
        String origin = text(env, "origin", "envelope.origin");
        String to = text(env, "to", "envelope.to");
        String projectId = text(env, "projectId", "envelope.projectId");
        Instant createdAt;
        try {
            createdAt = Instant.parse(text(env, "createdAt", "envelope.createdAt"));
        } catch (java.time.format.DateTimeParseException e) {
            throw new MalformedMessageException("envelope.createdAt", "must be an ISO-8601 instant");
        }
        JsonNode payload = env.get("payload");
        if (payload == null || !payload.isObject()) {
            throw new MalformedMessageException("envelope.payload", "must be an object");
        }
        return new Message(id, type, origin, to, projectId, createdAt, payload, envelope, signature, wire);
    }

    private static String text(JsonNode n, String name, String field) throws MalformedMessageException {
        JsonNode v = n.get(name);
        if (v == null || !v.isTextual() || v.asText().isBlank()) {
            throw new MalformedMessageException(field, "required text");
        }
        if (v.asText().length() > 100_000 && !"envelope".equals(name)) {
            throw new MalformedMessageException(field, "too long");
        }
        return v.asText();
    }

    public static boolean verifyOrigin(Message m, java.security.PublicKey originKey) {
        return NodeKeys.verify(originKey, SIGNED_PREFIX + m.envelope(), m.signature());
    }
}
